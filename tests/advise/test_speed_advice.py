"""`advise` picks the batch size and packing that are fastest here (measured with --measure, or the CPU rule), not
the largest batch that fits, and says why; `advise --measure` times real training steps."""

from __future__ import annotations

import pytest

from tunewise.advise.advise import CPU_STEP_TOKENS, padding_share, recommend
from tunewise.hardware import cpu_only, with_gpus
from tunewise.models.facts import synthetic_facts
from tunewise.config.schema import Config

SMALL = synthetic_facts(layers=12, hidden=640, intermediate=2048, heads=4, vocab=32000)


def _cfg(**sections):
    return Config.model_validate(sections)


def _rows(speeds: dict[int, float]) -> list[dict]:
    return [{"batch": b, "tokens_per_s": v, "seconds": 1.0, "peak": 0, "packed": True} for b, v in speeds.items()]


def test_cpu_batch_follows_tokens_per_step_not_the_largest_that_fits():
    kw = dict(supervised=[150] * 2000)
    long = recommend(_cfg(), SMALL, cpu_only(64), lengths=[180] * 2000, **kw)
    rec = long["recommendations"]
    assert long["memory"]["lora"]["fitted"]["per_device_batch_size"] == 16  # fits, and is not advised
    assert rec["train.per_device_batch_size"] == 2  # 2 x 180 tokens: the largest power of two under CPU_STEP_TOKENS
    assert rec["train.per_device_batch_size"] * rec["train.gradient_accumulation_steps"] == 16  # same effective batch
    why = long["reasons"]["train.per_device_batch_size"]
    assert f"about {CPU_STEP_TOKENS} tokens" in why["en"] and "16 would fit but is not faster" in why["en"]
    assert "--measure" in why["en"] and "矩阵乘已满速" in why["zh"]
    short = recommend(_cfg(), SMALL, cpu_only(64), lengths=[40] * 2000, **kw)["recommendations"]
    assert short["train.per_device_batch_size"] == 8  # short examples: more of them make a step of that size
    gpu = recommend(_cfg(), SMALL, with_gpus(80), lengths=[180] * 2000, **kw)["recommendations"]
    assert gpu["train.per_device_batch_size"] == 16  # a GPU keeps the largest that fits


def test_measured_speeds_decide_and_are_named():
    kw = dict(lengths=[180] * 2000, supervised=[150] * 2000)
    r = recommend(_cfg(), SMALL, cpu_only(64), speed=_rows({1: 120, 2: 170, 4: 200, 8: 201, 16: 150}), **kw)
    # 8 is fastest by 0.5%: the smaller batch within 3% of it is advised (less memory for the same speed)
    assert r["recommendations"]["train.per_device_batch_size"] == 4
    why = r["reasons"]["train.per_device_batch_size"]
    assert "fastest measured on this machine" in why["en"] and "16: 150" in why["en"] and "本机实测最快" in why["zh"]
    r = recommend(_cfg(), SMALL, cpu_only(64), speed=_rows({1: 120, 2: 300, 4: 200}), **kw)
    assert r["recommendations"]["train.per_device_batch_size"] == 2
    assert r["speed"][1]["tokens_per_s"] == 300


def test_measured_batches_that_do_not_fit_are_never_advised():
    big = synthetic_facts(layers=24, hidden=2048, intermediate=5632, heads=16, vocab=32000)
    kw = dict(lengths=[512] * 1000, supervised=[200] * 1000)
    hw = cpu_only(64, available_gib=24)
    fitted = recommend(_cfg(), big, hw, **kw)["memory"]["lora"]["fitted"]["per_device_batch_size"]
    assert fitted == 4
    r = recommend(_cfg(), big, hw, speed=_rows({1: 10, 2: 20, 4: 30, 8: 40, 16: 50}), **kw)
    assert r["recommendations"]["train.per_device_batch_size"] == fitted


def test_packing_advice_names_the_padding_it_saves():
    lengths = [40] * 500 + [400] * 500
    r = recommend(_cfg(), SMALL, cpu_only(64), lengths=lengths, supervised=[30] * 1000)
    b = r["recommendations"]["train.per_device_batch_size"]
    share = padding_share(lengths, b)
    assert 0.2 < share < 0.6  # mixed lengths: a padded batch is mostly the long example's length
    assert r["recommendations"]["train.packing"] == "auto"
    assert f"{share:.0%} padding" in r["reasons"]["train.packing"]["en"] and "填充" in r["reasons"]["train.packing"]["zh"]
    assert padding_share([100] * 64, 4) == 0.0
    prefix = recommend(_cfg(method={"name": "prefix"}), SMALL, cpu_only(64), lengths=lengths, supervised=[30] * 1000)
    assert prefix["recommendations"]["train.packing"] is False
    assert "virtual tokens" in prefix["reasons"]["train.packing"]["en"]
    dpo = recommend(_cfg(train={"stage": "dpo"}), SMALL, cpu_only(64), lengths=lengths, supervised=[30] * 1000)
    assert dpo["recommendations"]["train.packing"] is False and "row by row" in dpo["reasons"]["train.packing"]["en"]
    gbl = recommend(_cfg(train={"group_by_length": True}), SMALL, cpu_only(64), lengths=lengths, supervised=[30] * 1000)
    assert "Remove train.group_by_length" in gbl["reasons"]["train.packing"]["en"]


def test_advise_measure_times_real_training_steps(tmp_path, tiny_model_dirs, demo_jsonl):
    """api.advise(measure=True): the batch sizes that fit are timed in a fresh process (real training steps on the
    config's data), and the advice names the measured speeds."""
    from conftest import tiny_config

    from tunewise import api

    cfg = tiny_config(tmp_path, demo_jsonl)
    cfg["train"].pop("per_device_batch_size")
    seen = {}
    import tunewise.advise.measure as measure_mod

    real = measure_mod.measure_speed

    def spy(path, batches, examples=24, **kw):
        seen["batches"] = batches
        out = real(path, batches, examples=8, **kw)
        seen["rows"] = out["rows"]
        return out

    measure_mod.measure_speed = spy
    try:
        r = api.advise(cfg, measure=True)
    finally:
        measure_mod.measure_speed = real
    assert seen["batches"][0] == 1 and seen["batches"] == [1 << i for i in range(len(seen["batches"]))]
    rows = seen["rows"]
    assert [x["batch"] for x in rows] == seen["batches"]
    assert all(x["tokens_per_s"] > 0 and x["packed"] for x in rows)  # the default config packs its batches
    best = max(x["tokens_per_s"] for x in rows)
    advised = r["recommendations"]["train.per_device_batch_size"]
    assert next(x for x in rows if x["batch"] == advised)["tokens_per_s"] >= 0.97 * best
    assert "fastest measured on this machine" in r["reasons"]["train.per_device_batch_size"]["en"]


def test_advise_cli_has_the_measure_flag(capsys):
    from tunewise.cli import main

    with pytest.raises(SystemExit):
        main(["advise", "--help"])
    assert "--measure" in capsys.readouterr().out
