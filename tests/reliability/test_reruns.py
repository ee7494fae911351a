"""Re-runs behave: the README's order works, a failed or data-only run folder is reused, trained data is not
replaced without --overwrite, and --resume refuses what the checkpoint cannot honour (config or data)."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import tiny_config, write_config
from tunewise.cli import main
from tunewise.stamp import fingerprint

pytestmark = pytest.mark.xdist_group("reliability")

TRAIN = {"max_steps": 6, "eval_steps": 3, "early_stopping": False, "num_threads": 1}


def _files(folder):
    return {p.name: fingerprint(p) for p in sorted(folder.iterdir()) if p.is_file()}


def test_prepare_train_and_what_a_trained_run_refuses(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    data = tmp_path / "data.jsonl"
    data.write_text(demo_jsonl.read_text(encoding="utf-8"), encoding="utf-8")
    cfg = str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data, train=TRAIN)))
    run = tmp_path / "runs" / "t"

    # the README's order: data prepare, then train, same config
    assert main(["data", "prepare", cfg]) == 0
    assert main(["train", cfg]) == 0
    assert "reusing" in capsys.readouterr().err
    trained_data, config = _files(run / "data"), fingerprint(run / "config.yaml")

    # a trained run's data is not replaced without --overwrite
    assert main(["data", "prepare", cfg]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "--overwrite" in err and "Traceback" not in err
    assert _files(run / "data") == trained_data

    # --resume with settings the checkpoint cannot honour: refused with every difference, config.yaml untouched
    assert main(["train", cfg, "--resume", "--set", "train.learning_rate=1e-3", "--set", "train.seed=7",
                 "--set", "method.lora_r=4"]) == 2
    err = capsys.readouterr().err
    for diff in ["train.learning_rate: 0.002 -> 0.001", "train.seed: 42 -> 7", "method.lora_r: 8 -> 4"]:
        assert diff in err, err
    assert fingerprint(run / "config.yaml") == config

    # ... settings that may change on resume do (and config.yaml says what the resumed run used)
    assert main(["train", cfg, "--resume", "--set", "train.logging_steps=3", "--set", "eval.max_samples=5"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["logging_steps"] == 3 and saved["eval"]["max_samples"] == 5
    capsys.readouterr()

    # ... and changed data is refused too, leaving the run's data as it was
    data.write_text("".join(data.read_text(encoding="utf-8").splitlines(keepends=True)[:-5]), encoding="utf-8")
    assert main(["train", cfg, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "training data changed" in err and "train.jsonl" in err
    assert _files(run / "data") == trained_data

    # --overwrite starts the run over with the new data
    assert main(["data", "prepare", cfg, "--overwrite"]) == 0
    assert not (run / "adapter").exists() and not (run / "checkpoints").exists()
    assert _files(run / "data") != trained_data
    assert main(["train", cfg]) == 0


def test_a_failed_run_does_not_block_the_next(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    data = tmp_path / "data.jsonl"
    good = demo_jsonl.read_text(encoding="utf-8")
    data.write_text(good + '{"messages": [\n', encoding="utf-8")
    cfg = str(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, data, train=TRAIN)))
    assert main(["train", cfg]) == 2
    bad_line = good.count("\n") + 1
    assert f"{data}:{bad_line}" in capsys.readouterr().err  # refused for its unfinished last line
    assert (tmp_path / "runs" / "t" / "config.yaml").exists()
    data.write_text(good, encoding="utf-8")
    capsys.readouterr()
    assert main(["train", cfg]) == 0
    assert "reusing" in capsys.readouterr().err
    assert json.loads((tmp_path / "runs" / "t" / "train_summary.json").read_text())["global_step"] == 6


def test_resumable_keys_are_documented():
    """Every key a resumed run may change is named in the README's reliability section (both languages)."""
    from pathlib import Path

    from tunewise.train.rundir import RESUMABLE

    repo = Path(__file__).resolve().parents[2]
    for readme in ("README.md", "README_zh.md"):
        text = repo.joinpath(readme).read_text(encoding="utf-8")
        for key in RESUMABLE:
            assert f"`{key.rstrip('.')}" in text, (readme, key)
