"""Lint runs before training: warnings by default, a refusal with --strict-lint."""

from conftest import tiny_config, write_config
from tunewise.cli import main


def test_train_prints_lint_warnings_and_strict_lint_refuses(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={"max_steps": 2, "warmup_steps": 1,
                                                                                      "warmup_ratio": 0.2}))
    assert main(["train", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "warning [warmup-both] train.warmup_steps" in err
    assert main(["train", str(cfg), "--set", "run.name=strict", "--strict-lint"]) == 2
    err = capsys.readouterr().err
    assert "strict mode: warmup-both" in err and "Traceback" not in err
    run = tmp_path / "runs" / "strict"
    assert not (run / "adapter").exists() and not (run / "checkpoints").exists()


def test_board_log_does_not_count_as_a_previous_run(tmp_path, tiny_model_dirs, demo_jsonl):
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={"max_steps": 1}))
    run = tmp_path / "runs" / "t"
    run.mkdir(parents=True)
    (run / "ui_train.log").write_text("started by the board\n")
    assert main(["train", str(cfg)]) == 0
    assert (run / "adapter").exists() and (run / "ui_train.log").read_text() == "started by the board\n"
    assert main(["train", str(cfg), "--overwrite"]) == 0  # overwriting keeps the board's log too
    assert (run / "ui_train.log").exists()
