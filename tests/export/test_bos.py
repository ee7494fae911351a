"""A BOS the template writes itself is not added twice: SmolLM2's bos_token is `<|im_start|>`, which its
ChatML template writes at the start of every turn; Gemma's template writes `{{ bos_token }}` first."""

from tunewise.export.ollama import check_equivalent, ollama_template, training_bos
from tunewise.templates import ChatTemplate, registry_entry

SMOL_SYSTEM = "You are a helpful AI assistant."


def _t(name, bos, eos, system=None):
    return ChatTemplate(name=name, chat_template=registry_entry(name)["chat_template"], bos_token=bos, eos_token=eos,
                        system=system)


def test_chatml_whose_bos_is_im_start_adds_no_bos_and_matches_ollama():
    t = _t("chatml", "<|im_start|>", "<|im_end|>", SMOL_SYSTEM)
    assert t.render([{"role": "user", "content": "hi"}], add_generation_prompt=True).startswith("<|im_start|>")
    assert not training_bos(t)
    assert check_equivalent(ollama_template(t), t) == []


def test_gemma_writes_its_bos_token_first():
    t = _t("gemma", "<bos>", "<eos>")
    assert training_bos(t)
    assert check_equivalent(ollama_template(t), t) == []
