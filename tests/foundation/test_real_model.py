"""Smoke test on the real offline model: the demo pipeline end to end (train, compare, export, verify, eval)."""

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
    assert len(rows) == 10 and all("base" in r and "tuned" in r for r in rows)
    long = [r for r in rows if r["kind"] == "long"]  # answers of realistic length: a model that never stops shows here
    assert len(long) == 4 and all(r["base"]["num_new_tokens"] > 0 for r in long)
    assert "long answers stopped on their own" in out
    assert "Held-out prompts" in out and "base model" in out and "tuned model" in out
    # the demo ends with the export the user's Ollama runs, verified by llama.cpp against the trained model
    v = json.loads((run / "export" / "verify.json").read_text())
    assert v["status"] == "PASS", v
    assert v["tokens_agree"] and v["templates_agree"] and v["stops_agree"]
    mf = (run / "export" / "Modelfile").read_text()
    assert 'PARAMETER stop "<end_of_turn>"' in mf and "<start_of_turn>model" in mf
    assert "verify: PASS" in out and "ollama create tunewise-demo -f Modelfile" in out

    # evaluation on the real model: before/after table, stopping, forgetting probes (kept small)
    code, out, err = run_cli("eval", str(run), "--max-samples", "2", "--max-new-tokens", "24")
    assert code == 0, err[-3000:]
    rep = json.loads((run / "eval" / "report.json").read_text())
    for label in ("before", "after"):
        s = rep[label]["sets"]["val"]
        assert s["count"] == 2 and s["loss"] > 0 and 0 <= s["no_stop_rate"] <= 1
        assert rep[label]["sets"]["general_qa"]["count"] == 2 and rep[label]["general_text"]["perplexity"] > 1
    assert "forgetting" in rep and "val after" in out
