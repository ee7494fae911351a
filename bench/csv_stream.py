"""Streaming benchmark: a 1 GB CSV read by tunewise's CSV reader stays under 2 GB peak memory.

    python bench/csv_stream.py                 # 1024 MB, limit 2048 MB
    python bench/csv_stream.py --size-mb 64    # quicker
    python bench/csv_stream.py --csv big.csv   # your own file

Writes a CSV of question/answer rows (English and Chinese, quoted fields with commas, quotes and line
breaks) into a temporary folder, then reads it in a fresh process — reader plus record conversion, as
`tunewise data prepare` does before cleaning — and reports rows, seconds and peak resident memory
(ru_maxrss of that process). The exit status is 1 when the peak is over --limit-mb. Not a unit test:
the suite runs it on a few MB only to prove it works.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, size_mb: float) -> int:
    """Write rows until the file reaches size_mb; returns the number of data rows."""
    target = int(size_mb * 1024 * 1024)
    topics = ["password reset", "invoice download", "退款流程", "dark mode", "数据导出", "account deletion"]
    n, written = 0, 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,question,answer,category\n")
        while written < target:
            block = []
            for _ in range(2000):
                n += 1
                t = topics[n % len(topics)]
                block.append(f'{n},"How do I handle {t}, case {n}?","Step 1: open ""Settings"".\nStep 2: find {t} '
                             f'(ticket {n * 7919 % 100003}); 然后点击确认。",{t}\n')
            chunk = "".join(block)
            f.write(chunk)
            written += len(chunk.encode("utf-8"))
    return n


def read_child(path: Path) -> dict:
    """Runs in its own process so ru_maxrss is the reader's peak, not the writer's."""
    sys.path.insert(0, str(ROOT / "src"))
    from tunewise.data import formats, readers

    t0 = time.perf_counter()
    rows = bad = chars = 0
    columns = {"prompt": "question", "response": "answer"}
    for row in readers.read(path):
        if isinstance(row, readers.BadRow):
            bad += 1
            continue
        rec = formats.convert(row.data, "alpaca", columns, {})
        chars += len(rec["messages"][-1]["content"])
        rows += 1
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {"rows": rows, "bad_rows": bad, "answer_chars": chars, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=1024, help="size of the generated CSV (default 1024)")
    p.add_argument("--limit-mb", type=float, default=2048, help="peak memory allowed (default 2048)")
    p.add_argument("--csv", help="read this CSV instead of generating one")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(read_child(Path(a.child))))
        return 0
    with tempfile.TemporaryDirectory(prefix="tw-csv-bench-") as tmp:
        path = Path(a.csv) if a.csv else Path(tmp) / "big.csv"
        t0 = time.perf_counter()
        written = None if a.csv else write_csv(path, a.size_mb)
        gen_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1024 / 1024
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 2
        res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(file_mb=round(size_mb, 1), generated_rows=written, generate_seconds=round(gen_s, 2),
               mb_per_s=round(size_mb / max(res["seconds"], 1e-9), 1), limit_mb=a.limit_mb,
               ok=res["peak_rss_mb"] <= a.limit_mb and (written is None or res["rows"] == written))
    print(f"csv {res['file_mb']} MB, {res['rows']:,} rows in {res['seconds']} s ({res['mb_per_s']} MB/s); "
          f"peak memory {res['peak_rss_mb']} MB (limit {a.limit_mb:g} MB): {'OK' if res['ok'] else 'FAIL'}")
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
