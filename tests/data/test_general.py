"""The built-in general instruction set: shipped, right, bilingual, apart from the forgetting probe, and mixed in by
`data.general: builtin`."""

import json
import re

from conftest import write_config
from tunewise.config import load_config
from conftest import clean_records
from tunewise.data.clean import CleanConfig
from tunewise.data.general import builtin_path, general_records


def _shipped() -> list[dict]:
    return [json.loads(x) for x in builtin_path().read_text(encoding="utf-8").splitlines()]


def test_the_shipped_file_is_the_generators_output():
    assert _shipped() == general_records()  # regenerate with `python -m tunewise.data.general`


def test_bilingual_distinct_and_apart_from_the_forgetting_probe():
    from tunewise.evaluate.forgetting import general_qa_path

    recs = _shipped()
    prompts = [r["messages"][0]["content"] for r in recs]
    assert len(recs) >= 300 and len(set(prompts)) == len(prompts)
    zh = sum(1 for p in prompts if re.search(r"[\u4e00-\u9fff]", p))
    assert 0.4 < zh / len(prompts) < 0.6
    probe = {json.loads(x)["messages"][0]["content"] for x in general_qa_path().read_text(encoding="utf-8").splitlines()}
    assert not probe & set(prompts)
    assert all(r["messages"][0]["role"] == "user" and r["messages"][1]["role"] == "assistant" and r["messages"][1]["content"]
               for r in recs)
    # nothing the cleaning would call AI boilerplate
    assert not [d for d in clean_records(recs, CleanConfig(dedup_near=False, dedup_exact=False)).dropped]


def test_worked_answers_are_right():
    checked = 0
    for r in _shipped():
        q, a = r["messages"][0]["content"], r["messages"][1]["content"]
        m = re.match(r"(-?\d+) ([+\-x×]) (\d+) = (-?\d+)", a)
        if m:
            x, op, y, z = int(m[1]), m[2], int(m[3]), int(m[4])
            assert z == {"+": x + y, "-": x - y, "x": x * y, "×": x * y}[op], a
            checked += 1
        if q.startswith("Sort these numbers"):
            nums = [int(v) for v in q.split(":")[1].split(",")]
            assert [int(v) for v in a.split(",")] == sorted(nums, reverse="largest to" in q)
            checked += 1
        if m := re.match(r"Is (\d+) odd or even", q):
            assert ("even" in a.split(":")[0]) == (int(m[1]) % 2 == 0)
            checked += 1
    assert checked > 100


def test_builtin_resolves_and_is_mixed_in(tmp_path):
    from tunewise.data.prepare import prepare

    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"task question {i}", "output": f"task answer {i}"}) + "\n"
                            for i in range(50)), encoding="utf-8")
    cfg = load_config(write_config(tmp_path / "c.yaml", {
        "model": {"name_or_path": "tiny-llama"},
        "data": {"datasets": [str(data)], "general": "builtin", "general_ratio": 0.2, "val_size": 0}}))
    spec = cfg.data.general[0]
    assert spec.path == str(builtin_path()) and spec.name == "builtin" and spec.format == "messages"
    p = prepare(cfg, None)
    mixed = [r for r in p.train if r["source"].startswith("general:")]
    assert len(mixed) == 10 and {r["source"] for r in mixed} == {"general:builtin"}


def test_forgetting_advice_points_at_the_builtin_set():
    from tunewise.evaluate.forgetting import ADVICE

    assert "data.general: builtin" in ADVICE["en"][0] and "data.general: builtin" in ADVICE["zh"][0]
