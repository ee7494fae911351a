"""Preference data (#24): every input form loads to the record the preference engine trains on.

The contract: a pair is an ordinary record whose last assistant turn is the chosen answer, plus `rejected` (the
other answer to that turn); a KTO example is an ordinary record plus a boolean `label`.
"""

import json

import pytest
from conftest import write_config

from tunewise.config import load_config
from tunewise.data.prepare import prepare
from tunewise.data.report import format_summary
from tunewise.errors import DataError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(tmp_path, datasets, stage="dpo", **data):
    data = {"datasets": datasets, "val_size": 0, "shuffle": False, **data}
    return load_config(write_config(tmp_path / "c.yaml", {
        "run": {"root": str(tmp_path / "runs"), "name": "t"}, "model": {"name_or_path": "tiny-llama"},
        "train": {"stage": stage}, "data": data}))


def _one(tmp_path, row, stage="dpo", **data) -> dict:
    recs = prepare(_cfg(tmp_path, [str(_jsonl(tmp_path / "d.jsonl", [row]))], stage, **data), None).train
    assert len(recs) == 1
    return recs[0]


def _dropped(run) -> list[dict]:
    return [json.loads(line) for line in (run / "data" / "dropped.jsonl").read_text().splitlines()]


def _conversation(rec) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in rec["messages"]]


def test_alpaca_pair_with_system_and_history(tmp_path):
    rec = _one(tmp_path, {"instruction": "Translate", "input": "cat", "chosen": "猫", "rejected": "狗",
                          "system": "Be terse.", "history": [["hi", "hello"]]})
    assert _conversation(rec) == [("system", "Be terse."), ("user", "hi"), ("assistant", "hello"),
                                  ("user", "Translate\ncat"), ("assistant", "猫")]
    assert rec["rejected"] == "狗" and "label" not in rec
    assert rec["source"] == "d" and rec["where"].endswith("d.jsonl:1")


def test_sharegpt_pair_with_single_turn_answers(tmp_path):
    rec = _one(tmp_path, {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                                            {"from": "human", "value": "2+2?"}],
                          "chosen": {"from": "gpt", "value": "4"}, "rejected": {"from": "gpt", "value": "5"},
                          "system": "You add."})
    assert _conversation(rec) == [("system", "You add."), ("user", "hi"), ("assistant", "hello"), ("user", "2+2?"),
                                  ("assistant", "4")]
    assert rec["rejected"] == "5"


@pytest.mark.parametrize("row", [
    {"prompt": [{"role": "user", "content": "Capital of France?"}],
     "chosen": [{"role": "assistant", "content": "Paris."}], "rejected": [{"role": "assistant", "content": "Rome."}]},
    {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."},  # TRL standard
    {"messages": [{"role": "user", "content": "Capital of France?"}], "chosen": "Paris.", "rejected": "Rome."},
    {"messages": [{"role": "user", "content": "Capital of France?"}],
     "chosen": [{"role": "assistant", "content": "Paris."}], "rejected": [{"role": "assistant", "content": "Rome."}]},
    # TRL's implicit prompt: two whole conversations that share everything before the answer
    {"chosen": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}],
     "rejected": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Rome."}]},
], ids=["openai-lists", "trl-text", "messages-text", "messages-lists", "implicit-prompt"])
def test_openai_and_trl_pairs(tmp_path, row):
    rec = _one(tmp_path, row)
    assert _conversation(rec) == [("user", "Capital of France?"), ("assistant", "Paris.")]
    assert rec["rejected"] == "Rome."


@pytest.mark.parametrize("row,label", [
    ({"instruction": "2+2?", "output": "4", "label": True}, True),
    ({"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}], "kto_tag": False}, False),
    ({"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "label": True}, True),
    ({"prompt": "2+2?", "completion": "4", "label": False}, False),  # TRL unpaired
    ({"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}],
      "label": "true"}, True),  # TRL unpaired, conversational; a CSV's text "true" is a label too
], ids=["alpaca", "sharegpt-kto_tag", "messages", "trl-text", "trl-conversational"])
def test_kto_examples_with_a_label(tmp_path, row, label):
    rec = _one(tmp_path, row, stage="kto")
    assert _conversation(rec) == [("user", "2+2?"), ("assistant", "4")]
    assert rec["label"] is label and "rejected" not in rec


def test_llamafactory_dataset_info_ranking_and_kto_entries_load_unchanged(tmp_path):
    # the shapes of LLaMA-Factory's data/README.md and its dpo_en_demo / kto_en_demo entries
    _jsonl(tmp_path / "alpaca_pairs.json", [{"instruction": "Name a colour", "input": "", "chosen": "Blue.",
                                             "rejected": "Seven."}])
    _jsonl(tmp_path / "dpo_en_demo.json", [{"conversations": [{"from": "human", "value": "Say hi"}],
                                            "chosen": {"from": "gpt", "value": "Hi!"},
                                            "rejected": {"from": "gpt", "value": "No."}}])
    _jsonl(tmp_path / "kto_en_demo.json", [{"messages": [{"role": "user", "content": "Say hi"},
                                                         {"role": "assistant", "content": "Hi!"}], "label": True}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "alp": {"file_name": "alpaca_pairs.json", "ranking": True,
                "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
        "dpo_en_demo": {"file_name": "dpo_en_demo.json", "ranking": True, "formatting": "sharegpt",
                        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
        "kto_en_demo": {"file_name": "kto_en_demo.json", "formatting": "sharegpt",
                        "columns": {"messages": "messages", "kto_tag": "label"},
                        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant"}},
    }))
    info = str(tmp_path / "dataset_info.json")
    recs = {r["source"]: r for r in prepare(_cfg(tmp_path, ["alp", "dpo_en_demo"], dataset_info=info), None).train}
    assert _conversation(recs["alp"]) == [("user", "Name a colour"), ("assistant", "Blue.")]
    assert recs["alp"]["rejected"] == "Seven."
    assert _conversation(recs["dpo_en_demo"]) == [("user", "Say hi"), ("assistant", "Hi!")]
    assert recs["dpo_en_demo"]["rejected"] == "No."
    kto = prepare(_cfg(tmp_path, ["kto_en_demo"], stage="kto", dataset_info=info), None).train
    assert [r["label"] for r in kto] == [True] and _conversation(kto[0])[-1] == ("assistant", "Hi!")


def test_ranking_entry_whose_rows_have_no_answers_names_the_column(tmp_path):
    _jsonl(tmp_path / "sft.json", [{"instruction": "a", "output": "b"}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({"x": {"file_name": "sft.json", "ranking": True}}))
    with pytest.raises(DataError, match="columns.chosen names the column 'chosen'"):
        prepare(_cfg(tmp_path, ["x"], dataset_info=str(tmp_path / "dataset_info.json")), None)


def test_bad_pairs_are_dropped_with_their_reasons(tmp_path):
    rows = [
        {"instruction": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."},
        {"instruction": "Same answers", "chosen": "Ｐａｒｉｓ", "rejected": "Paris"},  # equal once NFKC-normalised
        {"instruction": "Empty rejected", "chosen": "Something.", "rejected": "  "},
        {"instruction": "No pair here", "output": "An SFT answer."},
    ]
    p = _jsonl(tmp_path / "pairs.jsonl", rows)
    # two whole conversations (TRL's implicit prompt) whose prompts differ
    q = _jsonl(tmp_path / "conversations.jsonl", [
        {"chosen": [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "Yes."}],
         "rejected": [{"role": "user", "content": "B?"}, {"role": "assistant", "content": "No."}]}])
    run = tmp_path / "run"
    kept = prepare(_cfg(tmp_path, [str(p), str(q)], strict=False), run).train
    assert [r["rejected"] for r in kept] == ["Rome."]
    why = {d["where"]: (d["step"], d["reason"]) for d in _dropped(run)}
    assert why[f"{p}:2"][0] == "pair" and "same as the chosen" in why[f"{p}:2"][1]
    assert why[f"{p}:3"] == ("empty", "empty rejected answer: a preference pair needs two answers")
    assert why[f"{p}:4"][0] == "stage" and "no rejected answer" in why[f"{p}:4"][1]
    assert why[f"{q}:1"][0] == "read" and "same prompt" in why[f"{q}:1"][1] and "turn 1" in why[f"{q}:1"][1]


def test_record_without_rejected_under_dpo_in_strict_mode_names_line_and_fix(tmp_path):
    p = _jsonl(tmp_path / "mixed.jsonl", [{"instruction": "a", "chosen": "b", "rejected": "c"},
                                          {"instruction": "d", "output": "e"}])
    with pytest.raises(DataError) as e:
        prepare(_cfg(tmp_path, [str(p)]), None)
    assert f"{p}:2" in str(e.value) and "add chosen and rejected" in e.value.fix and "train.stage: sft" in e.value.fix


def test_half_a_pair_names_the_missing_field(tmp_path):
    p = _jsonl(tmp_path / "half.jsonl", [{"instruction": "a", "chosen": "b"}])
    with pytest.raises(DataError) as e:
        prepare(_cfg(tmp_path, [str(p)]), None)
    assert f"{p}:1" in str(e.value) and "'rejected'" in str(e.value)


@pytest.mark.parametrize("stage", ["sft", "pretrain"])
def test_pair_data_under_sft_is_an_error_naming_the_stage_to_set(tmp_path, stage):
    p = _jsonl(tmp_path / "pairs.jsonl", [{"instruction": "a", "chosen": "b", "rejected": "c"}])
    for strict in (True, False):  # not a bad row to skip: the whole run is set up wrong
        with pytest.raises(DataError) as e:
            prepare(_cfg(tmp_path, [str(p)], stage=stage, strict=strict), None)
        assert f"{p}:1" in str(e.value) and "set train.stage: dpo" in e.value.fix


def test_kto_data_under_sft_is_an_error_naming_kto(tmp_path):
    p = _jsonl(tmp_path / "kto.jsonl", [{"prompt": "a", "completion": "b", "label": False}])
    with pytest.raises(DataError) as e:
        prepare(_cfg(tmp_path, [str(p)], stage="sft"), None)
    assert "set train.stage: kto" in e.value.fix


def test_a_label_that_is_not_a_boolean_is_not_kto(tmp_path):
    rec = _one(tmp_path, {"instruction": "Mood of 'great!'", "output": "positive", "label": "positive"}, stage="sft")
    assert "label" not in rec and rec["messages"][-1]["content"] == "positive"


def test_kto_from_pairs_gives_labelled_examples_kept_in_one_split(tmp_path):
    rows = [{"instruction": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad reply {i}."}
            for i in range(10)]
    rows.append({"instruction": "Single", "output": "A lone desirable answer.", "label": True})
    p = _jsonl(tmp_path / "pairs.jsonl", rows)
    run = tmp_path / "run"
    prepared = prepare(_cfg(tmp_path, [str(p)], stage="kto", val_size=3, shuffle=True, clean={"dedup_near": False}), run)
    train, val = prepared.train, prepared.val
    assert all(isinstance(r["label"], bool) and "rejected" not in r for r in train + val)
    for split in (train, val):  # both halves of a pair stay together, so none is lost to the leakage check
        for r in split:
            if r["where"] != f"{p}:11":
                halves = {x["label"]: x for x in split if x["where"] == r["where"]}
                assert set(halves) == {True, False}
                assert halves[False]["messages"][:-1] == halves[True]["messages"][:-1]
                n = r["messages"][-2]["content"].split()[1].rstrip("?")
                assert halves[True]["messages"][-1]["content"] == f"Good answer {n}."
                assert halves[False]["messages"][-1]["content"] == f"Bad reply {n}."
    assert len(train) + len(val) == 21 and not _dropped(run)
    stats = json.loads((run / "data" / "stats.json").read_text())
    pref = stats["preference"]
    assert pref["desirable"]["train"] + pref["desirable"]["val"] == 11
    assert pref["undesirable"]["train"] + pref["undesirable"]["val"] == 10
    assert pref["from_pairs"]["train"] + pref["from_pairs"]["val"] == 10
    assert stats["num_train"] == len(train) and stats["num_val"] == len(val)
    assert "kto: train" in format_summary(stats)


def test_kto_record_without_label_is_dropped_with_the_fix(tmp_path):
    p = _jsonl(tmp_path / "k.jsonl", [{"prompt": "a", "completion": "b", "label": True}, {"instruction": "c", "output": "d"}])
    run = tmp_path / "run"
    assert len(prepare(_cfg(tmp_path, [str(p)], stage="kto", strict=False), run).train) == 1
    (entry,) = _dropped(run)
    assert entry["step"] == "stage" and entry["where"] == f"{p}:2" and "no label" in entry["reason"]


def test_dedup_keys_on_the_whole_pair(tmp_path):
    rows = [{"instruction": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."},
            {"instruction": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon, I think."},
            {"instruction": "Capital of France?", "chosen": "Paris.", "rejected": "Rome."}]
    p = _jsonl(tmp_path / "pairs.jsonl", rows)
    run = tmp_path / "run"
    kept = prepare(_cfg(tmp_path, [str(p)]), run).train
    assert [r["rejected"] for r in kept] == ["Rome.", "Lyon, I think."]
    (entry,) = _dropped(run)
    assert entry["step"] == "dedup_exact" and entry["where"] == f"{p}:3" and entry["reason"].endswith(f"{p}:1")


def test_rejected_answer_is_cleaned_like_the_chosen_one(tmp_path):
    rows = [{"instruction": "Greet", "chosen": "<p>Hello&amp;welcome</p>", "rejected": "<b>Go away</b>\u200b"},
            # a boilerplate rejected answer is what the pair teaches the model to avoid: kept
            {"instruction": "Help", "chosen": "Sure, here it is.", "rejected": "As an AI language model, I cannot."},
            # a boilerplate chosen answer would teach it: dropped
            {"instruction": "Help again", "chosen": "As an AI language model, I cannot.", "rejected": "Here."}]
    p = _jsonl(tmp_path / "pairs.jsonl", rows)
    run = tmp_path / "run"
    kept = prepare(_cfg(tmp_path, [str(p)]), run).train
    assert [(r["messages"][-1]["content"], r["rejected"]) for r in kept] == [
        ("Hello&welcome", "Go away"), ("Sure, here it is.", "As an AI language model, I cannot.")]
    (entry,) = _dropped(run)
    assert entry["step"] == "ai_phrases" and entry["where"] == f"{p}:3"


def test_stats_and_summary_count_pairs(tmp_path):
    p = _jsonl(tmp_path / "pairs.jsonl", [{"instruction": f"Q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}
                                          for i in range(10)])
    run = tmp_path / "run"
    prepare(_cfg(tmp_path, [str(p)], val_size=2, clean={"dedup_near": False}), run)
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats["preference"] == {"stage": "dpo", "pairs": {"train": 8, "val": 2}}
    assert "dpo: 8 train / 2 val chosen/rejected pairs" in format_summary(stats)


def test_sft_stats_have_no_preference_counts(tmp_path):
    p = _jsonl(tmp_path / "sft.jsonl", [{"instruction": "a", "output": "b"}])
    assert "preference" not in prepare(_cfg(tmp_path, [str(p)], stage="sft"), None).stats


def test_a_dpo_run_after_an_sft_run_replays_no_sft_records(tmp_path):
    sft_run = tmp_path / "runs" / "sft"
    (sft_run / "adapter").mkdir(parents=True)
    (sft_run / "data").mkdir()
    (sft_run / "config.yaml").write_text("{}\n")
    _jsonl(sft_run / "data" / "train.jsonl", [{"messages": [{"role": "user", "content": f"old {i}"},
                                                            {"role": "assistant", "content": "x"}], "source": "old"}
                                              for i in range(20)])
    p = _jsonl(tmp_path / "pairs.jsonl", [{"instruction": f"Q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}
                                          for i in range(10)])
    cfg = load_config(write_config(tmp_path / "c.yaml", {
        "model": {"name_or_path": str(sft_run)}, "train": {"stage": "dpo"},
        "data": {"datasets": [str(p)], "val_size": 0, "replay_ratio": 0.5, "clean": {"dedup_near": False}}}))
    train = prepare(cfg, None).train
    assert len(train) == 10 and all("rejected" in r for r in train)
