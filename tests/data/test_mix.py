"""Multi-task mixing: weights realise the requested ratios exactly (up to rounding) and deterministically."""

import json

import pytest

from conftest import write_config
from tunewise.config import load_config
from tunewise.data.prepare import prepare
from tunewise.errors import DataError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, datasets, seed=0, **data):
    return load_config(write_config(tmp_path / "c.yaml", {
        "model": {"name_or_path": "tiny-llama"}, "train": {"seed": seed},
        "data": {"datasets": datasets, "val_size": 0, **data}}))


def test_weights_realise_requested_shares(tmp_path):
    a = _jsonl(tmp_path / "qa.jsonl", [{"instruction": f"question number {i}", "output": f"answer {i}"} for i in range(40)])
    b = _jsonl(tmp_path / "sum.jsonl", [{"instruction": f"summarise text {i}", "output": f"summary {i}"} for i in range(40)])
    c = _jsonl(tmp_path / "qa2.jsonl", [{"instruction": f"翻译第{i}句", "output": f"译文{i}"} for i in range(10)])
    ds = [{"path": str(a), "weight": 3.0, "system": "[task: qa]"}, {"path": str(b), "weight": 0.5},
          {"path": str(c), "weight": 0.25}]
    p = prepare(_cfg(tmp_path, ds, clean={"dedup_near": False}), None)
    per = p.stats["datasets"]
    assert {k: v["train"] for k, v in per.items()} == {"qa": 120, "sum": 20, "qa2": 2}  # round(10 * 0.25) = 2
    for v in per.values():
        assert abs(v["share"] - v["requested_share"]) < 0.01
    assert per["qa"]["share"] == round(120 / 142, 4)
    assert all(r["messages"][0]["content"] == "[task: qa]" for r in p.train if r["source"] == "qa")
    assert all(r["messages"][0]["role"] == "user" for r in p.train if r["source"] != "qa")
    # each weighted-down dataset is a sample without repeats; weight 3 is exactly three copies of each record
    assert len({r["messages"][-1]["content"] for r in p.train if r["source"] == "sum"}) == 20
    qa_counts = {}
    for r in p.train:
        if r["source"] == "qa":
            qa_counts[r["messages"][-1]["content"]] = qa_counts.get(r["messages"][-1]["content"], 0) + 1
    assert set(qa_counts.values()) == {3}


def test_mix_is_deterministic_under_seed(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"instruction": f"alpha {i}", "output": f"x{i}"} for i in range(30)])
    b = _jsonl(tmp_path / "b.jsonl", [{"instruction": f"beta {i}", "output": f"y{i}"} for i in range(30)])
    ds = [{"path": str(a), "weight": 1.5}, {"path": str(b), "weight": 0.3}]
    order = lambda p: [r["messages"][-1]["content"] for r in p.train]  # noqa: E731
    one, two = (prepare(_cfg(tmp_path, ds, seed=7, val_size=0.2, clean={"dedup_near": False}), None) for _ in range(2))
    other = prepare(_cfg(tmp_path, ds, seed=8, val_size=0.2, clean={"dedup_near": False}), None)
    assert order(one) == order(two) and [r["where"] for r in one.val] == [r["where"] for r in two.val]
    assert order(one) != order(other)
    for p in (one, two, other):
        per = p.stats["datasets"]
        n_a, n_b = per["a"]["train_before_weight"], per["b"]["train_before_weight"]
        assert n_a + per["a"]["val"] <= 30 and n_a >= 30 - round(60 * 0.2)
        assert per["a"]["train"] == n_a + round(n_a * 0.5) and per["b"]["train"] == round(n_b * 0.3)


def test_same_file_name_twice_gets_two_report_rows(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    a = _jsonl(tmp_path / "x" / "data.jsonl", [{"instruction": f"first {i}", "output": "a"} for i in range(5)])
    b = _jsonl(tmp_path / "y" / "data.jsonl", [{"instruction": f"second {i}", "output": "b"} for i in range(5)])
    p = prepare(_cfg(tmp_path, [{"path": str(a), "weight": 2.0}, str(b)], clean={"dedup_near": False}), None)
    assert {k: v["train"] for k, v in p.stats["datasets"].items()} == {"data": 10, "data#2": 5}


def test_empty_after_cleaning_still_writes_dropped(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"instruction": "q", "output": "As an AI language model, I cannot."}])
    with pytest.raises(DataError, match="empty after reading and cleaning") as e:
        prepare(_cfg(tmp_path, [str(a)]), tmp_path / "run")
    dropped = (tmp_path / "run" / "data" / "dropped.jsonl").read_text(encoding="utf-8")
    assert "ai_phrases" in dropped and "dropped.jsonl" in e.value.fix
