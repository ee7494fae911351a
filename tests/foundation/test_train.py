"""`tunewise train` end to end on tiny models: the run directory contract, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, read_metrics, run_cli, tiny_config, write_config
from tunewise.cli import main


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-qwen2", "tiny-gemma3"])
def test_train_writes_the_run_directory(tmp_path, tiny_model_dirs, demo_jsonl, model, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, model, train={"num_epochs": 2}))
    assert main(["train", str(cfg), "--set", "run.name=r"]) == 0
    run = tmp_path / "runs" / "r"
    assert capsys.readouterr().out.strip().endswith(str(run))
    for f in ["config.yaml", "template.json", "data/train.jsonl", "data/val.jsonl", "data/stats.json",
              "data/dropped.jsonl", "metrics.jsonl", "adapter/adapter_config.json",
              "adapter/adapter_model.safetensors", "train_summary.json", "stamp.json"]:
        assert (run / f).exists(), f
    assert list((run / "checkpoints").glob("checkpoint-*"))
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))
    rows = read_metrics(run)
    train_losses = [r["loss"] for r in rows if "loss" in r]
    val_losses = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(val_losses) >= 2 and train_losses[-1] < train_losses[0]
    assert all({"step", "epoch"} <= set(r) for r in rows)
    assert any("tokens_per_s" in r and "lr" in r and "grad_norm" in r for r in rows)
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats["tokens"]["train"]["supervised_tokens"] > 0 and stats["num_val"] > 0
    tpl = json.loads((run / "template.json").read_text())
    assert tpl["stop_token_ids"] and tpl["chat_template"]
    # the resolved config is complete and loads back as is
    from tunewise.runs import read_run_config

    rc = read_run_config(run)
    assert rc.train.learning_rate == 2e-3 and rc.model.name_or_path == model


def test_examples_tiny_yaml_trains_end_to_end(tmp_path, tiny_model_dirs):
    code, out, err = run_cli("train", str(REPO / "examples" / "tiny.yaml"), "--set", f"run.root={tmp_path}")
    assert code == 0, err
    assert (tmp_path / "tiny" / "adapter" / "adapter_model.safetensors").exists()
    assert out.strip() == str(tmp_path / "tiny")


def test_existing_run_needs_resume_or_overwrite(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={"max_steps": 2}))
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'runs' / 't'}: run directory already exists and holds a trained run" in err, err
    assert "--resume" in err and "--overwrite" in err and "Traceback" not in err
    assert main(["train", str(cfg), "--overwrite"]) == 0


def test_failed_run_leaves_no_adapter(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    bad = tmp_path / "bad.jsonl"
    good = demo_jsonl.read_text(encoding="utf-8")
    bad.write_text(good + '{"messages": [}\n', encoding="utf-8")
    bad_line = good.count("\n") + 1
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, bad))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{bad_line}" in err and "Traceback" not in err
    run = tmp_path / "runs" / "t"
    assert (run / "config.yaml").exists() and not (run / "adapter").exists()


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(
        tmp_path, demo_jsonl, method={"lora_alpha": 4096},
        train={"learning_rate": 1e20, "max_grad_norm": 0, "num_epochs": 3, "eval_steps": 2, "logging_steps": 1,
               "early_stopping": False}))
    assert main(["train", str(cfg)]) == 2  # divergence is an error
    run = tmp_path / "runs" / "t"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["diverged_at_step"] is not None
    err = capsys.readouterr().err
    assert f"{run}: training diverged: the loss became NaN/inf at step {summary['diverged_at_step']}" in err, err
    assert "lower train.learning_rate" in err and "Traceback" not in err
    assert not (run / "model").exists()
    rows = read_metrics(run)
    assert any(r.get("event") == "nan_stop" for r in rows)
    from tunewise.runs import newest_checkpoint

    ck = newest_checkpoint(run)
    if ck is not None:  # every kept checkpoint's weights gave a finite loss (checkpoint-(N-1) computed step N's NaN)
        assert int(ck.name.split("-")[1]) < summary["diverged_at_step"] - 1
        assert summary["last_good_checkpoint"] == f"checkpoints/{ck.name}"


def _final_val(run):
    return json.loads((run / "train_summary.json").read_text())


def test_resume_after_sigkill_matches_uninterrupted(tmp_path, tiny_model_dirs, demo_jsonl):
    base = tiny_config(tmp_path, demo_jsonl, train={"num_epochs": 3, "eval_steps": 4, "save_steps": 4,
                                                    "early_stopping": False, "save_total_limit": 10})
    full = write_config(tmp_path / "full.yaml", {**base, "run": {"root": str(tmp_path / "runs"), "name": "full"}})
    assert main(["train", str(full)]) == 0
    ref = _final_val(tmp_path / "runs" / "full")

    killed = write_config(tmp_path / "killed.yaml", {**base, "run": {"root": str(tmp_path / "runs"), "name": "killed"}})
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "tunewise", "train", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck_dir = tmp_path / "runs" / "killed" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in ck_dir.glob("checkpoint-*") if (p / "trainer_state.json").exists()] if ck_dir.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "runs" / "killed" / "adapter").exists()
    assert main(["train", str(killed), "--resume"]) == 0
    res = _final_val(tmp_path / "runs" / "killed")
    assert res["global_step"] == ref["global_step"]
    assert abs(res["final_val_loss"] - ref["final_val_loss"]) / ref["final_val_loss"] < 0.01


def test_data_preview_marks_supervised_span(tmp_path, tiny_model_dirs, demo_jsonl):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl))
    code, out, err = run_cli("data", "preview", str(cfg), "-n", "2", "--no-color")
    assert code == 0, err
    assert out.count("[[") >= 2 and "<|eot_id|>]]" in out and "template: llama3" in out


def test_methods_lists_lora_in_both_languages():
    code, out, _ = run_cli("methods")
    assert code == 0 and "lora" in out and "low-rank" in out
    code, out, _ = run_cli("methods", "--lang", "zh")
    assert "低秩" in out


def test_separate_validation_dataset_and_modules_to_save(tmp_path, tiny_model_dirs, demo_jsonl):
    val = tmp_path / "val.jsonl"
    val.write_text("".join(f'{{"instruction": "Question {i}: who are you?", "output": "Test answer {i}."}}\n' for i in "abc"),
                   encoding="utf-8")
    cfg = tiny_config(tmp_path, demo_jsonl, train={"max_steps": 2},
                      method={"modules_to_save": ["embed_tokens", "lm_head"]})
    cfg["data"]["val_datasets"] = [str(val)]
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    run = tmp_path / "runs" / "t"
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats["num_val"] == 3
    assert stats["num_train"] == len(demo_jsonl.read_text().splitlines())  # nothing held out of training
    from safetensors.torch import load_file

    keys = load_file(run / "adapter" / "adapter_model.safetensors").keys()
    assert any("embed_tokens" in k for k in keys) and any("lm_head" in k for k in keys)
