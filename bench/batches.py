"""Training speed and peak memory by per-device batch size, packed and padded: `python -m bench.batches`.

The headline workload (bench/workload.py) on Gemma 3 270M, LoRA r16 all-linear, max_length 512: the same first
32 examples trained at batch 1, 2, 4, 8 and 16 (advise/measure.measure_speed: one model load per packing mode,
a fresh optimizer per size, one warm-up step), with packed batches (the default) and padded ones. Prints a
markdown table; advise's CPU rule (advise.CPU_STEP_TOKENS) and `tunewise advise --measure` rest on it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def main(argv=None) -> int:
    from bench.phases import _config
    from tunewise.advise.measure import measure_speed

    ap = argparse.ArgumentParser(prog="python -m bench.batches")
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--examples", type=int, default=32)
    a = ap.parse_args(argv)
    batches = [int(x) for x in a.batches.split(",")]
    runs = {}
    for packing in ("auto", False):
        work = Path(tempfile.mkdtemp(prefix="tw-batches-"))
        runs[packing] = {r["batch"]: r for r in measure_speed(_config(work, 4, a.examples + 16, packing), batches,
                                                              a.examples)["rows"]}
        print(f"[batches] packing={packing}: done", file=sys.stderr, flush=True)
    lines = ["| per-device batch | packed tokens/s | packed peak RSS (GB) | padded tokens/s | padded peak RSS (GB) |",
             "|---|---|---|---|---|"]
    for b in batches:
        p, q = runs["auto"][b], runs[False][b]
        lines.append(f"| {b} | {p['tokens_per_s']:.1f} | {p['peak'] / 1e9:.2f} | {q['tokens_per_s']:.1f} | {q['peak'] / 1e9:.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
