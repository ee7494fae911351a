"""Dataset formats: alpaca, sharegpt, OpenAI messages, text, LLaMA-Factory dataset_info.json."""

import json

import pytest

from conftest import write_config
from tunewise.config import load_config
from tunewise.data.prepare import prepare
from tunewise.errors import DataError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, datasets, **data):
    return load_config(write_config(tmp_path / "c.yaml", {
        "model": {"name_or_path": "tiny-llama"}, "data": {"datasets": datasets, "val_size": 0, **data}}))


def test_alpaca_with_system_and_history(tmp_path):
    p = _jsonl(tmp_path / "a.jsonl", [{"instruction": "Translate", "input": "cat", "output": "猫", "system": "Be terse.",
                                       "history": [["hi", "hello"]]}])
    rec = prepare(_cfg(tmp_path, [str(p)], clean={"dedup_near": False}), None, clean=False).train[0]
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert rec["messages"][3]["content"] == "Translate\ncat" and rec["messages"][4]["content"] == "猫"


def test_sharegpt_custom_tags_and_messages(tmp_path):
    sg = _jsonl(tmp_path / "s.json", [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    custom = _jsonl(tmp_path / "c.jsonl", [{"turns": [{"speaker": "asker", "text": "q2"}, {"speaker": "bot", "text": "a2"}]}])
    oa = _jsonl(tmp_path / "o.jsonl", [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q3"},
                                                     {"role": "assistant", "content": "a3"}]}])
    cfg = _cfg(tmp_path, [str(sg), {"path": str(custom), "format": "sharegpt", "columns": {"messages": "turns"},
                                    "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "asker", "assistant_tag": "bot"}},
                          str(oa)], shuffle=False)
    recs = prepare(cfg, None, clean=False).train
    got = {r["messages"][-1]["content"]: r["messages"][-2]["content"] for r in recs}
    assert got == {"a": "q", "a2": "q2", "a3": "q3"}


def test_text_format_for_pretraining(tmp_path):
    txt = tmp_path / "corpus.txt"
    txt.write_text("First paragraph.\nstill first.\n\nSecond paragraph.\n", encoding="utf-8")
    recs = prepare(_cfg(tmp_path, [str(txt)], shuffle=False), None, clean=False).train
    assert [r["text"] for r in recs] == ["First paragraph.\nstill first.", "Second paragraph."]


def test_llamafactory_dataset_info_works_unchanged(tmp_path):
    _jsonl(tmp_path / "my_alpaca.json", [{"q": "1+1?", "a": "2"}, {"q": "2+2?", "a": "4"}])
    _jsonl(tmp_path / "my_sg.json", [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
                                      "system": "sys"}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "alp": {"file_name": "my_alpaca.json", "columns": {"prompt": "q", "response": "a"}},
        "sg": {"file_name": "my_sg.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}},
    }))
    cfg = _cfg(tmp_path, ["alp", "sg"], dataset_info=str(tmp_path / "dataset_info.json"), shuffle=False)
    recs = prepare(cfg, None, clean=False).train
    assert {r["source"] for r in recs} == {"alp", "sg"}
    sg = next(r for r in recs if r["source"] == "sg")
    assert sg["messages"][0] == {"role": "system", "content": "sys"}
    with pytest.raises(DataError, match="did you mean: alp"):
        prepare(_cfg(tmp_path, ["alpp"], dataset_info=str(tmp_path / "dataset_info.json")), None, clean=False)


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        prepare(_cfg(tmp_path, [str(p)]), None, clean=False)
    assert f"{p}:2: malformed JSON" in str(e.value)
    lenient = prepare(_cfg(tmp_path, [str(p)], strict=False), None, clean=False)
    assert len(lenient.train) == 1 and lenient.dropped[0]["where"] == f"{p}:2"


def test_missing_field_names_record_and_field(tmp_path):
    p = _jsonl(tmp_path / "m.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    with pytest.raises(DataError) as e:
        prepare(_cfg(tmp_path, [str(p)]), None, clean=False)
    assert f"{p}:2" in str(e.value) and "'output'" in str(e.value)


def test_bad_roles_are_explained(tmp_path):
    p = _jsonl(tmp_path / "r.jsonl", [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}])
    with pytest.raises(DataError, match="alternate"):
        prepare(_cfg(tmp_path, [str(p)]), None, clean=False)


def test_empty_dataset_says_why(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        prepare(_cfg(tmp_path, [str(p)]), None, clean=False)


def test_split_is_deterministic_and_mixing_weights(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [{"instruction": f"a{i}", "output": "x"} for i in range(40)])
    b = _jsonl(tmp_path / "b.jsonl", [{"instruction": f"b{i}", "output": "y"} for i in range(40)])
    ds = [{"path": str(a), "weight": 2.0}, {"path": str(b), "weight": 0.5}]
    p1 = prepare(_cfg(tmp_path, ds, val_size=0.1), None, clean=False)
    p2 = prepare(_cfg(tmp_path, ds, val_size=0.1), None, clean=False)
    assert [r["messages"][1]["content"] for r in p1.val] == [r["messages"][1]["content"] for r in p2.val]
    assert len(p1.val) == 8
    mix = p1.stats["mix"]
    assert mix["a"]["records"] == sum(1 for r in p1.train if r["source"] == "a")
    # 72 records split 90/10 before mixing: ~2x of a's share and ~0.5x of b's share
    assert mix["a"]["records"] > 3 * mix["b"]["records"] and mix["a"]["weight"] == 2.0
