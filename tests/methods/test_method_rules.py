"""Method details the matrix does not show: config rules (model-free), DoRA/rsLoRA reaching peft, freeze
selection errors, prompt init from text, the bitsandbytes CPU repacking guard, and the method listing."""

from __future__ import annotations

import math

import pytest
import torch

from tunewise import methods
from tunewise.config.schema import Config
from tunewise.errors import ConfigError


def _cfg(method: dict, **train) -> Config:
    return Config.model_validate({"method": method, "train": train})


@pytest.mark.parametrize("method,train,where,why", [
    ({"name": "prefix"}, {"packing": True}, "train.packing", "prefix tuning .* cannot be packed"),
    ({"name": "prompt"}, {"packing": True}, "train.packing", "prompt tuning .* cannot be packed"),
    ({"name": "prefix"}, {"gradient_checkpointing": True}, "train.gradient_checkpointing",
     "cannot be recomputed by gradient checkpointing"),
])
def test_incompatible_options_are_config_errors(method, train, where, why):
    with pytest.raises(ConfigError, match=why) as e:
        methods.check_config(_cfg(method, **train))
    assert e.value.where == where and f"{where}: false" in e.value.fix


def test_compatible_options_pass_and_unknown_method_suggests():
    methods.check_config(_cfg({"name": "prompt"}, gradient_checkpointing=True))
    methods.check_config(_cfg({"name": "lora"}, packing=True))
    methods.check_config(_cfg({"name": "prefix"}))  # train.packing 'auto' is off for virtual tokens, not refused
    with pytest.raises(ConfigError) as e:
        methods.check_config(_cfg({"name": "qlorra"}))
    assert "did you mean 'qlora'" in str(e.value) and e.value.where == "method.name"
    assert all(n in e.value.fix for n in ("adapter", "freeze", "full", "lora", "prefix", "prompt", "qlora"))


def _model(tiny_model_dirs, arch="tiny-llama"):
    from tunewise.models.load import load_model

    torch.manual_seed(0)
    return load_model(tiny_model_dirs[arch], dtype="float32")


@pytest.mark.parametrize("rslora", [False, True])
def test_dora_and_rslora_reach_peft(tiny_model_dirs, rslora):
    from peft.tuners.lora import LoraLayer

    cfg = _cfg({"name": "lora", "lora_r": 4, "lora_alpha": 8, "use_dora": True, "use_rslora": rslora})
    model = methods.apply_method(cfg, _model(tiny_model_dirs))
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    assert layers and all(m.use_dora["default"] for m in layers)
    assert all("default" in m.lora_magnitude_vector for m in layers)
    want = 8 / math.sqrt(4) if rslora else 8 / 4
    assert all(m.scaling["default"] == pytest.approx(want) for m in layers)
    conf = model.peft_config["default"]
    assert conf.use_dora and conf.use_rslora == rslora


def test_freeze_selection_errors_name_the_key(tiny_model_dirs):
    with pytest.raises(ConfigError) as e:
        methods.apply_method(_cfg({"name": "freeze", "freeze_trainable_layers": 3}), _model(tiny_model_dirs))
    assert e.value.where == "method.freeze_trainable_layers" and "only 2 layers" in str(e.value)
    with pytest.raises(ConfigError) as e:
        methods.apply_method(_cfg({"name": "freeze", "freeze_extra_modules": ["lm_haed"]}), _model(tiny_model_dirs))
    assert e.value.where == "method.freeze_extra_modules" and "lm_head" in e.value.fix


def test_freeze_with_tied_lm_head_trains_the_shared_embedding(tiny_model_dirs):
    # tiny-qwen2 ties lm_head to embed_tokens: naming lm_head trains that one shared matrix, counted once
    model = _model(tiny_model_dirs, "tiny-qwen2")
    emb = model.get_input_embeddings().weight.numel()
    top = sum(p.numel() for p in model.model.layers[-1].parameters())
    model = methods.apply_method(_cfg({"name": "freeze", "freeze_trainable_layers": 1, "freeze_extra_modules": ["lm_head"]}), model)
    assert methods.count_parameters(model)[0] == top + emb


def test_prompt_init_from_text(tiny_model_dirs):
    from tunewise.models.load import load_tokenizer

    tok = load_tokenizer(tiny_model_dirs["tiny-llama"])
    cfg = _cfg({"name": "prompt", "num_virtual_tokens": 5, "prompt_init_text": "Classify the sentiment"})
    model = methods.apply_method(cfg, _model(tiny_model_dirs), tokenizer=tok)
    ids = tok("Classify the sentiment", add_special_tokens=False)["input_ids"]
    ids = (ids * 5)[:5]
    want = model.get_base_model().get_input_embeddings()(torch.tensor(ids))
    assert torch.equal(model.prompt_encoder["default"].embedding.weight, want)


def test_qlora_eval_forward_does_not_break_later_gradients(tiny_model_dirs):
    """bitsandbytes repacks 4-bit weights for CPU inference after an eval forward; training through the
    repacked weights has no autograd kernel. qlora switches that off, so gradients reach layer 0 after eval."""
    from tunewise.models.load import load_model

    cfg = _cfg({"name": "qlora", "lora_r": 4})
    info = methods.get("qlora")
    model = load_model(tiny_model_dirs["tiny-llama"], dtype="float32", **methods.base_load_kwargs(info, cfg))
    model = methods.apply_method(cfg, model)
    ids = torch.randint(10, 500, (2, 12))
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # what the Trainer's evaluation does
    assert not any(getattr(getattr(m, "weight", None), "quant_state", None) is not None
                   and getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in model.modules())
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    # lora_B (A starts random, B at zero) of the lowest layer: its gradient crossed every 4-bit layer above
    a = model.get_base_model().model.layers[0].self_attn.q_proj.lora_B["default"].weight
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_every_method_is_listed_once_in_both_languages(capsys):
    from tunewise.cli import main

    names = ["adapter", "freeze", "full", "lora", "prefix", "prompt", "qlora"]
    for lang, word in (("en", "LoRA"), ("zh", "冻结")):
        assert main(["methods", "--lang", lang]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert [ln.split()[0] for ln in lines] == names
        assert any(word in ln for ln in lines)
    infos = {m.name: m for m in methods.all_methods()}
    assert not infos["full"].peft and not infos["freeze"].peft
    assert {n for n, m in infos.items() if not m.mergeable} == {"prefix", "prompt", "adapter"}


def test_stop_token_rows_give_way_to_a_fully_trained_embedding(tiny_model_dirs):
    """method.modules_to_save with the input embedding trains every row already: train_stop_tokens then adds
    nothing (and peft cannot wrap the wrapped embedding again), so the model still builds and trains."""
    cfg = _cfg({"name": "lora", "lora_r": 4, "modules_to_save": ["embed_tokens", "lm_head"]})
    model = methods.get("lora").apply(_model(tiny_model_dirs), cfg.method, {"token_ids": [1, 2]})
    ids = torch.randint(10, 500, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    emb = model.get_input_embeddings()
    assert any(p.requires_grad and p.grad is not None for p in emb.parameters())
    plain = methods.get("lora").apply(_model(tiny_model_dirs), _cfg({"name": "lora", "lora_r": 4}).method, {"token_ids": [1, 2]})
    assert "trainable_tokens" in str(type(plain.get_input_embeddings())).lower() or any(
        "token_adapter" in n for n, _ in plain.named_modules())
