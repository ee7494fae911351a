"""Divergence is an error, with a diagnosis: NaN/inf stops exit non-zero and leave the last good checkpoint for
eval/chat/export; a loss flat at ln(vocabulary) with zero gradient is a blown-up update, not underfitting;
lint flags learning rates far outside the method's range."""

from __future__ import annotations

import json
import math

import pytest

from conftest import tiny_config, write_config
from tunewise.cli import main

pytestmark = pytest.mark.xdist_group("reliability")


def _flat_rows(loss: float, n: int = 8) -> list[dict]:
    rows = [{"step": 1, "loss": loss + 0.02, "grad_norm": 0.6}, {"step": 2, "loss": loss - 0.01, "grad_norm": 0.6}]
    rows += [{"step": s, "loss": loss, "grad_norm": 0.0} for s in range(3, n)]
    rows += [{"step": 5, "val_loss": loss}, {"step": n, "val_loss": loss}]
    return rows


def test_flat_loss_at_ln_vocab_with_zero_gradient_is_a_blown_up_update():
    from tunewise.curves.diagnose import diagnose, rule_blown_up

    d = diagnose(_flat_rows(math.log(1000)), vocab_size=1000)
    assert d.verdict == "diverged" and d.evidence["blown_up_update"] and d.evidence["ln_vocab"] == pytest.approx(6.9078, 1e-4)
    assert not any("Raise train.learning_rate" in a for a in d.advice["en"])
    assert diagnose(_flat_rows(math.log(1000))).verdict == "diverged"  # vocabulary unknown: zero gradient + flat
    assert rule_blown_up(_flat_rows(3.0), vocab_size=1000) is None  # flat, but not at ln(vocabulary)
    moving = [{"step": s, "loss": 3.0 - 0.1 * s, "grad_norm": 0.5} for s in range(1, 9)]
    assert rule_blown_up(moving, vocab_size=1000) is None
    assert diagnose(moving).verdict != "diverged"


def test_lint_flags_learning_rates_far_outside_the_method_range():
    from tunewise.advise.lint import lint
    from tunewise.config import load_config

    def codes(method, lr):
        cfg = load_config(None, [f"method.name={method}", f"train.learning_rate={lr}"])
        return {f.code: f for f in lint(cfg)}

    found = codes("lora", 1e6)["lr-far-out-of-range"]
    assert found.severity == "error" and "0.0002-0.001" in found.fix_en
    assert "lr-far-out-of-range" not in codes("lora", 2e-4)
    assert "lr-far-out-of-range" not in codes("lora", 5e-3)   # above the range, but not far
    assert "lr-far-out-of-range" in codes("prompt", 5.0)
    assert "lr-far-out-of-range" in codes("full", 1e-9)
    full = codes("full", 1e-2)  # the narrower full-high-lr rule says it; no second finding
    assert "full-high-lr" in full and "lr-far-out-of-range" not in full


def test_nan_stop_is_an_error_and_eval_chat_export_use_the_last_good_checkpoint(tmp_path, tiny_model_dirs, demo_jsonl,
                                                                                 monkeypatch, capsys):
    """The loss turns NaN at step 5 (weights after 4 updates): checkpoint-3 is the last good one."""
    import torch

    from tunewise.train.trainer import TunewiseTrainer

    real = TunewiseTrainer.compute_loss

    def poisoned(self, model, inputs, *a, **kw):
        out = real(self, model, inputs, *a, **kw)
        if model.training and self.state.global_step >= 4:
            return out * torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(TunewiseTrainer, "compute_loss", poisoned)
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={
        "max_steps": 9, "eval_steps": 3, "logging_steps": 1, "early_stopping": False, "num_threads": 1}))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    run = tmp_path / "runs" / "t"
    assert "diverged" in err and "step 5" in err and "checkpoint-3" in err and "Traceback" not in err
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["diverged_at_step"] == 5 and summary["last_good_checkpoint"] == "checkpoints/checkpoint-3"
    assert not (run / "adapter").exists()
    assert json.loads((run / "diagnosis.json").read_text())["verdict"] == "diverged"
    monkeypatch.setattr(TunewiseTrainer, "compute_loss", real)

    assert main(["chat", str(run), "--prompt", "hi", "--max-new-tokens", "4", "--temperature", "0"]) == 0
    assert "last good checkpoint" in capsys.readouterr().err
    assert main(["export", str(run)]) == 0
    merged = json.loads((run / "export" / "merged" / "tunewise_export.json").read_text())
    assert merged["method"] == "lora"


def test_a_blown_up_learning_rate_fails_with_its_diagnosis(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    """The reported case: LoRA at lr 1e6 flattens the loss at ln(1000) with zero gradient norm."""
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={
        "learning_rate": 1e6, "max_steps": 12, "eval_steps": 4, "logging_steps": 1, "early_stopping": False,
        "num_threads": 1}))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "ln(vocabulary 1000)" in err and "zero gradient" in err and "Traceback" not in err
    d = json.loads((tmp_path / "runs" / "t" / "diagnosis.json").read_text())
    assert d["verdict"] == "diverged" and d["evidence"]["blown_up_update"]
    assert main(["lint", str(cfg)]) == 0
    assert "lr-far-out-of-range" in capsys.readouterr().out
