"""train.gradient_checkpointing: auto (#26): on when the run without it is estimated at more than half of what one
process may use, off otherwise (and never for prefix tuning); training and `tunewise advise` decide alike, and a
checkpointed run computes what an unchecked one computes."""

import pytest
import torch


def _prepared(tmp_path, demo_jsonl, **train):
    from conftest import tiny_config

    from tunewise.config import load_config
    from tunewise.train.assemble import load_prepared

    cfg = load_config(None, base=tiny_config(tmp_path, demo_jsonl, train=train))
    train_ds, model, _pad = load_prepared(cfg)
    return cfg, train_ds, model


def test_auto_is_the_default_and_stays_off_when_the_run_is_small(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    cfg, _ds, model = _prepared(tmp_path, demo_jsonl)
    assert cfg.train.gradient_checkpointing == "auto"
    assert not model.is_activation_checkpointing
    err = capsys.readouterr().err
    assert "gradient checkpointing auto: off (this run is estimated at" in err


def test_auto_turns_on_above_half_of_the_memory_and_not_below(tmp_path, tiny_model_dirs, demo_jsonl):
    from tunewise.hardware import cpu_only
    from tunewise.train.assemble import checkpointing_choice, estimate_without_checkpointing

    cfg, ds, model = _prepared(tmp_path, demo_jsonl, gradient_checkpointing=False)
    need = estimate_without_checkpointing(cfg, model, None, ds, cpu_only(1000)).total
    auto = cfg.model_copy(update={"train": cfg.train.model_copy(update={"gradient_checkpointing": "auto"})})
    gib = 1024 ** 3
    on, why = checkpointing_choice(auto, model, None, ds, cpu_only(64, available_gib=need / 0.55 / gib))
    assert on is True and why.startswith("auto: on (this run without it is estimated at") and "more than half" in why
    on, why = checkpointing_choice(auto, model, None, ds, cpu_only(64, available_gib=need / 0.45 / gib))
    assert on is False and why.startswith("auto: off")
    # the estimate reads the data: the supervised share as encoding counted it, and the batch
    from tunewise.train.assemble import run_shape

    share = run_shape(cfg, model, None, ds, cpu_only(64))[1].supervised_share
    assert share == ds.stats["supervised_tokens"] / ds.stats["total_tokens"] and 0 < share < 1
    big = cfg.model_copy(update={"train": cfg.train.model_copy(update={"per_device_batch_size": 4 * cfg.train.per_device_batch_size})})
    assert estimate_without_checkpointing(big, model, None, ds, cpu_only(1000)).activations > \
        estimate_without_checkpointing(cfg, model, None, ds, cpu_only(1000)).activations
    # set values are kept, without a word; prefix tuning is never checkpointed by auto
    assert checkpointing_choice(cfg, model, None, ds, cpu_only(0.01)) == (False, "")
    forced = cfg.model_copy(update={"train": cfg.train.model_copy(update={"gradient_checkpointing": True})})
    assert checkpointing_choice(forced, model, None, ds, cpu_only(1000)) == (True, "")
    prefix = auto.model_copy(update={"method": auto.method.model_copy(update={"name": "prefix"})})
    assert checkpointing_choice(prefix, model, None, ds, cpu_only(0.01))[0] is False


def test_auto_rule_at_a_real_shape():
    """At Qwen2.5-1.5B's shape: off when the run takes at most half of the budget, on above; then every layer is
    checkpointed and the estimate is the checkpointed one; prefix tuning never."""
    from dataclasses import replace

    from tunewise.hardware import cpu_only
    from tunewise.models.facts import synthetic_facts
    from tunewise.train.memory import GiB, MethodParams, Shape, auto_checkpointing, estimate

    facts = synthetic_facts(layers=28, hidden=1536, intermediate=8960, heads=12, kv_heads=2, vocab=151936)
    mp, shape = MethodParams(), Shape(batch=4, seq=512, supervised_share=0.8, frozen_dtype="bfloat16")
    without = estimate(facts, "lora", mp, shape, cpu_only(1000)).total
    full = estimate(facts, "lora", mp, replace(shape, gradient_checkpointing=True), cpu_only(1000)).total
    assert full < without / 2
    on, w, chosen = auto_checkpointing(facts, "lora", mp, shape, cpu_only(64, available_gib=2.02 * without / GiB))
    assert not on and w.total == chosen.total == without
    on, w, chosen = auto_checkpointing(facts, "lora", mp, shape, cpu_only(64, available_gib=1.98 * without / GiB))
    assert on and w.total == without and chosen.total == full
    assert not auto_checkpointing(facts, "prefix", mp, shape, cpu_only(1))[0]


def test_an_auto_choice_of_on_checkpoints_the_model_and_returns_freed_memory(tmp_path, tiny_model_dirs, demo_jsonl,
                                                                           monkeypatch, capsys):
    from tunewise import compat
    from tunewise.train import memory as mem
    from tunewise.train.assemble import MMAP_THRESHOLD

    calls = []
    monkeypatch.setattr(compat, "malloc_mmap_threshold", lambda n: calls.append(n) or True)
    monkeypatch.setattr(mem, "AUTO_CHECKPOINT_SHARE", 0.0)  # any run is "more than half" of nothing
    _cfg, _ds, model = _prepared(tmp_path, demo_jsonl)
    assert model.is_activation_checkpointing and calls == [MMAP_THRESHOLD]
    layers = [m.gradient_checkpointing for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    assert layers and all(layers)
    assert "gradient checkpointing auto: on (" in capsys.readouterr().err


def test_advise_and_training_estimate_the_same_run(tmp_path, tiny_model_dirs, demo_jsonl):
    """advise's as-configured estimate and training's (the rule's input) agree, so advise's word on auto holds."""
    from tunewise.advise.advise import advise_config
    from tunewise.hardware import cpu_only
    from tunewise.train.assemble import estimate_without_checkpointing

    cfg, ds, model = _prepared(tmp_path, demo_jsonl, gradient_checkpointing=False)
    hw = cpu_only(64)
    trained = estimate_without_checkpointing(cfg, model, None, ds, hw)
    advised = advise_config(cfg, hw)["memory"]["lora"]
    assert advised["as_configured"]["gradient_checkpointing"] is False
    assert advised["total"] == pytest.approx(trained.total, rel=0.05)
    assert advised["activations"] == pytest.approx(trained.activations, rel=0.1)


@pytest.mark.parametrize("arch", ["tiny-llama", "tiny-gemma3"])
def test_a_checkpointed_step_computes_what_an_unchecked_one_computes(arch, tmp_path, tiny_model_dirs, demo_jsonl):
    from conftest import tiny_config

    from tunewise.config import load_config
    from tunewise.train.assemble import load_prepared
    from tunewise.train.collate import PadCollator

    out = {}
    for gc in (False, True):
        cfg = load_config(None, base=tiny_config(tmp_path / str(gc), demo_jsonl, arch, train={"gradient_checkpointing": gc}))
        torch.manual_seed(0)
        ds, model, pad = load_prepared(cfg)
        assert model.is_activation_checkpointing is gc
        model.train()
        batch = PadCollator(pad)([ds[i] for i in range(4)])
        torch.manual_seed(1)  # lora_dropout draws the same masks in both runs (checkpointing replays the RNG)
        loss = model(**batch).loss
        loss.backward()
        out[gc] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert torch.allclose(out[False][0], out[True][0], rtol=1e-6)
    assert out[False][1].keys() == out[True][1].keys() and out[True][1]
    for n, g in out[False][1].items():
        assert torch.allclose(g, out[True][1][n], rtol=1e-5, atol=1e-7), n


@pytest.mark.parametrize("gc", ["auto", True])
def test_the_run_summary_records_what_the_run_trained_with(gc, tmp_path, tiny_model_dirs, demo_jsonl):
    import json

    from conftest import tiny_config

    from tunewise.config import load_config
    from tunewise.train.workflow import train

    cfg = load_config(None, base=tiny_config(tmp_path, demo_jsonl, train={"gradient_checkpointing": gc, "max_steps": 2,
                                                                          "generation_check": False}))
    run = train(cfg, overwrite=True)
    assert json.loads((run / "train_summary.json").read_text())["gradient_checkpointing"] is (gc is True)
