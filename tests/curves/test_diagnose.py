"""Synthetic curves for every verdict, plus report files."""

import json
import math

import numpy as np
import pytest

from tunewise.curves.diagnose import (VERDICTS, Thresholds, _ADVICE, diagnose, gap_stats, rule_gap, rule_overfit, rule_spikes,
                                      rule_stagnant, rule_underfit, rule_val_stagnant)


def rows(train, val=None, every=5):
    out = [{"step": i + 1, "loss": float(x)} for i, x in enumerate(train)]
    for j, v in enumerate([] if val is None else list(val)):
        out.append({"step": (j + 1) * every, "val_loss": float(v)})
    return sorted(out, key=lambda r: r["step"])


rng = np.random.default_rng(0)
N = 60
steps = np.arange(N)
noise = rng.normal(0, 0.02, N)


def test_well_fit():
    train = 0.5 + 2.0 * np.exp(-steps / 8) + noise
    val = 0.6 + 2.0 * np.exp(-np.arange(1, 13) * 5 / 8)
    assert diagnose(rows(train, val)).verdict == "well_fit"


def test_overfit():
    train = 0.1 + 2.0 * np.exp(-steps / 10) + noise
    val = [2.0, 1.4, 1.0, 0.8, 0.75, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4]
    d = diagnose(rows(train, val))
    assert d.verdict == "overfit" and d.best_step == 25 and d.evidence["val_rise_from_min"] > 0.05
    assert any("best checkpoint" in a for a in d.advice["en"]) and d.advice["zh"]


def test_underfit_still_falling():
    train = 3.0 - 0.03 * steps + noise
    val = 3.0 - 0.15 * np.arange(12)
    assert diagnose(rows(train, val)).verdict == "underfit"


def test_both_stagnant_high():
    train = 3.0 + noise
    assert diagnose(rows(train)).verdict == "stagnant_high"  # without validation: the training curve alone
    d = diagnose(rows(train, 3.05 + rng.normal(0, 0.005, 12)))
    assert d.verdict == "stagnant_high" and d.evidence["total_drop"] < 0.05
    assert any("learning_rate" in a for a in d.advice["en"]) and any("preview" in a for a in d.advice["en"])


def test_large_gap_is_overfitting_before_validation_rises():
    # the guides' case: training loss far below a validation loss that levelled off and never rose
    train = 0.1 + 2.0 * np.exp(-steps / 10) + noise
    val = 0.8 + 1.2 * np.exp(-np.arange(1, 13) * 5 / 8)
    d = diagnose(rows(train, val))
    assert d.verdict == "gap_growing" and d.evidence["gap_rel"] > 0.35
    assert any("early_stopping" in a for a in d.advice["en"]) and d.advice["zh"]


def test_a_moderate_gap_that_keeps_growing():
    # close at mid-run (gap ~5%), then training keeps falling while validation stays level
    train = 0.6 + 2.0 * np.exp(-steps / 8) - np.clip(steps - 30, 0, None) * 0.006 + noise / 4
    val = 0.6 + 2.0 * np.exp(-np.arange(1, 13) * 5 / 8)
    d = diagnose(rows(train, val))
    assert d.verdict == "gap_growing" and d.evidence["gap_growth"] > 0.15 and d.evidence["gap_rel"] < 0.35


def test_validation_flat_from_the_start_is_not_underfitting():
    # issue 22: training 0.3 against a flat validation loss of 1.4 was "well_fit" or "underfit: raise the LR"
    train = 0.3 + 1.2 * np.exp(-steps / 10) + noise
    val = 1.4 + rng.normal(0, 0.01, 12)
    d = diagnose(rows(train, val))
    assert d.verdict == "val_stagnant" and d.evidence["val_drop_since_first"] < 0.05
    text = " ".join(d.advice["en"])
    assert "Do not raise the learning rate" in text and "lora_dropout" in text and "data" in text
    assert "不要提高学习率" in " ".join(d.advice["zh"])


def test_close_curves_stay_well_fit_and_a_still_falling_validation_is_underfit():
    train = 0.5 + 2.0 * np.exp(-steps / 8) + noise
    d = diagnose(rows(train, 0.6 + 2.0 * np.exp(-np.arange(1, 13) * 5 / 8)))
    assert d.verdict == "well_fit" and 0 < d.evidence["gap_rel"] < 0.35
    # training ahead of a validation loss that is still clearly falling: train longer, not "overfit"
    val = 2.6 - 0.15 * np.arange(12)
    assert diagnose(rows(0.3 + 2.0 * np.exp(-steps / 8), val)).verdict == "underfit"


def test_unstable():
    train = 1.0 + 0.5 * (np.arange(N) % 2) + rng.normal(0, 0.05, N)
    train[::7] *= 3
    assert diagnose(rows(train)).verdict == "unstable"


def test_noisy_train_with_steadily_falling_val_is_not_unstable():
    # small mixed batches: the per-step train loss jumps, but validation improves every time
    train = 0.3 + 2.0 * np.exp(-steps / 8) * (1 + 0.8 * (np.arange(N) % 2))
    val = 0.4 + 2.0 * np.exp(-np.arange(1, 13) * 5 / 8)
    d = diagnose(rows(train, val))
    assert d.verdict == "well_fit" and d.evidence["train_noise_but_val_steady"]
    assert diagnose(rows(train)).verdict == "unstable"  # without validation the noise is all we have


def test_val_zigzag_is_unstable():
    train = 0.5 + 2.0 * np.exp(-steps / 8) + noise
    val = [2.0, 1.5, 1.9, 1.2, 1.6, 1.0, 1.4, 0.9, 0.9, 0.9, 0.9, 0.9]
    d = diagnose(rows(train, val))
    assert d.verdict == "unstable" and d.evidence["val_zigzags"] >= 2


def test_diverged_nan_and_explosion():
    d = diagnose(rows([2.0, 1.9, 1.8]) + [{"step": 4, "event": "nan_stop", "loss": math.nan}])
    assert d.verdict == "diverged" and d.evidence["nan_step"] == 4
    assert diagnose(rows([2.0, 2.5, 4, 9, 20, 50, 100])).verdict == "diverged"


def test_too_short_and_no_val_note():
    assert diagnose(rows([2.0, 1.8])).verdict == "too_short"
    d = diagnose(rows(0.5 + 2.0 * np.exp(-steps / 8) + noise))
    assert "validation" in d.evidence["note"]


def test_every_verdict_has_advice_in_both_languages():
    assert set(_ADVICE) == set(VERDICTS)
    assert VERDICTS[:3] == ["diverged", "does_not_stop", "not_learned_yet"]
    for v in VERDICTS:
        a = _ADVICE[v]
        assert a["en"] and len(a["en"]) == len(a["zh"]) and a["summary"]["en"] and a["summary"]["zh"]


def test_gap_rules_are_unit_testable():
    th = Thresholds()
    train = [(s, 2.0 - 0.03 * s) for s in range(1, 61)]  # falls to 0.2
    flat = [(s, 1.4) for s in range(5, 61, 5)]
    g = gap_stats(train, flat, th)
    assert g["gap_rel"] == pytest.approx((1.4 - g["train_end"]) / 1.4) and g["val_drop_since_first"] == 0
    assert rule_val_stagnant(g, th) and rule_gap(g, False, th) and rule_gap(g, True, th) is None
    close = gap_stats([(s, 1.0) for s in range(1, 61)], [(s, 1.05) for s in range(5, 61, 5)], th)
    assert rule_val_stagnant(close, th) is None and rule_gap(close, False, th) is None
    assert rule_stagnant([[(s, 1.0) for s in range(10)]], th) and rule_stagnant([train], th) is None
    assert gap_stats(train, flat[:2], th) is None  # too few evaluations to judge a gap


def test_rules_are_unit_testable():
    th = Thresholds()
    assert rule_spikes([(i, 1.0) for i in range(10)], th)["spike_count"] == 0
    assert rule_overfit([(1, 2.0), (4, 1.5), (6, 1.0)], [(2, 1.0), (4, 0.5), (6, 0.9)], th)["val_min_step"] == 4
    assert rule_underfit([(i, 1.0) for i in range(10)], th)["total_drop"] == pytest.approx(0)


OVER = [2.0, 1.5, 1.2, 1.1, 1.2, 1.4, 1.6]
FINE = [2.0, 1.6, 1.3, 1.1, 1.0, 0.98, 0.97]


def _run_dir(tmp_path, name, val):
    """A run directory whose metrics.jsonl has a falling train curve and the given validation losses."""
    run = tmp_path / name
    run.mkdir()
    r = rows(0.2 + 2 * np.exp(-np.arange(35) / 8), val)
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in r))
    return run


def test_report_files_and_overlay(tmp_path):
    from tunewise.curves.report import analyze_run, compare_runs

    for name, val in (("a", OVER), ("b", FINE)):
        (_run_dir(tmp_path, name, val) / "checkpoints" / "checkpoint-20").mkdir(parents=True)
    d = analyze_run(tmp_path / "a")
    assert d.verdict == "overfit"
    diag = json.loads((tmp_path / "a" / "diagnosis.json").read_text())
    assert diag["best_checkpoint"].endswith("checkpoint-20") and diag["note"]["en"]
    assert (tmp_path / "a" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "a" / "report.html").read_text()
    assert "data:image/png;base64," in page and "overfit" in page and "建议" in page
    out = tmp_path / "cmp.png"
    assert [x.verdict for x in compare_runs([tmp_path / "a", tmp_path / "b"], out)][0] == "overfit"
    assert out.exists()


def test_result_note_only_when_overfit(tmp_path):
    from tunewise.curves.report import analyze_run, result_note

    for name, val in (("over", OVER), ("fine", FINE)):
        analyze_run(_run_dir(tmp_path, name, val))
    assert "best checkpoint" in result_note(tmp_path / "over") and "最佳" in result_note(tmp_path / "over", "zh")
    assert result_note(tmp_path / "fine") is None and result_note(tmp_path / "missing") is None


def test_final_evaluation_is_not_a_curve_point(tmp_path):
    """The evaluation of the saved (best) model after training must not look like the last val point."""
    from types import SimpleNamespace

    from tunewise.train.callbacks import MetricsJsonl

    cb = MetricsJsonl(tmp_path / "m.jsonl")
    state = SimpleNamespace(is_world_process_zero=True, global_step=10, epoch=1.0, max_steps=10)
    cb.on_log(None, state, None, logs={"eval_loss": 0.9})
    cb.on_train_end(None, state, None)
    cb.on_log(None, state, None, logs={"eval_loss": 0.5})
    got = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert got == [{"step": 10, "epoch": 1.0, "val_loss": 0.9}, {"step": 10, "epoch": 1.0, "event": "final_eval", "final_val_loss": 0.5}]
