"""Chat templates that make the model stop: rendering, label masking, tokenizer equivalence."""

import pytest

from tunewise.templates import ChatTemplate, choose_template, registry_names
from tunewise.templates.encode import IGNORE, encode_messages

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am tunewise."},
    {"role": "user", "content": "你好，请介绍一下自己"},
    {"role": "assistant", "content": "我是演示助手。"},
]


@pytest.fixture(scope="module")
def toks(tiny_model_dirs):
    from transformers import AutoTokenizer

    return {n: AutoTokenizer.from_pretrained(d) for n, d in tiny_model_dirs.items()}


def test_tokenizer_template_equals_apply_chat_template(toks):
    tok = toks["tiny-qwen2"]
    t = choose_template("auto", tok, "qwen2")
    assert t.source == "tokenizer" and t.stop_strings == ["<|im_end|>"]
    for conv in (CONV, CONV[1:3], CONV[:2]):
        ours = tok(t.render(conv, add_generation_prompt=conv[-1]["role"] == "user"), add_special_tokens=False)["input_ids"]
        ref = tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=conv[-1]["role"] == "user")["input_ids"]
        assert ours == ref
    enc = encode_messages(tok, t, CONV, max_length=512)
    assert enc.input_ids == tok.apply_chat_template(CONV, tokenize=True)["input_ids"]


@pytest.mark.parametrize("name", registry_names())
@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gemma3"])
def test_labels_cover_answers_and_stop_token_only(toks, name, model):
    tok = toks[model]
    t = ChatTemplate.from_registry(name, tok)
    enc = encode_messages(tok, t, CONV, max_length=512)
    sup = [i for i, l in zip(enc.input_ids, enc.labels) if l != IGNORE]
    text = tok.decode(sup, skip_special_tokens=False)
    assert "I am tunewise." in text and "我是演示助手。" in text
    assert "Who are you?" not in text and "Be brief." not in text and "你好" not in text
    # The end-of-turn token is supervised after every answer: this is what teaches the model to stop.
    stop_id = t.stop_token_ids[0]
    assert sup.count(stop_id) == 2, (name, text)
    # Labels equal the input ids where supervised.
    assert all(l in (IGNORE, i) for i, l in zip(enc.input_ids, enc.labels))


def test_train_on_prompt_supervises_everything(toks):
    tok = toks["tiny-llama"]
    enc = encode_messages(tok, ChatTemplate.from_registry("chatml", tok), CONV, max_length=512, train_on_prompt=True)
    assert enc.labels == enc.input_ids


def test_truncation_is_reported(toks):
    tok = toks["tiny-llama"]
    enc = encode_messages(tok, ChatTemplate.from_registry("chatml", tok), CONV, max_length=10)
    assert len(enc.input_ids) == 10 and enc.truncated_tokens > 0


def test_auto_picks_family_template_for_base_models(toks):
    assert choose_template("auto", toks["tiny-gemma3"], "gemma3_text").name == "gemma"
    assert choose_template("auto", toks["tiny-llama"], "llama").name == "llama3"
    assert choose_template("auto", toks["tiny-llama"], "phi").name == "plain"


def test_unknown_template_lists_choices(toks):
    from tunewise.errors import ConfigError

    with pytest.raises(ConfigError, match="chatml"):
        choose_template("chatmel", toks["tiny-llama"], "llama")


def test_sandbox_blocks_python_access(toks):
    from tunewise.errors import DataError

    evil = ChatTemplate(name="evil", chat_template="{{ messages.__class__.__mro__ }}")
    with pytest.raises(DataError, match="unsafe"):  # unsandboxed, this renders (<class 'list'>, <class 'object'>)
        evil.render(CONV)
    quiet = ChatTemplate(name="quiet", chat_template="[{{ messages.__class__ }}]")
    assert quiet.render(CONV) == "[]"  # an unsafe attribute is undefined, never the Python object
    bad = ChatTemplate(name="bad", chat_template="{{ raise_exception('no system allowed') }}")
    with pytest.raises(DataError, match="no system allowed"):
        bad.render(CONV)


def test_template_json_roundtrip(toks, tmp_path):
    t = ChatTemplate.from_registry("gemma", toks["tiny-gemma3"])
    import json

    (tmp_path / "t.json").write_text(json.dumps(t.to_dict()))
    t2 = ChatTemplate.from_json(tmp_path / "t.json")
    assert t2 == t and t2.render(CONV) == t.render(CONV)
