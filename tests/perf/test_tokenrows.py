"""Trainable token rows (method.train_stop_tokens): the copy-free path equals peft's own, loss and gradients."""

import copy

import pytest
import torch

from tunewise.templates import choose_template, control_token_ids
from tunewise.templates.encode import encode_records
from tunewise.train.collate import PadCollator
from tunewise.methods.tokenrows import head_rows, speed_up
from tunewise.train.trainer import supervised_loss


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2", "tiny-gemma3"])
def setup(request, tiny_model_dirs):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunewise.config.schema import MethodConfig
    from tunewise.samples.demo import demo_records
    from tunewise.methods.lora import lora_config

    name = request.param
    tok = AutoTokenizer.from_pretrained(tiny_model_dirs[name])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[name], attn_implementation="sdpa")
    tpl = choose_template("auto", tok, base.config.model_type)
    ids = control_token_ids(tpl, tok)
    model = get_peft_model(base, lora_config(MethodConfig(lora_dropout=0.0), ids))
    torch.manual_seed(0)
    for n, p in model.named_parameters():  # move the rows and LoRA B off their initial values
        if p.requires_grad:
            p.data += 0.05 * torch.randn_like(p)
    enc, _ = encode_records(tok, tpl, demo_records()[:6], max_length=128)
    batch = PadCollator(tok.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in enc])
    return model, ids, batch


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_control_tokens_include_the_stop_token(setup):
    model, ids, _ = setup
    assert ids, "the template's end-of-turn token must be among the trainable rows"


def test_fast_rows_equal_peft_rows(setup):
    model, ids, batch = setup
    ref_model = copy.deepcopy(model)  # peft's own forward (full merged matrix)
    out = ref_model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False)
    logits = out.logits[:, :-1].float()
    y = batch["labels"][:, 1:]
    n = int((y != -100).sum())
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum") / n
    ref.backward()
    ref_g = _grads(ref_model)

    fast_model = copy.deepcopy(model)
    assert speed_up(fast_model) >= 1
    head = fast_model.get_output_embeddings() if hasattr(fast_model, "get_output_embeddings") else None
    loss = supervised_loss(fast_model, batch, chunk_size=5)
    loss.backward()
    got = _grads(fast_model)
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    rows = [k for k in ref_g if "trainable_tokens_delta" in k]
    assert rows, "the token rows must receive gradients"
    for k in ref_g:
        torch.testing.assert_close(got[k], ref_g[k], rtol=1e-4, atol=1e-6)
    del head


def test_fast_rows_generation_logits_equal(setup):
    model, ids, batch = setup
    ref_model, fast_model = copy.deepcopy(model).eval(), copy.deepcopy(model).eval()
    speed_up(fast_model)
    with torch.no_grad():
        a = ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = fast_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_tied_head_takes_the_fused_path(setup):
    model, ids, _ = setup
    lm = model.get_base_model()
    if not lm.config.tie_word_embeddings:
        pytest.skip("untied head: peft trains the embedding rows only")
    fast = copy.deepcopy(model)
    speed_up(fast)
    assert head_rows(fast.get_base_model().get_output_embeddings()) is not None


def test_a_saved_adapter_loads_with_the_copy_free_rows(setup, tmp_path, tiny_model_dirs):
    """Chat, eval and the identity probes load the adapter through load_result: peft's own layer there copied
    the whole vocabulary matrix on every generated token (4.5x slower decoding on Gemma 3 270M)."""
    from transformers import AutoModelForCausalLM

    from tunewise.methods import load_result

    model, ids, batch = setup
    model.save_pretrained(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(model.get_base_model().config._name_or_path, attn_implementation="sdpa")
    loaded = load_result(base, tmp_path / "adapter").eval()
    kinds = {type(m).__name__ for m in loaded.modules() if type(m).__name__.endswith("TrainableTokensLayer")}
    assert kinds == {"FastTrainableTokensLayer"}, kinds
    with torch.no_grad():
        a = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
