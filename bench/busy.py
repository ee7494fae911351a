"""`python -m bench.busy [--model M] [--steps N]`: training on a busy machine.

The same short LoRA training (identity-shaped data, answers of 20-60 tokens, default settings but a fixed
number of steps) alone, then beside one and two CPU-bound processes (a pure-Python spin loop each, like a
browser tab or a compile job), once with tunewise's thread choice (tunewise/cpu.py) and once with torch's
default of one thread per core (OMP_NUM_THREADS pinned to the core count, the behaviour before the choice).
Reports training tokens/s (the median logged step) and the slowdown against the quiet run; a fair share on 2 cores with one
competitor is 2x. Appends its table to bench/BUSY.md. Not a test: the suite never times anything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPIN = "import time\nt = time.time()\nwhile time.time() - t < 3600: pass\n"


def _train(cfg_path: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tunewise", "train", str(cfg_path), "--overwrite"], env=env,
                       capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"training failed:\n{p.stderr[-3000:]}")
    line = next((ln for ln in p.stderr.splitlines() if "CPU threads:" in ln), "")
    m = re.search(r"CPU threads: (\d+)", line)
    threads = m.group(1) if m else "?"
    return {"wall_s": wall, "threads": threads}


def _tokens_per_s(run: Path) -> float:
    """Median training tokens/s of the logged steps (the trainer's own figure: loading and evaluation excluded)."""
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    tps = sorted(r["tokens_per_s"] for r in rows if r.get("tokens_per_s") and r.get("step", 0) > 1)
    return float("nan") if not tps else tps[len(tps) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.busy")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--competitors", default="0,1,2")
    ap.add_argument("--precision", default="fp32", help="train.precision for every row (default fp32)")
    a = ap.parse_args(argv)
    import yaml

    from tunewise.cpu import usable_cores
    from tunewise.data.identity import write_identity_dataset

    cores = usable_cores()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tunewise-busy-") as tmp:
        tmp = Path(tmp)
        info = write_identity_dataset(tmp / "data")
        for mode in ("chosen", "every core"):
            for k in [int(x) for x in a.competitors.split(",")]:
                cfg = {"model": {"name_or_path": a.model}, "run": {"root": str(tmp / "runs"), "name": "busy"},
                       "data": {"dataset_info": str(info), "datasets": [{"name": "identity"}]},
                       "train": {"max_steps": a.steps, "eval_steps": 10_000, "save_steps": 10_000, "logging_steps": 1,
                                 "generation_check": False,
                                 # the thread choice is measured here: every row trains in one precision (auto
                                 # could take bf16 at one thread count and fp32 at another where the CPU's bf16
                                 # speed-up sits near its threshold, and the rows would not compare)
                                 "precision": a.precision}}
                (tmp / "busy.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
                env = {k2: v for k2, v in os.environ.items() if k2 != "OMP_NUM_THREADS"}
                if mode == "every core":
                    env["OMP_NUM_THREADS"] = str(cores)
                spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(k)]
                try:
                    time.sleep(1.0 if k else 0.0)
                    res = _train(tmp / "busy.yaml", env)
                finally:
                    for s in spinners:
                        s.kill()
                        s.wait()
                res.update(mode=mode, competitors=k, tps=_tokens_per_s(tmp / "runs" / "busy"))
                print(json.dumps(res), flush=True)
                rows.append(res)
    quiet = {r["mode"]: r["tps"] for r in rows if r["competitors"] == 0}
    lines = [f"\n## {time.strftime('%Y-%m-%d')} · {a.model} · {a.steps} steps · {a.precision} · {platform.machine()}, {cores} cores\n",
             "| threads | competitors | threads used | tokens/s (median step) | slowdown vs quiet | wall (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        base = quiet.get(r["mode"]) or quiet.get("chosen")
        lines.append(f"| {r['mode']} | {r['competitors']} | {r['threads']} | {r['tps']:.1f} | "
                     f"{base / r['tps']:.2f}x | {r['wall_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = HERE / "BUSY.md"
    head = "" if out.exists() else ("# Training on a busy machine\n\n`python -m bench.busy`: training "
                                     "tokens/s alone and beside CPU-bound processes (see bench/busy.py).\n")
    with open(out, "a", encoding="utf-8") as f:
        f.write(head + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
