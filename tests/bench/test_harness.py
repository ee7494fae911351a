"""The benchmark harness works end to end (quick mode, tiny model); no timing is asserted."""

import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.xdist_group("heavy")
def test_bench_quick_runs_every_peer(tmp_path, tiny_model_dirs):
    out = tmp_path / "RESULTS.md"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    md = out.read_text()
    for peer in ("tunewise", "tunewise_nopack", "tunewise_bf16base", "trl_default", "trl_best", "plain"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {peer} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0 and float(cells[4]) > 0  # tokens/s and val loss measured
    assert "measured matmul" in md
