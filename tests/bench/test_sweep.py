"""The model-size sweep's harness works end to end (`--sweep --quick`: one tiny shape, LoRA); no timing is asserted."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.xdist_group("heavy")
def test_sweep_quick_measures_every_peer(tmp_path, tiny_model_dirs):
    results, out = tmp_path / "sweep.json", tmp_path / "SWEEP.md"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    p = subprocess.run([sys.executable, "-m", "bench", "--sweep", "--quick", "--cache", str(tmp_path / "models"),
                        "--results", str(results), "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    md = out.read_text()
    rows = {r["peer"]: r for r in json.loads(results.read_text())}
    for peer in ("tunewise", "trl_default", "plain"):
        line = next(x for x in md.splitlines() if x.startswith("| tiny-qwen2-shape |") and f"| {peer} |" in x)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == "bfloat16" and cells[3] == "lora"  # saved as the families publish them
        assert float(cells[5]) > 0 and float(cells[6]) > 0 and float(cells[7]) > 0
        assert rows[peer]["measured_steps"] == 3
    # every peer trained on the same examples in the same order: the timed steps saw the same real tokens
    assert len({r["measured_tokens"] for r in rows.values()}) == 1
    # tunewise's cell says where its peak came: once loaded, at most the whole run's
    assert 0 < rows["tunewise"]["load_peak_mb"] <= rows["tunewise"]["peak_rss_mb"]
    assert "MB once loaded: the peak came while" in next(x for x in md.splitlines() if "| tunewise |" in x)
    assert "estimate ÷ measured" in md and (tmp_path / "sweep.png").exists()


def test_verdicts_compare_validation_loss_with_trl_in_fp32_when_its_defaults_did_not_finish():
    from bench.sweep_report import verdicts

    def row(peer, loss, tps=10.0, mb=5000.0):
        return {"size": "qwen2.5-1.5b", "method": "lora", "peer": peer, "tokens_per_s": tps, "peak_rss_mb": mb,
                "val_loss": loss}

    partial = {"size": "qwen2.5-1.5b", "method": "lora", "peer": "trl_default", "peak_rss_mb_at_least": 10000,
               "tokens_per_s_below": 0.85}
    near = "\n".join(verdicts([row("tunewise", 12.0), partial, row("trl_fp32", 12.1, tps=5.0, mb=10000.0)]))
    assert "against TRL in fp32 below" in near
    assert "tokens/s 2.00x, validation loss 12.0000 against 12.1000, 0.83% apart (target within 2%): met" in near
    far = "\n".join(verdicts([row("tunewise", 12.0), partial, row("trl_fp32", 12.5)]))
    assert "4.00% apart (target within 2%): NOT met" in far
    assert "trl_fp32" not in "\n".join(verdicts([row("tunewise", 12.0), partial]))
