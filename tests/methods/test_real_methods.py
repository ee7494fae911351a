"""Smoke test on the real Gemma 3 270M: qlora, full and freeze each train two steps and save their result."""

from __future__ import annotations

import json
import math

import pytest

from conftest import write_config
from tunewise.cli import main

RECORDS = [{"instruction": f"What is {a} plus {b}?", "output": f"{a} plus {b} is {a + b}."} for a, b in
           [(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (4, 4)]]


@pytest.mark.real_model
@pytest.mark.parametrize("method,result", [
    ({"name": "qlora", "lora_r": 4, "lora_alpha": 8}, "adapter/adapter_model.safetensors"),
    ({"name": "full"}, "model/model.safetensors"),
    ({"name": "freeze", "freeze_trainable_layers": 2}, "model/model.safetensors"),
])
def test_gemma3_270m_trains_and_saves(tmp_path, real_home, method, result):
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    cfg = {
        "run": {"root": str(tmp_path / "runs"), "name": "r"}, "model": {"name_or_path": "gemma3-270m"},
        "data": {"datasets": [str(data)], "val_size": 0, "max_length": 64},
        "method": method,
        "train": {"max_steps": 2, "per_device_batch_size": 3, "gradient_accumulation_steps": 1,
                  "logging_steps": 1, "save_steps": 1000, "learning_rate": 1e-4 if method["name"] == "qlora" else 1e-5},
    }
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    run = tmp_path / "runs" / "r"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["global_step"] == 2 and math.isfinite(summary["train_loss"])
    assert (run / result).exists()
    trainable, total = summary["trainable_parameters"], summary["total_parameters"]
    if method["name"] == "full":
        assert trainable == total
    elif method["name"] == "freeze":  # the top 2 of 18 layers (no embeddings)
        assert 0 < trainable < total * 0.1
    else:
        assert 0 < trainable < total * 0.01
