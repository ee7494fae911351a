"""The data stage on datatrove's executors (tunewise.data.distributed) writes what `tunewise data prepare` writes."""

from __future__ import annotations

import pytest

from conftest import write_config
from test_prepare_golden import CLEAN, _digest, _sources
from tunewise.config import load_config
from tunewise.errors import DataError


def _config(folder, sources=None, **data):
    csv, jsonl, val = sources or _sources(folder)
    columns = {"prompt": "question", "response": "answer"}
    return load_config(write_config(folder / "c.yaml", {
        "model": {"name_or_path": "tiny-llama"}, "train": {"seed": 11}, "run": {"root": str(folder / "runs"), "name": "g"},
        "data": {"datasets": [{"path": str(csv), "columns": columns}, str(jsonl)], "val_datasets": [str(val)],
                 "max_length": 128, "strict": False, "clean": CLEAN, **data}}))


def test_datatrove_tasks_write_what_data_prepare_writes(tmp_path, tiny_model_dirs):
    """The generated sources of test_prepare_golden (exact and near repeats, bad rows, tool calls, a validation file
    with near copies of training rows), in chunks of 97 records over 3 local tasks: train.jsonl, val.jsonl,
    dropped.jsonl and stats.json (token stats included) are the same bytes as `data prepare`'s."""
    from tunewise.data.commands import prepare_command, prepare_local

    plain, dist = tmp_path / "plain", tmp_path / "dist"
    plain.mkdir()
    dist.mkdir()
    expected = _digest(prepare_command(_config(plain)), plain)
    assert expected["dropped_by_step"]["dedup_exact"] > 100 and expected["dropped_by_step"]["dedup_near"] > 50
    assert expected["dropped_by_step"]["leakage"] > 10 and expected["num_val"] > 10

    cfg = _config(dist)
    data = prepare_local(cfg, dist / "work", tasks=3, workers=2, chunk_size=97)
    assert data == dist / "runs" / "g" / "data"
    assert len(list((dist / "work" / "chunks" / "train").glob("*.bin"))) > 20  # many chunks, spread over the tasks
    assert _digest(data, dist) == expected


def test_a_work_folder_serves_one_preparation(tmp_path):
    """Stage 1's results are refused for another config, and stage 2 says so when stage 1 never ran."""
    from tunewise.data.commands import WriteData
    from tunewise.data.distributed import CleanChunks

    sources = _sources(tmp_path)
    cfg = _config(tmp_path, sources)
    with pytest.raises(DataError, match="stage 1"):
        WriteData(cfg, tmp_path / "work")()
    for rank in range(2):
        CleanChunks(cfg, tmp_path / "work", chunk_size=500)(None, rank, 2)
    other = _config(tmp_path, sources, max_length=64)
    with pytest.raises(DataError, match=r"another preparation \(changed: config\)"):
        WriteData(other, tmp_path / "work", chunk_size=500)()
    with pytest.raises(DataError, match=r"\(changed: chunk_size\)"):
        CleanChunks(cfg, tmp_path / "work", chunk_size=400)(None, 0, 2)


def test_without_datatrove_the_extra_to_install_is_named(tmp_path, monkeypatch):
    from tunewise import extras
    from tunewise.data.commands import prepare_local
    from tunewise.errors import MissingExtra

    monkeypatch.setitem(extras.EXTRAS, "distributed", (("no_such_module_tunewise_test",), extras.EXTRAS["distributed"][1]))
    cfg = _config(tmp_path)
    with pytest.raises(MissingExtra) as e:
        prepare_local(cfg, tmp_path / "work", tasks=2)
    assert 'pip install "tunewise[distributed]"' in e.value.render() and not (tmp_path / "work").exists()


def test_a_strict_error_found_by_a_task_is_raised_by_stage_2_in_input_order(tmp_path, tiny_model_dirs):
    """As in one process: the bad row (150, in chunk 1: task 1's) comes before the empty second file (chunk 3: task
    0's)."""
    import json

    from tunewise.data.commands import WriteData
    from tunewise.data.distributed import CleanChunks

    rows = [{"instruction": f"question {i}", "output": f"answer number {i} " * 3} for i in range(300)]
    rows[149] = {"instruction": "no answer"}
    first, empty = tmp_path / "d.jsonl", tmp_path / "e.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    empty.write_text("", encoding="utf-8")
    cfg = load_config(write_config(tmp_path / "c.yaml", {
        "model": {"name_or_path": "tiny-llama"}, "run": {"root": str(tmp_path / "runs"), "name": "s"},
        "data": {"datasets": [str(first), str(empty)], "strict": True}}))
    for rank in range(3):
        CleanChunks(cfg, tmp_path / "work", chunk_size=100)(None, rank, 3)
    with pytest.raises(DataError, match=f"{first}:150"):
        WriteData(cfg, tmp_path / "work", chunk_size=100)()
