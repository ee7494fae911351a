"""models/generation.skinny_head: the decode-time form of the output head gives the same logits and tokens."""

import torch

from tunewise.models.generation import SKINNY_ROWS, _head_linear, generate_ids, skinny_head


def _model(tiny_model_dirs, name="tiny-gemma3"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dirs[name]).eval()


def test_same_logits_and_the_class_forward_comes_back(tiny_model_dirs, monkeypatch):
    import torch.nn.modules.linear as linear_mod

    model = _model(tiny_model_dirs)
    lin = _head_linear(model)
    x = torch.randn(3, 1, lin.weight.shape[1])
    calls = []
    plain_linear = linear_mod.F.linear
    monkeypatch.setattr(linear_mod.F, "linear", lambda *a, **k: calls.append(a[0].shape) or plain_linear(*a, **k))
    with torch.no_grad():
        plain = lin(x)
        with skinny_head(model):
            got = lin(x)  # few rows: W @ x.T, no F.linear call
            big = lin(torch.randn(SKINNY_ROWS + 1, lin.weight.shape[1]))  # many rows: the plain path
    assert calls == [x.shape, (SKINNY_ROWS + 1, lin.weight.shape[1])]
    assert "forward" not in vars(lin)  # the class's forward is back
    torch.testing.assert_close(got, plain, rtol=1e-5, atol=1e-5)
    assert got.shape == plain.shape and big.shape == (SKINNY_ROWS + 1, lin.weight.shape[0])


def test_grad_mode_keeps_the_plain_head(tiny_model_dirs):
    model = _model(tiny_model_dirs, "tiny-llama")
    lin = _head_linear(model)
    x = torch.randn(2, lin.weight.shape[1], requires_grad=True)
    with skinny_head(model):
        lin(x).sum().backward()
    assert x.grad is not None and lin.weight.grad is not None


def test_greedy_answers_are_the_same(tiny_model_dirs):
    import tunewise.models.generation as g

    model = _model(tiny_model_dirs)
    prompts = [[2, 5, 9, 14], [2, 7, 7, 30, 31, 40]]
    fast = generate_ids(model, prompts, stop_ids=[1], pad_id=0, max_new_tokens=12, batch_size=2)
    with torch.no_grad():
        plain = g._generate_ids(model, prompts, stop_ids=[1], pad_id=0, max_new_tokens=12, temperature=0.0, top_k=0,
                                top_p=1.0, repetition_penalty=1.0, batch_size=2, streamer=None)
    assert fast == plain and any(len(ids) for ids, _ in fast)


def test_the_head_inside_peft_wrappers_is_found(tiny_model_dirs):
    from peft import get_peft_model

    from tunewise.config.schema import MethodConfig
    from tunewise.methods.lora import lora_config

    model = _model(tiny_model_dirs)
    lin = _head_linear(model)
    wrapped = get_peft_model(model, lora_config(MethodConfig(lora_dropout=0.0), [1, 2]))
    assert _head_linear(wrapped) is lin


def test_the_head_with_trainable_token_rows_is_found_without_merging_the_vocabulary(tiny_model_dirs, monkeypatch):
    """method.train_stop_tokens wraps the tied head in peft's TrainableTokensWrapper, whose `.weight` builds the
    whole merged vocabulary matrix (670 MB for Gemma 3, seconds per generate call). Finding the head must not."""
    from peft import get_peft_model
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    from tunewise.config.schema import MethodConfig
    from tunewise.methods.lora import lora_config
    from tunewise.methods.tokenrows import speed_up

    model = _model(tiny_model_dirs)
    lin = _head_linear(model)
    wrapped = get_peft_model(model, lora_config(MethodConfig(lora_dropout=0.0), [1, 2]))
    speed_up(wrapped)

    def merged(*a, **kw):
        raise AssertionError("the merged vocabulary matrix was built")

    monkeypatch.setattr(TrainableTokensLayer, "get_merged_weights", merged)
    assert _head_linear(wrapped) is lin
    ids = generate_ids(wrapped, [[2, 5, 9, 14]], stop_ids=[1], pad_id=0, max_new_tokens=4, batch_size=1)
    assert len(ids) == 1
