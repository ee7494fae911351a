"""Tool-calling data (#25): OpenAI's and LLaMA-Factory's forms load to the record templates/tools.py renders, bad
tool data is dropped with its place and reason, cleaning and dedup keep and read the calls, stats count them, and
the calls (not the results or the tools block) are what training supervises.
"""

import json
import re

import pytest
from conftest import write_config

from tunewise.config import load_config
from tunewise.data.prepare import prepare
from tunewise.data.report import format_summary
from tunewise.errors import DataError
from tunewise.samples.tools import TOOLS, tool_records, write_tool_dataset

WEATHER = [TOOLS[0]]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, datasets, stage="sft", clean=None, **data):
    data = {"datasets": datasets, "val_size": 0, "shuffle": False, "clean": {"dedup_near": False, **(clean or {})},
            **data}
    return load_config(write_config(tmp_path / "c.yaml", {
        "run": {"root": str(tmp_path / "runs"), "name": "t"}, "model": {"name_or_path": "tiny-llama"},
        "train": {"stage": stage}, "data": data}))


def _prepared(tmp_path, rows, **kw):
    return prepare(_cfg(tmp_path, [str(_jsonl(tmp_path / "d.jsonl", rows))], **kw), None)


def _bare(rec) -> dict:
    return {k: v for k, v in rec.items() if k not in ("source", "where")}


def _call(name, args):
    return {"type": "function", "function": {"name": name, "arguments": args}}


def _weather_chat(city="Paris", args=None, answer="It is 18 °C in Paris.", question="Weather in Paris?"):
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": "",
                          "tool_calls": [_call("get_weather", args or {"city": city})]},
                         {"role": "tool", "name": "get_weather", "content": '{"temp_c": 18}'},
                         {"role": "assistant", "content": answer}],
            "tools": WEATHER}


# ------------------------------------------------------------------------------------------- forms
def test_openai_form_parallel_calls_with_string_and_object_arguments(tmp_path):
    row = {"messages": [
        {"role": "system", "content": "You are a travel helper."},
        {"role": "user", "content": "Weather in Paris and the time in Tokyo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": {"city": "Tokyo"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 18}'},
        {"role": "tool", "tool_call_id": "c2", "content": {"time": "21:05"}},  # an object result is written as JSON
        {"role": "assistant", "content": "18 °C in Paris; 21:05 in Tokyo."}],
        "tools": TOOLS}
    rec = _bare(_prepared(tmp_path, [row]).train[0])
    assert rec["tools"] == TOOLS
    msgs = rec["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert msgs[2]["content"] == "" and [c["function"] for c in msgs[2]["tool_calls"]] == [
        {"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {"city": "Tokyo"}}]
    assert [c["id"] for c in msgs[2]["tool_calls"]] == ["c1", "c2"]
    assert msgs[3] == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "c1"}
    assert json.loads(msgs[4]["content"]) == {"time": "21:05"}


def test_openai_legacy_function_call_and_function_role(tmp_path):
    row = {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                        {"role": "assistant", "content": None,
                         "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                        {"role": "function", "name": "get_weather", "content": "3 °C, snow"},
                        {"role": "assistant", "content": "3 °C and snowing in Oslo."}],
           "tools": json.dumps(WEATHER)}  # a JSON string, as a table column holds it
    msgs = _prepared(tmp_path, [row]).train[0]["messages"]
    assert msgs[1]["tool_calls"] == [_call("get_weather", {"city": "Oslo"})]
    assert msgs[2] == {"role": "tool", "content": "3 °C, snow", "name": "get_weather"}


def test_llamafactory_sharegpt_dataset_info_entry_loads_unchanged_and_like_the_openai_form(tmp_path):
    write_tool_dataset(tmp_path / "tools.json", 16, form="sharegpt")
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "tool_demo": {"file_name": "tools.json", "formatting": "sharegpt",
                      "columns": {"messages": "conversations", "tools": "tools"}}}))
    recs = prepare(_cfg(tmp_path, ["tool_demo"], dataset_info=str(tmp_path / "dataset_info.json")), None).train
    want = [json.loads(json.dumps(r)) for r in tool_records(16)]
    for r in want:  # the OpenAI form's arguments are JSON strings and its results name their function
        for m in r["messages"]:
            m.pop("name", None)
            for c in m.get("tool_calls") or ():
                c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    assert [_bare(r) for r in recs] == want
    parallel = next(r for r in recs if len(r["messages"][1].get("tool_calls") or ()) == 2)
    # one observation turn holding both results became one tool turn per call
    assert [m["role"] for m in parallel["messages"]] == ["user", "assistant", "tool", "tool", "assistant"]


def test_llamafactory_custom_tags_name_the_call_and_observation_turns(tmp_path):
    rows = [{"chat": [{"speaker": "asker", "text": "Weather in Rome?"},
                      {"speaker": "call", "text": '{"name": "get_weather", "arguments": {"city": "Rome"}}'},
                      {"speaker": "result", "text": "22 °C"},
                      {"speaker": "bot", "text": "22 °C in Rome."}],
             "fns": [TOOLS[0]["function"]]}]  # LLaMA-Factory's bare function descriptions, as a list
    _jsonl(tmp_path / "t.json", rows)
    (tmp_path / "dataset_info.json").write_text(json.dumps({"t": {
        "file_name": "t.json", "formatting": "sharegpt", "columns": {"messages": "chat", "tools": "fns"},
        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "asker", "assistant_tag": "bot",
                 "function_tag": "call", "observation_tag": "result", "system_tag": "sys"}}}))
    rec = prepare(_cfg(tmp_path, ["t"], dataset_info=str(tmp_path / "dataset_info.json")), None).train[0]
    assert rec["tools"] == WEATHER
    assert [(m["role"], m["content"]) for m in rec["messages"]] == [
        ("user", "Weather in Rome?"), ("assistant", ""), ("tool", "22 °C"), ("assistant", "22 °C in Rome.")]
    assert rec["messages"][1]["tool_calls"] == [_call("get_weather", {"city": "Rome"})]


def test_tools_without_a_call_and_plain_records_side_by_side(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
             "tools": WEATHER},
            {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
            {"messages": [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}], "tools": []}]
    recs = _prepared(tmp_path, rows).train
    assert recs[0]["tools"] == WEATHER
    assert "tools" not in recs[1] and "tools" not in recs[2]  # no tools: the plain record it always was


# ------------------------------------------------------------------------------------------- bad tool data
def _sg(*turns, tools=WEATHER):
    return {"conversations": [{"from": f, "value": v} for f, v in turns],
            "tools": json.dumps([t["function"] for t in tools])}


def _good_like(row):
    """A good record in the bad one's form (a file's first record decides its format)."""
    if "conversations" in row:
        return _sg(("human", "Weather?"), ("function_call", '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
                   ("observation", "18"), ("gpt", "18 °C."))
    return _weather_chat()


BAD = {
    "arguments-not-json": (
        {"messages": [{"role": "user", "content": "Weather?"},
                      {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                          "name": "get_weather", "arguments": "{city: Paris"}}]},
                      {"role": "tool", "content": "18"}, {"role": "assistant", "content": "18 °C."}],
         "tools": WEATHER},
        r"record field 'messages\[1\]\.tool_calls\[0\]\.arguments': 'arguments' is not valid JSON"),
    "function-call-turn-not-json": (
        _sg(("human", "Weather?"), ("function_call", "get_weather(city=Paris)"), ("observation", "18"),
            ("gpt", "18 °C.")),
        r"conversations\[1\]\.value': a function_call turn is not valid JSON"),
    "unknown-function": (
        _sg(("human", "Price of AAPL?"), ("function_call", '{"name": "get_stock", "arguments": {"symbol": "AAPL"}}'),
            ("observation", "190"), ("gpt", "190 USD."), tools=TOOLS[:2]),
        r"turn 2 calls 'get_stock', which is not one of the record's tools \(get_weather, get_time\)"),
    "result-with-no-call": (
        {"messages": [{"role": "user", "content": "Weather?"}, {"role": "tool", "content": "18"},
                      {"role": "assistant", "content": "18 °C."}], "tools": WEATHER},
        r"turn 2 is a tool result with no call before it"),
    "more-results-than-calls": (
        _sg(("human", "Weather?"), ("function_call", '{"name": "get_weather", "arguments": {"city": "Paris"}}'),
            ("observation", "18"), ("observation", "19"), ("gpt", "18 °C.")),
        r"turn 4 is a tool result with no call before it: the assistant made 1 call\(s\)"),
    "calls-without-tools": (
        {"messages": [{"role": "user", "content": "Weather?"},
                      {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Paris"})]},
                      {"role": "tool", "content": "18"}, {"role": "assistant", "content": "18 °C."}]},
        r"record field 'tools': turn 2 calls 'get_weather', but the record describes no tools"),
    "call-not-answered": (
        {"messages": [{"role": "user", "content": "Weather?"},
                      {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Paris"})]},
                      {"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi."}],
         "tools": WEATHER},
        r"turn 3 is 'user', but the assistant's call\(s\) before it need their results first"),
    "result-for-another-call": (
        {"messages": [{"role": "user", "content": "Weather?"},
                      {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Paris"})]},
                      {"role": "tool", "name": "get_time", "content": "18"},
                      {"role": "assistant", "content": "18 °C."}],
         "tools": TOOLS},
        r"turn 3 is the result of 'get_time', but the calls before it are to get_weather"),
    "tools-not-json": ({**_weather_chat(), "tools": "[{name: get_weather}"},
                       r"record field 'tools': tools is not valid JSON"),
}


@pytest.mark.parametrize("row,reason", BAD.values(), ids=BAD.keys())
def test_malformed_tool_data_is_dropped_with_place_and_reason(tmp_path, row, reason):
    p = _prepared(tmp_path, [_good_like(row), row], strict=False)
    assert len(p.train) == 1 and p.train[0]["where"].endswith("d.jsonl:1")
    [drop] = p.dropped
    assert drop["where"].endswith("d.jsonl:2") and drop["step"] == "read" and drop["record"] == row
    assert re.search(reason, drop["reason"]), drop["reason"]


def test_malformed_tool_data_in_strict_mode_names_file_and_line(tmp_path):
    row, reason = BAD["unknown-function"]
    with pytest.raises(DataError, match=reason) as e:
        _prepared(tmp_path, [_good_like(row), row], strict=True)
    assert e.value.where.endswith("d.jsonl:2")


def test_preference_data_with_tools_is_refused_with_a_reason(tmp_path):
    pair = {"messages": [{"role": "user", "content": "Weather in Paris?"}], "chosen": "Sunny.", "rejected": "No.",
            "tools": WEATHER}
    kto = {**_weather_chat(), "label": True}
    plain_pair = {"messages": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"}
    p = _prepared(tmp_path, [pair, plain_pair], stage="dpo", strict=False)
    assert [r["rejected"] for r in p.train] == ["5"]
    assert "with tools or function calls is not supported yet" in p.dropped[0]["reason"]
    with pytest.raises(DataError, match="with tools or function calls is not supported yet"):
        _prepared(tmp_path, [kto], stage="kto", strict=True)


# ------------------------------------------------------------------------------------------- stats
def test_stats_count_tools_calls_and_parallel_turns(tmp_path):
    path = write_tool_dataset(tmp_path / "t.jsonl", 16)
    p = prepare(_cfg(tmp_path, [str(path), str(_jsonl(tmp_path / "plain.jsonl", [
        {"instruction": "2+2?", "output": "4"}]))]), None)
    recs = tool_records(16)
    calls = sum(len(m.get("tool_calls") or ()) for r in recs for m in r["messages"])
    no_call = sum(1 for r in recs if not any(m.get("tool_calls") for m in r["messages"]))
    assert p.stats["tools"] == {"records_with_tools": {"train": 16, "val": 0}, "tool_calls": {"train": calls, "val": 0},
                                "parallel_call_turns": {"train": 2, "val": 0},
                                "tools_but_no_call": {"train": no_call, "val": 0}}
    assert calls == 16 and no_call == 2
    assert f"16 / 0 records with tools, {calls} / 0 calls, 2 / 0 turns with parallel calls" in format_summary(p.stats)
    plain = prepare(_cfg(tmp_path, [str(tmp_path / "plain.jsonl")]), None)
    assert "tools" not in plain.stats and "tools" not in format_summary(plain.stats)


def test_train_and_val_files_keep_the_tools(tmp_path):
    path = write_tool_dataset(tmp_path / "t.jsonl", 24)
    cfg = _cfg(tmp_path, [str(path)], val_size=0.25)
    prepare(cfg, tmp_path / "run")
    for split in ("train", "val"):
        rows = [json.loads(x) for x in (tmp_path / "run" / "data" / f"{split}.jsonl").read_text().splitlines()]
        assert rows and all(r["tools"] == TOOLS for r in rows)
    stats = json.loads((tmp_path / "run" / "data" / "stats.json").read_text())["tools"]["records_with_tools"]
    assert stats["train"] + stats["val"] == 24 and stats["val"] > 0


# ------------------------------------------------------------------------------------------- cleaning and dedup
def test_cleaning_edits_text_but_keeps_calls_and_tools(tmp_path):
    args = {"city": "  Pa<b>ris</b>  ", "note": "&amp;"}  # what a cleaner would change in text
    row = _weather_chat(args=args, question="Weather  in <b>Paris</b>?\u200b")
    rec = _prepared(tmp_path, [row]).train[0]
    assert rec["messages"][0]["content"] == "Weather in Paris?"
    assert rec["messages"][1]["tool_calls"][0]["function"]["arguments"] == args
    assert rec["tools"] == WEATHER


def test_a_turn_that_only_calls_is_not_empty_and_calls_count_as_answer_length(tmp_path):
    ends_with_call = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                                   {"role": "assistant", "content": "",
                                    "tool_calls": [_call("get_weather", {"city": "Paris"})]}], "tools": WEATHER}
    void_result = _weather_chat()
    void_result["messages"][2]["content"] = ""  # a function that returns nothing
    # 20 characters of answer: the call get_weather({"city":"Paris"}) has 29, its conversation's text none
    p = _prepared(tmp_path, [ends_with_call, void_result], clean={"min_chars": 20})
    assert len(p.train) == 2, [d["reason"] for d in p.dropped]
    p = _prepared(tmp_path, [ends_with_call, _weather_chat(answer="It is 18 °C and sunny in Paris right now.")],
                  clean={"min_chars": 40})
    assert "too short: answer has 29 characters" in p.dropped[0]["reason"] and len(p.train) == 1


def test_records_differing_only_in_call_arguments_or_tools_are_not_duplicates(tmp_path):
    paris, lyon = _weather_chat(args={"city": "Paris"}), _weather_chat(args={"city": "Lyon"})
    other_tools = {**_weather_chat(args={"city": "Paris"}), "tools": TOOLS}
    p = _prepared(tmp_path, [paris, lyon, other_tools, _weather_chat(args={"city": "Paris"})])
    assert [r["where"].rsplit(":", 1)[1] for r in p.train] == ["1", "2", "3"]
    assert p.dropped[0]["reason"].startswith("exact duplicate of") and p.dropped[0]["where"].endswith(":4")


def test_a_long_shared_tool_schema_does_not_make_records_near_duplicates(tmp_path):
    fields = {f"field_{i}": {"type": "string", "description": f"section {i} of the handbook, revision {i * 37 % 101}"}
              for i in range(60)}  # ~3,500 characters, few of them repeated
    long = [{"type": "function", "function": {"name": "search", "description": "Search the company handbook.",
                                              "parameters": {"type": "object", "properties": {"q": {"type": "string"},
                                                                                             **fields}}}}]
    rows = [{"messages": [{"role": "user", "content": q},
                          {"role": "assistant", "content": "", "tool_calls": [_call("search", {"q": q})]},
                          {"role": "tool", "content": r}, {"role": "assistant", "content": a}], "tools": long}
            for q, r, a in [("How many vacation days do I get?", "25 days a year", "You get 25 vacation days."),
                            ("Who approves expense reports?", "your team lead", "Your team lead approves them.")]]
    p = _prepared(tmp_path, rows, clean={"dedup_near": True})
    assert len(p.train) == 2, [d["reason"] for d in p.dropped]


def test_augmentation_leaves_calls_and_tool_results_alone():
    from types import SimpleNamespace

    from tunewise.data.augment import augment_records

    cfg = SimpleNamespace(enabled=True, copies=3, methods=["delete", "swap"], prob=0.5, apply_to="all",
                          synonyms_file=None)
    rec = _weather_chat(question="Please tell me the weather in Paris today",
                        answer="It is warm and sunny in Paris today")
    rec["messages"][2]["content"] = "warm and sunny with light wind today"
    copies = augment_records([rec], cfg, seed=0)
    assert copies and any(c["messages"][0] != rec["messages"][0] for c in copies)
    assert all(c["messages"][1:3] == rec["messages"][1:3] and c["tools"] == rec["tools"] for c in copies)


# ------------------------------------------------------------------------------------------- masking and preview
def test_calls_and_end_token_are_supervised_results_and_tools_block_are_not(tmp_path):
    from tunewise.models.tiny import CHATML_TEMPLATE, build_bytelevel_tokenizer
    from tunewise.templates import choose_template
    from tunewise.templates.encode import encode_records, render_preview

    tok = build_bytelevel_tokenizer(chat_template=CHATML_TEMPLATE)
    template = choose_template("auto", tok, "qwen2")
    rec = prepare(_cfg(tmp_path, [str(write_tool_dataset(tmp_path / "t.json", 8, form="sharegpt"))]), None).train[6]
    [enc], _ = encode_records(tok, template, [rec], max_length=4096)
    text = render_preview(tok, enc, color=False)
    supervised = "".join(part.split("]]")[0] for part in text.split("[[")[1:])
    unsupervised = "".join(part.split("]]")[-1] for part in text.split("[["))
    calls = rec["messages"][1]["tool_calls"]
    assert len(calls) == 2
    for c in calls:
        assert f'{{"name": "get_weather", "arguments": {{"city":"{c["function"]["arguments"]["city"]}"}}}}' in supervised
    assert supervised.count("<|im_end|>") == 2  # the calls' turn and the answer's, each taught to stop
    results = [m["content"] for m in rec["messages"] if m["role"] == "tool"]
    assert all(r in unsupervised and r not in supervised for r in results)
    assert "Current local time in a city." in unsupervised and "<tools>" not in supervised
    assert rec["messages"][-1]["content"] in supervised


def test_data_preview_marks_the_call(tmp_path, tiny_model_dirs, capsys):
    from tunewise.cli import main

    data = _jsonl(tmp_path / "t.jsonl", [_weather_chat()])
    cfg = write_config(tmp_path / "c.yaml", {
        "run": {"root": str(tmp_path / "runs"), "name": "t"}, "model": {"name_or_path": "tiny-qwen2"},
        "data": {"datasets": [str(data)], "val_size": 0, "max_length": 1024}})
    assert main(["data", "preview", str(cfg), "-n", "1", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert '[[<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call><|im_end|>' in out
    assert "hermes" in out
    assert '<tool_response>\n{"temp_c": 18}\n</tool_response>' in out and '[[<tool_response>' not in out
