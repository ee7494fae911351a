"""`make bench` / `python -m bench [--quick]`: tunewise vs TRL (defaults, best) vs plain Trainer+peft.

`python -m bench --sweep [--quick]`: the same peers across model sizes and methods (bench/sweep.py, bench/SWEEP.md).

Writes bench/RESULTS.md. Ratios against peers are measured in the same run on the same machine;
nothing here is a unit test (the suite only runs `--quick` to prove the harness works).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# tunewise packs each batch into one padding-free row and tunewise_nopack pads it: both take the optimizer
# steps of trl_default and plain (one batch per step); only trl_best packs examples into fewer, fuller rows.
# tunewise_bf16base is tunewise with train.frozen_dtype=bfloat16 (the low-memory setting).
# tunewise_nostoprows is tunewise without method.train_stop_tokens (the end-of-turn rows stay frozen, as every peer
# has them): the same trainable parameters as the peers, for comparing validation losses.
PEERS = ["tunewise", "tunewise_fp32", "tunewise_nopack", "tunewise_bf16base", "tunewise_nostoprows", "trl_default",
         "trl_best", "trl_best_fp32", "plain", "llamafactory"]
# LLaMA-Factory's template is Gemma's and the quick run uses a tiny Llama; the no-stop-rows variant only matters
# for comparing losses, which the quick run does not
QUICK_PEERS = [p for p in PEERS if p not in ("llamafactory", "tunewise_nostoprows", "tunewise_fp32", "trl_best_fp32")]


def matmul_gflops(dtype_name: str, n: int = 1024, seconds: float = 1.5) -> float:
    import torch

    dt = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def model_flops_per_token(model_path: Path, lora: bool = True) -> float:
    """Training FLOPs per token: forward 2N + backward 2N (input grads) for frozen-base LoRA; 6N for full.

    N counts non-embedding parameters (embedding lookups are not matmuls); the output projection is
    counted only for supervised positions by tunewise, but to compare like with like we count it per token.
    """
    from tunewise.models.inspect import model_summary

    s = model_summary(model_path)
    n = s["parameters"]["non_embedding"] + s["hidden_size"] * s["vocab_size"]
    return (4 if lora else 6) * n


# The headline workload is instruction data of realistic shape (bench/workload.py); the demo set repeated (one- or
# two-token answers, 32-token examples) is the secondary, toy row.
WORKLOADS = {"instruction": {"max_length": 512, "batch_size": 4}, "demo": {"max_length": 256, "batch_size": 8},
             "system": {"max_length": 768, "batch_size": 4}}


def build_data(model: str, examples: int, out: Path, seed: int = 0, workload: str = "demo") -> dict:
    import random

    from tunewise.samples.demo import demo_records
    from tunewise.fileio import write_jsonl
    from tunewise.models.load import load_tokenizer, resolve_model
    from tunewise.templates import choose_template
    from tunewise.templates.encode import encode_records

    if workload in ("instruction", "system"):
        from bench.workload import instruction_records, system_records

        # validation: 24 more of the same mix, none repeated
        recs = (instruction_records if workload == "instruction" else system_records)(examples + 24, seed)
        val, train = recs[:24], recs[24:]
    else:
        recs = demo_records(seed)
        rng = random.Random(seed)
        rng.shuffle(recs)
        val, pool = recs[:24], recs[24:]
        train = (pool * (examples // len(pool) + 1))[:examples]
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "val.jsonl", val)
    path = resolve_model(model).path
    tok = load_tokenizer(path)
    from transformers import AutoConfig

    tpl = choose_template("auto", tok, AutoConfig.from_pretrained(path).model_type)
    (out / "template.json").write_text(json.dumps(tpl.to_dict()))
    _, st = encode_records(tok, tpl, train, max_length=WORKLOADS[workload]["max_length"])
    return {"train": str(out / "train.jsonl"), "val": str(out / "val.jsonl"), "template": str(out / "template.json"),
            "template_name": tpl.name, "train_tokens_per_epoch": st.total_tokens, "model_path": str(path),
            "workload": workload, "mean_tokens": st.total_tokens / max(1, st.examples),
            "longest": max(st.lengths, default=0), "supervised_share": st.supervised_tokens / max(1, st.total_tokens)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--sweep" in argv:  # the model-size sweep has its own options (bench/sweep.py)
        from bench.sweep import main as sweep_main

        return sweep_main([x for x in argv if x != "--sweep"])
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--sweep", action="store_true", help="model-size sweep instead (bench/sweep.py; see --sweep --help)")
    ap.add_argument("--quick", action="store_true", help="tiny model, few examples: proves the harness works")
    ap.add_argument("--model", default=None)
    ap.add_argument("--examples", type=int, default=None)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), default="instruction",
                    help="instruction: realistic instruction data (the headline); system: the same with one ~190-token "
                         "system prompt on every record; demo: the demo set repeated (toy)")
    ap.add_argument("--peers", default=None, help=f"comma-separated, from {','.join(PEERS)}")
    ap.add_argument("--out", default=None, help="results markdown (default bench/RESULTS.md; --quick: a temp file)")
    a = ap.parse_args(argv)
    model = a.model or ("tiny-llama" if a.quick else "gemma3-270m")
    instruction = a.workload in ("instruction", "system")
    examples = a.examples or ((16 if instruction else 48) if a.quick else (160 if instruction else 2000))
    work = Path(tempfile.mkdtemp(prefix="tw-bench-"))
    data = build_data(model, examples, work, workload=a.workload)
    spec = {"model": model, **WORKLOADS[a.workload], "epochs": a.epochs, "lr": 2e-4, "seed": 0,
            "train_tokens": data["train_tokens_per_epoch"] * a.epochs, **data}
    (work / "spec.json").write_text(json.dumps(spec))
    fp32, bf16 = matmul_gflops("float32"), matmul_gflops("bfloat16", seconds=1.0)
    fpt = model_flops_per_token(Path(data["model_path"]))
    results = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), str(HERE.parent)]))
    for peer in (a.peers or ",".join(QUICK_PEERS if a.quick else PEERS)).split(","):
        print(f"[bench] {peer} ...", file=sys.stderr, flush=True)
        p = subprocess.run([sys.executable, "-m", "bench.peers", peer, str(work / "spec.json")], capture_output=True,
                           text=True, env=env)
        line = next((x for x in p.stdout.splitlines() if x.startswith("BENCH ")), None)
        if p.returncode != 0 or line is None:
            results.append({"peer": peer, "error": (p.stderr or p.stdout)[-600:]})
            continue
        r = json.loads(line[6:])
        r["mfu_fp32"] = r["tokens_per_s"] * fpt / (fp32 * 1e9)
        r["mfu_bf16"] = r["tokens_per_s"] * fpt / (bf16 * 1e9)
        results.append(r)
    md = render(results, model, examples, a.epochs, fp32, bf16, fpt, spec)
    out = Path(a.out) if a.out else (work / "RESULTS.md" if a.quick else HERE / "RESULTS.md")
    out.write_text(md, encoding="utf-8")
    print(md)
    print(f"[bench] wrote {out}", file=sys.stderr)
    return 0 if all("error" not in r for r in results) else 1


def render(results, model, examples, epochs, fp32, bf16, fpt, spec: dict | None = None) -> str:
    ok = {r["peer"]: r for r in results if "error" not in r}
    tw = ok.get("tunewise")
    lines = [f"# Benchmark: LoRA r=16 (all linear layers) on {model}", "",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"measured matmul: fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s",
             f"- data: {_describe(spec, examples)}, {epochs:g} epoch(s); "
             f"model FLOPs/token (training) {fpt / 1e9:.2f} GFLOP", "",
             "| peer | wall (s) | real tokens/s | peak RSS (MB) | val loss | optimizer steps | MFU fp32 | MFU bf16 | tunewise speed-up | tunewise memory ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['peer']} | failed: {r['error'][-160:]!r} | | | | | | | | |")
            continue
        speed = f"{tw['tokens_per_s'] / r['tokens_per_s']:.2f}x" if tw else "-"
        mem = f"{tw['peak_rss_mb'] / r['peak_rss_mb']:.2f}" if tw else "-"
        lines.append(f"| {r['peer']} | {r['wall_s']:.1f} | {r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['val_loss']:.4g} | {r.get('optimizer_steps', '-')} | {r['mfu_fp32']:.1%} | {r['mfu_bf16']:.1%} | {speed} | {mem} |")
    lines += ["", "tunewise speed-up = tunewise tokens/s ÷ peer tokens/s; memory ratio = tunewise peak RSS ÷ peer peak RSS.",
              "Peak RSS is each peer's process while it loads and trains (read as training ends, before the validation",
              "pass loads the result again); LLaMA-Factory's is its CLI process's.",
              "Real tokens are the same for every peer (the same examples), so tokens/s compares wall time directly.",
              "tunewise packs each batch into one padding-free row, so it takes the same optimizer steps as TRL defaults and",
              "the plain Trainer (tunewise_nopack pads instead). tunewise_bf16base keeps the frozen base weights in bf16",
              "(train.frozen_dtype=bfloat16; float32 arithmetic), the setting for when memory is short.",
              "Every peer sees the examples in the same order (the Trainer's seeded sampler; tunewise's own shuffle is off",
              "here) and puts the loss on the answers only (TRL gets prompt-completion rows), so validation losses compare",
              "one to one. TRL-best packs about batch-size examples into each row and takes one row per step, so its steps",
              "and examples per step roughly match the others. LLaMA-Factory runs with its defaults (it turns on gradient",
              "checkpointing) in its own virtual environment (`make bench-venvs`)."]
    return "\n".join(lines) + "\n"


def _describe(spec: dict | None, examples: int) -> str:
    spec = spec or {"workload": "demo", "max_length": 256, "batch_size": 8}
    shape = f"max_length {spec['max_length']}, batch {spec['batch_size']}"
    if spec["workload"] == "demo":
        return f"demo dataset repeated to {examples} examples, {shape}"
    system = ", one ~190-token system prompt on every record" if spec["workload"] == "system" else ""
    return (f"instruction data of realistic shape (bench/workload.py){system}, {examples} examples, mean "
            f"{spec['mean_tokens']:.0f} tokens, longest {spec['longest']}, {spec['supervised_share']:.0%} of tokens "
            f"supervised, {shape}")


if __name__ == "__main__":
    raise SystemExit(main())
