"""Tool calling on a real model (#25): SmolLM2-135M-Instruct fine-tuned on a small zh/en tool-call set in
LLaMA-Factory's sharegpt form calls the right function with the right arguments on held-out prompts (unseen
cities, numbers and phrasings), where the base model calls nothing; the exported GGUF, run by llama.cpp behind a
Modelfile whose TEMPLATE carries tools, makes the same call as the trained model."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, write_config


@pytest.mark.real_model
def test_tool_calls_are_learned_and_survive_export(tmp_path, real_home):
    from tunewise.samples.tools import write_tool_dataset

    data = tmp_path / "data"
    data.mkdir()
    write_tool_dataset(data / "tool_calls.json", 48, form="sharegpt")
    (data / "dataset_info.json").write_text(json.dumps({"tool_calls": {
        "file_name": "tool_calls.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}}))
    heldout = write_tool_dataset(data / "heldout.jsonl", 12, held_out=True)
    runs = tmp_path / "runs"
    cfg = {"run": {"root": str(runs), "name": "tools"}, "model": {"name_or_path": "smollm2-135m-instruct"},
           "data": {"dataset_info": str(data / "dataset_info.json"), "datasets": [{"name": "tool_calls"}], "val_size": 0,
                    "max_length": 768},
           "train": {"max_steps": 24, "per_device_batch_size": 2, "gradient_accumulation_steps": 1,
                     "learning_rate": 1e-3, "logging_steps": 4, "generation_check": False}}
    code, _, err = run_cli("train", str(write_config(tmp_path / "tools.yaml", cfg)))
    assert code == 0, err[-3000:]
    assert "records with tools" in err
    run = runs / "tools"
    assert json.loads((run / "template.json").read_text())["tools"] == "hermes"  # SmolLM2's ChatML has no tools

    code, _, err = run_cli("eval", str(run), "--data", str(heldout), "--no-forgetting", "--max-new-tokens", "64")
    assert code == 0, err[-3000:]
    rep = json.loads((run / "eval" / "report.json").read_text())
    before, after = rep["before"]["sets"]["heldout"], rep["after"]["sets"]["heldout"]
    print("tool eval before:", json.dumps({k: v for k, v in before.items() if k.startswith("tool_")}))
    print("tool eval after:", json.dumps({k: v for k, v in after.items() if k.startswith("tool_")}))
    assert after["tool_call_turns"] >= 10
    assert after["tool_call_exact_match"] >= 0.35 and after["tool_call_exact_match"] >= before["tool_call_exact_match"] + 0.3
    assert after["tool_name_accuracy"] >= 0.6 and after["tool_call_rate"] >= 0.8
    assert after["tool_call_json_valid"] >= 0.85
    assert after["tool_no_call_accuracy"] >= 0.75
    assert after["tool_no_stop_rate"] <= 0.2

    code, out, err = run_cli("export", str(run), "--gguf", "q8_0", "--ollama")
    assert code == 0, err[-3000:]
    modelfile = (run / "export" / "Modelfile").read_text()
    assert ".ToolCalls" in modelfile and "<tool_call>" in modelfile and ".Tools" in modelfile
    verify = json.loads((run / "export" / "verify.json").read_text())
    assert verify["status"] == "PASS", json.dumps(verify)[:3000]
    assert verify["tool_prompts"] >= 1 and verify["tool_calls_agree"] is True
