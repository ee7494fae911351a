"""`tunewise eval` on held-out tool records: calls read by parsing (before and after), every tool turn answered
once, the tool rows in the report table, and the answers written out with their parsed calls."""

from __future__ import annotations

import json

import pytest
from conftest import train_demo_run

from tunewise.samples.tools import write_tool_dataset


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dirs, tw_home):
    return train_demo_run(tmp_path_factory.mktemp("tooleval"), tw_home, model="tiny-qwen2", train={"max_steps": 1},
                          data={"max_length": 2048}, eval={"max_new_tokens": 6})


def test_eval_scores_tool_turns_by_parsing(tiny_run, tmp_path, monkeypatch):
    import tunewise.infer.generate as gen
    from tunewise.config.schema import DatasetSpec
    from tunewise.data.prepare import read_dataset
    from tunewise.evaluate.runner import run_eval
    from tunewise.evaluate.tools import tool_turns

    data = write_tool_dataset(tmp_path / "heldout.jsonl", 8, held_out=True)
    recs, _ = read_dataset(DatasetSpec(path=str(data)), dataset_info=None, strict=True)
    asked: list[tuple] = []
    real = gen.generate

    def counting(lm, conversations, **kw):
        tools = kw.get("tools") or [None] * len(conversations)
        asked.extend((json.dumps(c, sort_keys=True), t is not None) for c, t in zip(conversations, tools))
        return real(lm, conversations, **kw)

    monkeypatch.setattr(gen, "generate", counting)
    rep = run_eval(tiny_run, data=[str(data)], forgetting=False)
    n_turns = len(tool_turns(recs))
    for label in ("before", "after"):
        s = rep[label]["sets"]["heldout"]
        # the random tiny model writes no call: rates computed, not guessed
        assert s["tool_call_turns"] + s["tool_no_call_turns"] == n_turns
        assert s["tool_call_rate"] == 0 and s["tool_name_accuracy"] == 0 and s["tool_no_call_accuracy"] == 1
        assert s["tool_call_json_valid"] is None  # no call block was written at all
        assert 0 <= s["tool_no_stop_rate"] <= 1
    heldout = [a for a in asked if a[1]]
    # each tool turn answered once per model (a record's last turn is not generated again for the text scores)
    assert len(heldout) == 2 * n_turns and len(set(heldout)) == n_turns
    rows = {r[0] for r in rep["table"]["rows"]}
    assert {"tool_call_exact_match", "tool_argument_match", "tool_no_call_accuracy"} <= rows
    items = [json.loads(line) for line in (tiny_run / "eval" / "predictions_after_heldout_tools.jsonl").read_text().splitlines()]
    assert len(items) == n_turns and all("parsed_calls" in it and "reference_calls" in it for it in items)
    assert any(it["reference_calls"] and it["reference_calls"][0]["name"] == "get_weather" for it in items)
