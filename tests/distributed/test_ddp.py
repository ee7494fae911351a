"""Two CPU processes (gloo) train like one with the same global batch; only rank 0 writes."""

import json

import pytest

from conftest import read_metrics, run_cli, tiny_config, write_config


@pytest.mark.xdist_group("heavy")
def test_two_process_ddp_matches_single_process(tmp_path, tiny_model_dirs, demo_jsonl):
    common = dict(method={"lora_dropout": 0.0}, train={"max_steps": 6, "logging_steps": 1, "eval_steps": 3,
                                                       "group_by_length": False, "early_stopping": False})
    single = tiny_config(tmp_path, demo_jsonl, **common)
    single["train"].update(per_device_batch_size=8)
    single["run"]["name"] = "single"
    code, out, err = run_cli("train", str(write_config(tmp_path / "s.yaml", single)))
    assert code == 0, err[-2000:]

    ddp = tiny_config(tmp_path, demo_jsonl, **common)
    ddp["train"].update(per_device_batch_size=4)
    ddp["run"]["name"] = "ddp"
    code, out, err = run_cli("train", str(write_config(tmp_path / "d.yaml", ddp)), "--nproc", "2")
    assert code == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == str(tmp_path / "runs" / "ddp")  # rank 0 alone prints and writes

    s_rows, d_rows = read_metrics(tmp_path / "runs" / "single"), read_metrics(tmp_path / "runs" / "ddp")
    s_loss = [r["loss"] for r in s_rows if "loss" in r]
    d_loss = [r["loss"] for r in d_rows if "loss" in r]
    assert len(s_loss) == len(d_loss) == 6
    for a, b in zip(s_loss, d_loss):
        assert abs(a - b) / a < 0.02
    s_val = [r["val_loss"] for r in s_rows if "val_loss" in r]
    d_val = [r["val_loss"] for r in d_rows if "val_loss" in r]
    assert s_val and abs(s_val[-1] - d_val[-1]) / s_val[-1] < 0.02
    # each metrics row written once (rank 0 only)
    assert len(d_rows) == len(s_rows)
    summary = json.loads((tmp_path / "runs" / "ddp" / "train_summary.json").read_text())
    assert summary["global_step"] == 6
    from tunewise.infer.generate import load_run_model

    lm = load_run_model(tmp_path / "runs" / "ddp")
    assert lm.model is not None
