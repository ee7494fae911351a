"""Streaming benchmark: `tunewise data prepare` on a 1 GB CSV stays under 2 GB peak memory.

    python bench/csv_stream.py                    # 1024 MB, limit 2048 MB: the full data stage
    python bench/csv_stream.py --size-mb 64       # quicker
    python bench/csv_stream.py --reader-only      # only the CSV reader and record conversion
    python bench/csv_stream.py --csv big.csv      # your own file (columns question, answer)
    python bench/csv_stream.py --workers 1        # data.num_workers (default: one per core)

Writes a CSV of question/answer rows into a temporary folder: random words from a seeded vocabulary of a
few thousand English and Chinese words (quoted fields with commas, quotes and line breaks), with about 5%
exact repeats and 5% near repeats (one word changed) of recent rows, so most rows survive cleaning and
the duplicate indexes grow with the file. Then, in a fresh process, runs `tunewise data prepare` on it
(`prepare_command`: read, clean, dedup, split, write, token stats with the tiny test tokenizer), or with
--reader-only just reads and converts every row. Reports rows read and kept, drops per step, seconds (and per
phase: the data stage, the token stats), the peak resident memory of that process (VmHWM) and of its process
tree (sampled every 0.5 s, the worker processes included: RSS and PSS sums), and the load average before and after. The exit status is 1 when
a peak is over --limit-mb. Not a unit test: the suite runs it on a few MB only to prove it works.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {"prompt": "question", "response": "answer"}


def _vocab(rng: random.Random) -> tuple[list[str], list[str]]:
    """About 3,000 made-up English words and 3,000 two-character Chinese words."""
    syll = ["ka", "lo", "mi", "ren", "tas", "vel", "or", "qui", "ston", "bra", "el", "dun", "fi", "gor", "hap", "jes"]
    en = sorted({"".join(rng.choice(syll) for _ in range(rng.randint(1, 3))) for _ in range(4000)})
    chars = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理"
    zh = sorted({rng.choice(chars) + rng.choice(chars) for _ in range(3500)})
    return en, zh


def _sentence(rng: random.Random, words: list[str], n: int, sep: str) -> str:
    return sep.join(rng.choice(words) for _ in range(n))


def _csv(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


def write_csv(path: Path, size_mb: float, seed: int = 0) -> dict:
    """Write rows until the file reaches size_mb; returns row counts (total, exact and near repeats)."""
    rng = random.Random(seed)
    en, zh = _vocab(rng)
    target = int(size_mb * 1024 * 1024)
    recent: list[tuple[str, str]] = []  # the last rows, for repeats (bounded: the generator is not measured)
    n = exact = near = written = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,question,answer,category\n")
        while written < target:
            block = []
            for _ in range(2000):
                n += 1
                roll = rng.random()
                if roll < 0.05 and recent:
                    q, a = rng.choice(recent)
                    exact += 1
                elif roll < 0.10 and recent:
                    q, a = rng.choice(recent)
                    words = a.split(" ")
                    if len(words) > 8:  # one word changed in a long English answer: Jaccard ~0.9
                        words[rng.randrange(len(words))] = rng.choice(en)
                        a = " ".join(words)
                    else:
                        a = a[:-2] + rng.choice(zh)  # Chinese: the last word changed
                    near += 1
                elif roll < 0.55:
                    q = _sentence(rng, en, rng.randint(5, 10), " ") + ", please?"
                    a = (f'Step 1: open "{rng.choice(en)}".\nStep 2: ' + _sentence(rng, en, rng.randint(12, 30), " ")
                         + f" (ticket {rng.randint(1, 99999)}).")
                else:
                    q = _sentence(rng, zh, rng.randint(4, 8), "") + "？"
                    a = "第一步：打开“" + rng.choice(zh) + "”，" + _sentence(rng, zh, rng.randint(10, 25), "") + "。"
                recent.append((q, a))
                if len(recent) > 1000:
                    recent.pop(rng.randrange(len(recent)))
                block.append(f"{n},{_csv(q)},{_csv(a)},{'en' if q.endswith('?') else 'zh'}\n")
            chunk = "".join(block)
            f.write(chunk)
            written += len(chunk.encode("utf-8"))
    return {"rows": n, "exact_repeats": exact, "near_repeats": near}


def _peak_mb() -> float:
    from tunewise.fileio import peak_rss_bytes

    return round(peak_rss_bytes() / 2**20, 1)


def read_child(path: Path) -> dict:
    """Reader and record conversion only. Runs in its own process so ru_maxrss is the reader's peak."""
    from tunewise.data import formats, readers

    t0 = time.perf_counter()
    rows = bad = chars = 0
    for row in readers.read(path):
        if isinstance(row, readers.BadRow):
            bad += 1
            continue
        rec = formats.convert(row.data, "alpaca", COLUMNS, {})
        chars += len(rec["messages"][-1]["content"])
        rows += 1
    return {"mode": "reader-only", "rows": rows, "bad_rows": bad, "answer_chars": chars,
            "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": _peak_mb()}


def prepare_child(path: Path, work: Path, workers: int | None = None, token_sample: int | None = None) -> dict:
    """The whole `tunewise data prepare`, as the CLI runs it, in its own process; seconds per phase."""
    import yaml

    from tunewise.config import load_config
    from tunewise.data import commands, prepare as prep
    from tunewise.data.commands import prepare_command

    phases = {"prepare": 0.0, "token_stats": 0.0}

    def timed(name, fn):  # the bench's own stopwatch around the two phases (the library is not changed)
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - t
        return run

    prep.prepare = timed("prepare", prep.prepare)
    commands.token_stats = timed("token_stats", commands.token_stats)
    data = {"datasets": [{"path": str(path), "columns": COLUMNS}], "max_length": 256, "strict": False}
    if workers is not None:
        data["num_workers"] = workers
    if token_sample is not None:
        data["token_stats_sample"] = token_sample
    cfg_path = work / "bench.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "model": {"name_or_path": "tiny-llama"},
        "run": {"root": str(work / "runs"), "name": "csv-stream"},
        "data": data,
    }), encoding="utf-8")
    t0 = time.perf_counter()
    data_dir = prepare_command(load_config(cfg_path))
    seconds = time.perf_counter() - t0
    stats = json.loads((data_dir / "stats.json").read_text(encoding="utf-8"))
    steps = {s["step"]: s["before"] - s["after"] for s in stats["steps"]}
    read = stats["steps"][0]
    kept = [s["after"] for s in stats["steps"] if s["step"] not in ("leakage", "mix")][-1]  # after the last clean step
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    return {"mode": "prepare", "rows": read["before"], "bad_rows": read["before"] - read["after"], "kept": kept,
            "dropped_by_step": {k: v for k, v in steps.items() if k != "mix"}, "num_train": stats["num_train"],
            "num_val": stats["num_val"], "supervised_tokens": stats["tokens"]["train"]["supervised_tokens"],
            "seconds": round(seconds, 2), "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
            "cpu_seconds_main": round(cpu.ru_utime + cpu.ru_stime, 1), "peak_rss_mb": _peak_mb()}


def _tree_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process and all its children (the data stage's worker processes), summed, in MB. Forked
    workers share their parent's pages until they write them: RSS counts a shared page in each process, PSS
    splits it between them, so the PSS sum is the memory the tree really takes."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0, 0.0
    rss = pss = 0
    for proc in procs:
        try:
            mem = proc.memory_full_info()
            rss, pss = rss + mem.rss, pss + mem.pss
        except psutil.Error:
            pass
    return rss / 1024 / 1024, pss / 1024 / 1024


def run_child(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, dict]:
    """Run the child; sample the memory of its process tree every 0.5 s (the workers are not in its VmHWM)."""
    import threading

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"rss": 0.0, "pss": 0.0}
    out: list[tuple[str, str]] = []
    reader = threading.Thread(target=lambda: out.append(proc.communicate()))
    reader.start()
    while reader.is_alive():
        rss, pss = _tree_mb(proc.pid)
        peak = {"rss": max(peak["rss"], rss), "pss": max(peak["pss"], pss)}
        reader.join(0.5)
    stdout, stderr = out[0]
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), {k: round(v, 1) for k, v in peak.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=1024, help="size of the generated CSV (default 1024)")
    p.add_argument("--limit-mb", type=float, default=2048, help="peak memory allowed (default 2048)")
    p.add_argument("--csv", help="use this CSV instead of generating one")
    p.add_argument("--reader-only", action="store_true", help="measure only the reader and record conversion")
    p.add_argument("--workers", type=int, help="data.num_workers (default: the config default, one per core)")
    p.add_argument("--token-sample", type=int, help="data.token_stats_sample (default: the config default, 200,000; 0 counts every record)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        res = read_child(Path(a.child)) if a.reader_only else prepare_child(Path(a.child), Path(a.work), a.workers, a.token_sample)
        print(json.dumps(res))
        return 0
    with tempfile.TemporaryDirectory(prefix="tw-csv-bench-") as tmp:
        path = Path(a.csv) if a.csv else Path(tmp) / "big.csv"
        t0 = time.perf_counter()
        gen = None if a.csv else write_csv(path, a.size_mb)
        gen_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1024 / 1024
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, __file__, "--child", str(path), "--work", tmp] + (["--reader-only"] if a.reader_only else [])
        cmd += ["--workers", str(a.workers)] if a.workers is not None else []
        cmd += ["--token-sample", str(a.token_sample)] if a.token_sample is not None else []
        load_before = os.getloadavg()
        out, tree_peak = run_child(cmd, env)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 2
        res = json.loads(out.stdout.strip().splitlines()[-1])
    written = gen["rows"] if gen else None
    res.update(peak_tree_rss_mb=tree_peak["rss"], peak_tree_pss_mb=tree_peak["pss"], loadavg_before=[round(x, 2) for x in load_before],
               loadavg_after=[round(x, 2) for x in os.getloadavg()])
    res.update(file_mb=round(size_mb, 1), generated_rows=written, generated=gen, generate_seconds=round(gen_s, 2),
               mb_per_s=round(size_mb / max(res["seconds"], 1e-9), 2), limit_mb=a.limit_mb,
               ok=max(res["peak_rss_mb"], tree_peak["pss"]) <= a.limit_mb and (written is None or res["rows"] == written))
    kept = f", {res['kept']:,} kept after cleaning" if "kept" in res else ""
    print(f"{res['mode']}: csv {res['file_mb']} MB, {res['rows']:,} rows{kept} in {res['seconds']} s "
          f"({res['mb_per_s']} MB/s); peak memory {res['peak_rss_mb']} MB, with workers {tree_peak['pss']} MB (PSS) "
          f"(limit {a.limit_mb:g} MB): "
          f"{'OK' if res['ok'] else 'FAIL'}")
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
