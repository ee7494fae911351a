"""The board's logic without a browser: config round trip, explanations, preview, live curves, jobs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunewise.config import dump_config, load_config
from tunewise.ui import configure, jobs, knowledge, live
from tunewise.ui.cli import exposure_warning


def _form(tmp_path: Path, data: Path, name: str = "b", **over) -> dict:
    values = {k: configure.form_default(k) for k, _ in configure.FORM_PARAMS}
    values.update({"train.max_steps": 12, "train.learning_rate": 2e-3, "train.logging_steps": 2, "train.eval_steps": 3,
                   "data.max_length": 128, "train.per_device_batch_size": 8, "train.gradient_accumulation_steps": 1})
    values.update(over)
    return configure.form_to_dict(name=name, root=str(tmp_path / "runs"), model="tiny-llama", data_path=str(data),
                                  values=values)


def test_saved_yaml_is_what_train_loads(tmp_path, demo_jsonl):
    cfg = configure.build_config(_form(tmp_path, demo_jsonl), "data.clean.dedup_near=false\n# comment\n")
    path = configure.save_config(cfg, tmp_path / "runs")
    again = load_config(path)
    assert again == cfg
    assert dump_config(again) == path.read_text(encoding="utf-8")
    assert cfg.train.max_steps == 12 and cfg.train.learning_rate == 2e-3 and cfg.data.clean.dedup_near is False
    assert cfg.run.root == str((tmp_path / "runs").resolve())


def test_empty_boxes_mean_defaults(tmp_path, demo_jsonl):
    cfg = configure.build_config(_form(tmp_path, demo_jsonl, **{"train.learning_rate": None, "train.max_steps": 0,
                                                                "train.eval_steps": 0}))
    assert cfg.train.max_steps is None and cfg.train.eval_steps is None
    assert cfg.train.learning_rate == 2e-4  # the LoRA default load_config derives


def test_bad_value_is_a_readable_error(tmp_path, demo_jsonl):
    from tunewise.errors import ConfigError

    with pytest.raises(ConfigError, match="train.lerning_rate.*did you mean 'train.learning_rate'"):
        configure.build_config(_form(tmp_path, demo_jsonl), "train.lerning_rate=1e-4")


def test_every_parameter_has_an_explanation():
    entries = knowledge.schema_entries()
    assert "train.learning_rate" in entries and "data.clean.dedup_near" in entries
    assert all(e["description"] for e in entries.values()), [k for k, e in entries.items() if not e["description"]]
    assert entries["train.lr_scheduler"]["allowed"][0] == "linear"
    explained, source = knowledge.explanations("en")
    assert source in ("advisor", "schema")
    for key, _ in configure.FORM_PARAMS:
        assert knowledge.describe(explained[key], "en")


def test_recommendation_shapes():
    advice = {"recommendations": {"train.learning_rate": 1e-4}, "reasons": {"train.learning_rate": {"en": "LoRA", "zh": "低秩"}},
              "lint": [{"code": "W1", "message": "m", "fix": "f", "severity": "warning"}, "junk"]}
    assert knowledge.recommendation(advice, "train.learning_rate", "zh") == (1e-4, "低秩")
    assert knowledge.recommendation(advice, "train.seed") is None
    assert knowledge.lint_items(advice) == [advice["lint"][0]]
    assert knowledge.recommendation(None, "train.seed") is None


def test_exposure_warning():
    assert exposure_warning("127.0.0.1") is None
    assert "0.0.0.0" in exposure_warning("0.0.0.0")


def test_preview_marks_the_supervised_span(tmp_path, demo_jsonl, tiny_model_dirs):
    cfg = configure.build_config(_form(tmp_path, demo_jsonl), "data.clean.dedup_near=false")
    p = configure.preview(cfg, n=2)
    assert len(p["examples"]) == 2 and p["lengths"] and "train" in p["summary"]
    for ex in p["examples"]:
        sup = "".join(t for t, s in ex["segments"] if s)
        ctx = "".join(t for t, s in ex["segments"] if not s)
        assert sup and ctx and "<|eot_id|>" in sup  # the answer and its end-of-turn token are trained
        assert ex["supervised"] < ex["tokens"]
    html = configure.preview_html(p, "en")
    assert html.count("<mark class='tw-sup'>") >= 3


def test_live_frames_and_verdict(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    rows = [{"step": 1, "loss": 3.0, "lr": 1e-4, "tokens_per_s": 100.0}, {"step": 2, "loss": 2.5, "val_loss": 2.7},
            {"step": 3, "loss": float("nan")}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 4, \"lo", encoding="utf-8")
    got = live.read_rows(run)
    assert [r["step"] for r in got] == [1, 2, 3]  # the half-written last line is skipped
    f = live.loss_frame(got)
    assert list(f["series"]) == ["train loss", "train loss", "val loss"]
    assert live.latest(got)["loss"] == 2.5 and live.latest(got)["tokens_per_s"] == 100.0
    (run / "diagnosis.json").write_text(json.dumps({"verdict": "underfit", "summary": {"en": "S", "zh": "总"},
                                                    "advice": {"en": ["a"], "zh": ["甲"]}}))
    assert "underfit" in live.verdict_markdown(live.diagnosis(run), "zh") and "甲" in live.verdict_markdown(live.diagnosis(run), "zh")
    assert live.format_eta(75) == "1:15" and live.format_eta(None) == "-"
    (run / "config.yaml").write_text("{}")
    assert live.list_runs(tmp_path) == [str(run)]
    cmp = live.compare_frame([run])
    assert set(cmp["series"]) == {"r val loss"}


def test_plot_value_names_every_series():
    """The loss plot's colours are fixed from its first value: each value must name train and val loss."""
    empty = live.with_all_series(live.loss_frame([]))
    assert list(empty["series"]) == list(live.LOSS_COLORS) and empty["value"].isna().all()
    assert dict(empty.dtypes.astype(str)) == {"step": "int64", "value": "float64", "series": "str"}
    train_only = live.with_all_series(live.loss_frame([{"step": 4, "loss": 2.0}, {"step": 6, "loss": 1.5}]))
    assert set(train_only["series"]) == {"train loss", "val loss"}
    assert train_only["step"].min() == 4  # the blank rows do not stretch the x axis
    assert train_only.dropna()["value"].tolist() == [2.0, 1.5]


def test_the_answers_plot_shows_a_preference_runs_accuracy():
    rows = [{"step": 0, "event": "before_training", "gen_stop_rate": 0.5},
            {"step": 10, "val_loss": 0.6, "gen_stop_rate": 1.0, "eval_rewards/accuracies": 0.75},
            {"step": 12, "event": "final_eval", "eval_rewards/accuracies": 0.9}]
    f = live.quality_frame(rows)
    pref = f[f["series"] == "preference accuracy"]
    assert pref["step"].tolist() == [10] and pref["value"].tolist() == [0.75]  # the final evaluation is not a point
    assert "preference accuracy" in set(live.with_all_series(live.quality_frame([]), live.QUALITY_COLORS)["series"])


def _wait(pred, timeout: float, every: float = 0.5) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(every)
    return pred()


def test_stop_keeps_checkpoints_and_resume_continues(tmp_path, demo_jsonl, tiny_model_dirs):
    from tunewise.runs import newest_checkpoint

    cfg = configure.build_config(_form(tmp_path, demo_jsonl, "s", **{"train.max_steps": 40, "train.eval_steps": 3,
                                                                      "train.early_stopping": False}),
                                 "data.clean.dedup_near=false")
    path = configure.save_config(cfg, tmp_path / "runs")
    run = tmp_path / "runs" / "s"
    job = jobs.start_train(path, run)
    try:
        assert _wait(lambda: newest_checkpoint(run) is not None or not job.running(), 240)
        assert job.running(), job.tail()
        jobs.stop(job)
        assert job.state() == "stopped" and not job.running()
        ck = newest_checkpoint(run)
        assert ck is not None and ck.exists()
        assert "[tunewise] training 40 steps" in (run / "ui_train.log").read_text(encoding="utf-8")
        stopped_at = max(r["step"] for r in live.read_rows(run))
        job2 = jobs.start_train(run / "config.yaml", run, resume=True)
        assert job2.wait(300) == 0, job2.tail()
        assert job2.state() == "finished"
        steps = [r["step"] for r in live.read_rows(run)]
        assert max(steps) == 40 and stopped_at < 40
        assert (run / "adapter").exists() and live.diagnosis(run)["verdict"]
    finally:
        jobs.stop_all()
