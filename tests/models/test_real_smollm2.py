"""SmolLM2-135M-Instruct, the second offline model: an instruct model with its own ChatML template and a
built-in system prompt. inspect, qlora/full training, chat and eval on it (the identity test in
tests/behaviour covers lora, export and verification on it)."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli, write_config

BUILTIN = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
RECORDS = [{"instruction": f"What is {a} plus {b}?", "output": f"{a} plus {b} is {a + b}."} for a, b in
           [(1, 2), (3, 4), (5, 6), (7, 8), (2, 9), (4, 4), (6, 1), (8, 3)]]


@pytest.mark.real_model
def test_inspect_names_the_template_and_its_system_prompt(real_home):
    code, out, err = run_cli("inspect", "smollm2-135m-instruct", "--json")
    assert code == 0, err[-2000:]
    s = json.loads(out)
    assert s["model_type"] == "llama" and s["layers"] == 30 and s["chat_template"]
    assert s["builtin_system_prompt"] == BUILTIN and s["parameters"]["tied_embeddings"]


@pytest.mark.real_model
@pytest.mark.parametrize("method,result", [
    ({"name": "qlora", "lora_r": 4, "lora_alpha": 8}, "adapter/adapter_model.safetensors"),
    ({"name": "full"}, "model/model.safetensors"),
])
def test_smollm2_trains_chats_and_evaluates(tmp_path, real_home, method, result):
    from transformers import AutoTokenizer

    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    cfg = {"run": {"root": str(tmp_path / "runs"), "name": "r"}, "model": {"name_or_path": "smollm2-135m-instruct"},
           "data": {"datasets": [str(data)], "val_size": 2, "max_length": 96}, "method": method,
           "train": {"max_steps": 2, "per_device_batch_size": 3, "gradient_accumulation_steps": 1, "logging_steps": 1,
                     "learning_rate": 1e-4 if method["name"] == "qlora" else 1e-5, "generation_check_samples": 2}}
    code, out, err = run_cli("train", str(write_config(tmp_path / "c.yaml", cfg)))
    assert code == 0, err[-3000:]
    run = tmp_path / "runs" / "r"
    assert (run / result).exists()
    tpl = json.loads((run / "template.json").read_text())
    # the tokenizer's own template; data that states no identity keeps the built-in system prompt, explicitly
    assert tpl["source"] == "tokenizer" and tpl["stop_strings"][0] == "<|im_end|>"
    assert tpl["builtin_system"] == BUILTIN and tpl["system"] == BUILTIN
    tok = AutoTokenizer.from_pretrained(run / "data" / "tokenizer")
    from tunewise.templates import ChatTemplate

    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert ChatTemplate.from_json(tpl).render(conv) == tok.apply_chat_template(conv, tokenize=False)

    code, out, err = run_cli("chat", str(run), "--prompt", "What is 2 plus 2?", "--max-new-tokens", "16")
    assert code == 0 and out.strip(), err[-2000:]
    code, out, err = run_cli("eval", str(run), "--max-samples", "2", "--max-new-tokens", "16", "--no-forgetting")
    assert code == 0, err[-2000:]
    rep = json.loads((run / "eval" / "report.json").read_text())
    assert rep["after"]["sets"]["val"]["count"] == 2
