"""`tunewise eval` on a tiny run: before/after report, forgetting, blind sheet round trip."""

import csv
import json

import pytest

from conftest import run_cli, train_demo_run
from tunewise.errors import DataError
from tunewise.evaluate.blind import score_blind, write_blind_sheet


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dirs, tw_home):
    return train_demo_run(tmp_path_factory.mktemp("evalrun"), tw_home, train={"max_steps": 6},
                          eval={"max_new_tokens": 8, "max_samples": 6})


def test_eval_writes_report_and_predictions(tiny_run, tmp_path):
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"instruction": "Who are you?", "output": "A demo."}\n' * 2)
    code, out, err = run_cli("eval", str(tiny_run), "--data", str(extra), "--blind-sheet")
    assert code == 0, err[-2000:]
    rep = json.loads((tiny_run / "eval" / "report.json").read_text())
    header = rep["table"]["header"]
    assert header[:3] == ["metric", "val before", "val after"] and "extra after" in header
    for label in ("before", "after"):
        s = rep[label]["sets"]["val"]
        assert s["count"] == 6 and s["loss"] > 0 and s["perplexity"] > 1
        assert 0 <= s["no_stop_rate"] <= 1 and "rougeL" in s and "bleu4" in s
        assert rep[label]["general_text"]["perplexity"] > 1
    assert "warning" in rep["forgetting"]
    assert (tiny_run / "eval" / "predictions_after_val.jsonl").exists()
    assert (tiny_run / "eval" / "blind_sheet.csv").exists() and (tiny_run / "eval" / "blind_key.json").exists()
    assert "no_stop_rate" in out


def test_blind_round_trip(tmp_path):
    items = [{"id": i, "prompt": f"q{i}", "answer_base": f"base {i}", "answer_tuned": f"tuned {i}"} for i in range(10)]
    paths = write_blind_sheet(items, tmp_path, seed=3)
    again = write_blind_sheet(items, tmp_path / "again", seed=3)
    assert open(paths["csv"], encoding="utf-8-sig").read() == open(again["csv"], encoding="utf-8-sig").read()
    key = json.loads(open(paths["key"]).read())["tuned_is"]
    assert len(set(key.values())) == 2  # order differs across prompts
    rows = list(csv.DictReader(open(paths["csv"], encoding="utf-8-sig")))
    for r in rows[:9]:  # a reviewer who always likes the tuned answer; one row left blank
        tuned = "A" if r["answer_A"].startswith("tuned") else "B"
        other = "B" if tuned == "A" else "A"
        for c in ("accuracy", "completeness", "logic", "fluency"):
            r[f"{c}_{tuned}"], r[f"{c}_{other}"] = "5", "2"
    with open(tmp_path / "filled.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = score_blind(tmp_path / "filled.csv", paths["key"])
    assert res["wins"] == 9 and res["losses"] == 0 and res["blank_rows"] == 1
    assert res["means"]["tuned"]["accuracy"] == 5 and res["means"]["base"]["fluency"] == 2
    assert res["sign_test_p"] == pytest.approx(2 / 2**9)
    rows[0]["accuracy_A"] = "7"
    with open(tmp_path / "bad.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DataError) as e:
        score_blind(tmp_path / "bad.csv", paths["key"])
    assert "bad.csv:2" in str(e.value) and "accuracy_A" in str(e.value)
