"""`tunewise advise`: recommendations from model facts, data lengths and (fake or real) hardware."""

import json

import pytest

from tunewise.advise.advise import percentile, recommend, target_batch
from tunewise.hardware import cpu_only, detect_hardware, with_gpus
from tunewise.models.facts import synthetic_facts
from tunewise.config.schema import Config
from tunewise.errors import ConfigError

LLAMA_7B = synthetic_facts(layers=32, hidden=4096, intermediate=11008, heads=32, vocab=32000, tied=False)


def _cfg(**sections):
    return Config.model_validate(sections)


def test_percentiles_and_target_batch():
    xs = list(range(1, 101))
    assert percentile(xs, 0.95) == 95 and percentile(xs, 0.99) == 99 and percentile(xs, 1.0) == 100
    assert target_batch(5000) == 16 and target_batch(40) == 4 and target_batch(100, min_steps=30) == 8
    assert target_batch(100) == 4  # 13 steps a pass at 8: too few for train.min_steps (60) in 3 passes


def test_7b_on_a_fake_24gb_gpu_recommends_lora_in_bf16_with_fitting_batch():
    lengths = [300] * 900 + [700] * 100
    r = recommend(_cfg(method={"name": "full"}), LLAMA_7B, with_gpus(24), lengths=lengths, supervised=[100] * 1000)
    rec = r["recommendations"]
    assert r["hardware"]["precision"] == "bf16" and r["hardware"]["cuda"]
    assert not r["memory"]["full"]["fits"] and r["memory"]["full"]["fitted"] is None
    assert rec["method.name"] == "lora" and "does not fit" in r["reasons"]["method.name"]["en"]
    assert rec["data.max_length"] == 704  # p99 = 700, rounded up to a multiple of 64
    b, acc = rec["train.per_device_batch_size"], rec["train.gradient_accumulation_steps"]
    assert b * acc >= 16 and r["memory"]["lora"]["fitted"]["per_device_batch_size"] == b
    assert rec["method.lora_alpha"] == 2 * rec["method.lora_r"]
    assert "sqrt(" in r["reasons"]["train.learning_rate"]["en"] and 2e-4 <= rec["train.learning_rate"] <= 1e-3


def test_bigger_gpu_allows_bigger_batch_and_nproc_divides_the_work():
    lengths, sup = [512] * 2000, [200] * 2000
    small = recommend(_cfg(), LLAMA_7B, with_gpus(24), lengths=lengths, supervised=sup)["recommendations"]
    big = recommend(_cfg(), LLAMA_7B, with_gpus(80), lengths=lengths, supervised=sup)["recommendations"]
    assert big["train.per_device_batch_size"] > small["train.per_device_batch_size"] or small["train.gradient_checkpointing"] is True
    four = recommend(_cfg(), LLAMA_7B, with_gpus(80, 4), lengths=lengths, supervised=sup, nproc=4)
    rec = four["recommendations"]
    assert rec["train.per_device_batch_size"] * rec["train.gradient_accumulation_steps"] * 4 == 16
    assert "x 4 processes" in four["reasons"]["train.gradient_accumulation_steps"]["en"]
    with pytest.raises(ConfigError, match="--nproc 4 but this machine has 2 GPU"):
        recommend(_cfg(), LLAMA_7B, with_gpus(80, 2), lengths=lengths, supervised=sup, nproc=4)


def test_nothing_fits_is_a_user_error():
    with pytest.raises(ConfigError) as e:
        recommend(_cfg(), LLAMA_7B, cpu_only(4), lengths=[512] * 100, supervised=[100] * 100)
    assert "no tuning method fits" in e.value.what


def test_epochs_rank_and_warmup_follow_dataset_size():
    tiny = synthetic_facts(layers=2, hidden=64, intermediate=128, heads=4, vocab=1000)
    few = recommend(_cfg(), tiny, cpu_only(8), lengths=[50] * 200, supervised=[20] * 200)["recommendations"]
    many = recommend(_cfg(), tiny, cpu_only(8), lengths=[50] * 20000, supervised=[20] * 20000)["recommendations"]
    # 200 examples at batch 16 are 13 steps a pass: enough passes for train.min_steps (60) optimizer steps
    assert few["train.num_epochs"] == 5 and many["train.num_epochs"] == 1
    big = recommend(_cfg(), tiny, cpu_only(8), lengths=[50] * 900, supervised=[20] * 900)["recommendations"]
    assert big["train.num_epochs"] == 3  # 57 steps a pass: the usual 3 passes already give 60+
    assert few["method.lora_r"] < many["method.lora_r"]
    assert few["train.warmup_ratio"] == 0.1 and many["train.warmup_ratio"] == 0.03


def test_detect_hardware_is_plain_data():
    hw = detect_hardware()
    assert hw.ram_bytes > 0 and hw.cpu_cores >= 1 and isinstance(hw.gpus, tuple)
    assert json.dumps(hw.to_dict())


@pytest.fixture
def tiny_cfg(tmp_path, demo_jsonl, tiny_model_dirs):
    from conftest import tiny_config, write_config

    return write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={"warmup_steps": 5, "warmup_ratio": 0.1}))


def test_cli_json_shape_and_apply(tiny_cfg, tmp_path, capsys):
    from tunewise.cli import main
    from tunewise.config import load_config

    out = tmp_path / "other" / "advised.yaml"
    assert main(["advise", str(tiny_cfg), "--json", "--apply", str(out)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) >= {"hardware", "memory", "recommendations", "reasons", "lint"}
    assert r["hardware"]["threads"]["threads"] >= 1 and r["hardware"]["threads"]["line"].startswith("CPU threads:")
    assert set(r["memory"]) == {"lora", "qlora", "full", "freeze", "prefix", "prompt", "adapter"}
    assert all(k in r["reasons"] for k in r["recommendations"])
    assert {x["code"] for x in r["lint"]} >= {"warmup-both"}
    assert all(set(x) >= {"code", "message", "fix", "severity"} for x in r["lint"])
    cfg = load_config(out)  # written elsewhere: dataset paths still resolve
    for k, v in r["recommendations"].items():
        section, key = k.split(".")
        assert getattr(getattr(cfg, section), key) == v
    assert cfg.train.warmup_steps == 0


def test_cli_text_in_chinese_and_nproc(tiny_cfg, capsys):
    from tunewise.cli import main

    assert main(["advise", str(tiny_cfg), "--lang", "zh", "--nproc", "2"]) == 0
    out = capsys.readouterr().out
    assert "建议" in out and "峰值内存" in out and "2 个进程" in out and "CPU 线程：" in out
    assert main(["advise", str(tiny_cfg), "--nproc", "0"]) == 2
    assert "--nproc: --nproc must be at least 1" in capsys.readouterr().err


def test_a_tight_cpu_gets_a_bf16_frozen_base_before_checkpointing():
    from dataclasses import replace

    from tunewise.train.memory import FIT_SHARE, GiB, MethodParams, Shape, estimate

    facts = synthetic_facts(layers=24, hidden=2048, intermediate=5632, heads=16, vocab=32000)
    lengths, sup = [512] * 1000, [200] * 1000
    mp, one = MethodParams(), Shape(batch=1, seq=512, supervised_share=200 / 512)
    roomy = cpu_only(1000)
    wide = estimate(facts, "lora", mp, one, roomy).total
    wide_gc = estimate(facts, "lora", mp, replace(one, gradient_checkpointing=True), roomy).total
    narrow = estimate(facts, "lora", mp, replace(one, frozen_dtype="bfloat16"), roomy).total
    assert narrow < wide and wide_gc < wide
    # Room for the narrow base or for checkpointing, not for the float32 base without checkpointing.
    hw = cpu_only(64, available_gib=(max(narrow, wide_gc) + wide) / 2 / FIT_SHARE / GiB)
    r = recommend(_cfg(), facts, hw, lengths=lengths, supervised=sup)
    rec = r["recommendations"]
    assert rec["train.frozen_dtype"] == "bfloat16"
    assert "without gradient checkpointing" in r["reasons"]["train.frozen_dtype"]["en"]
    # It fits without checkpointing now, but in more than half of the memory: auto's rule turns checkpointing on.
    assert rec["train.gradient_checkpointing"] == "auto"  # the default, which turns it on here: kept
    assert r["reasons"]["train.gradient_checkpointing"]["en"].startswith("auto, here on: without it the run is estimated")
    assert r["reasons"]["train.gradient_checkpointing"]["zh"].startswith("auto，此处开启")
    off = recommend(_cfg(train={"gradient_checkpointing": False}), facts, hw, lengths=lengths, supervised=sup)
    assert off["recommendations"]["train.gradient_checkpointing"] is True  # set off by hand: advise says turn it on
    assert "train.frozen_dtype" not in recommend(_cfg(), facts, roomy, lengths=lengths, supervised=sup)["recommendations"]


def test_advice_comes_from_named_recommenders_in_order(monkeypatch):
    """recommend runs the registered recommenders in order; each owns its keys, and one registered later reads
    the advice of those before it (like the lint's rules, a new recommender is one decorated function)."""
    from tunewise.advise import advise

    assert list(advise.RECOMMENDERS) == ["method", "batch", "packing", "max_length", "learning_rate", "lora_rank", "epochs",
                                         "warmup"]
    cfg, facts = _cfg(), LLAMA_7B
    kw = dict(lengths=[200] * 500, supervised=[100] * 500)
    full = recommend(cfg, facts, with_gpus(24), **kw)
    monkeypatch.delitem(advise.RECOMMENDERS, "lora_rank")
    seen = {}

    @advise.recommender("reads-earlier")
    def _reads(a):
        seen["method"], seen["eff"] = a.rec["method.name"], a.eff

    try:
        fewer = recommend(cfg, facts, with_gpus(24), **kw)
    finally:
        advise.RECOMMENDERS.pop("reads-earlier")
    assert "method.lora_r" in full["recommendations"] and "method.lora_r" not in fewer["recommendations"]
    assert set(full["recommendations"]) - set(fewer["recommendations"]) == {"method.lora_r", "method.lora_alpha"}
    assert seen == {"method": full["recommendations"]["method.name"],
                    "eff": full["recommendations"]["train.per_device_batch_size"]
                    * full["recommendations"]["train.gradient_accumulation_steps"]}


def test_qlora_on_a_cpu_says_its_peak_is_the_load_and_what_must_be_free(monkeypatch):
    """Where the checkpoint's pages stay resident while loading (not Linux), the table's total for qlora on a CPU is
    the loading peak (bench/SWEEP.md, session 17), not the sum of the training terms beside it: a line says so,
    with what must be free; lora gets no such line."""
    from tunewise.advise import largest as lg
    from tunewise.advise.report import format_advice
    from tunewise.train import memory as mem

    monkeypatch.setattr(mem, "PAGES_RELEASED_WHILE_LOADING", False)

    facts = lg.size_facts("qwen2.5", "3B")
    r = recommend(_cfg(method={"name": "qlora"}), facts, cpu_only(24), lengths=[256] * 200, supervised=[100] * 200)
    q = r["memory"]["qlora"]
    assert q["total"] == q["loading"] > q["training"] and q["needed"] < q["total"]
    r.setdefault("lint", [])
    en, zh = format_advice(r), format_advice(r, "zh")
    line = next(x for x in en.splitlines() if "the peak comes while loading" in x)
    assert line.strip().startswith("qlora:") and "page cache" in line and "needs" in line
    assert "峰值出现在加载时" in zh and "需要空闲" in zh
    assert not any(x.strip().startswith("lora:") for x in en.splitlines())
    # paged out as the load goes (Linux): no page cache to speak of, the line names only the two peaks
    monkeypatch.setattr(mem, "PAGES_RELEASED_WHILE_LOADING", True)
    r = recommend(_cfg(method={"name": "qlora"}), facts, cpu_only(24), lengths=[256] * 200, supervised=[100] * 200)
    line = next((x for x in format_advice(r).splitlines() if "while loading" in x), "")
    assert "page cache" not in line and r["memory"]["qlora"]["reclaimable"] == 0
