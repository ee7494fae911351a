"""Smoke test on the real offline model: the demo pipeline end to end, a few steps."""

import json

import pytest

from conftest import run_cli


@pytest.mark.real_model
def test_demo_quick_on_gemma3_270m(tmp_path, real_home):
    code, out, err = run_cli("demo", "--quick", "--root", str(tmp_path))
    assert code == 0, err[-3000:]
    run = tmp_path / "demo-quick"
    assert out.strip().endswith(str(run))
    for f in ["config.yaml", "template.json", "adapter/adapter_model.safetensors", "metrics.jsonl", "demo_comparison.json"]:
        assert (run / f).exists(), f
    tpl = json.loads((run / "template.json").read_text())
    assert tpl["name"] == "gemma" and "<end_of_turn>" in tpl["stop_strings"]
    rows = json.loads((run / "demo_comparison.json").read_text())
    assert len(rows) == 6 and all("base" in r and "tuned" in r for r in rows)
    assert "Held-out prompts" in out and "base model" in out and "tuned model" in out
