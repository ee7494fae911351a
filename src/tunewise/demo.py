"""`make demo`: fine-tune Gemma 3 270M offline on the bundled data and show what changed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from tunewise.config import load_config
from tunewise.runs import RunDir


def demo_config(root: str | Path, quick: bool = False):
    from tunewise.samples.demo import write_demo_dataset

    root = Path(root)
    data = write_demo_dataset(root / "demo-data" / "demo.jsonl", long=True)
    base = yaml.safe_load((Path(__file__).parent / "demo.yaml").read_text(encoding="utf-8"))
    overrides = [f"data.datasets=[{{path: {data.resolve()}}}]", f"run.root={root}", "run.name=demo"]
    if quick:
        # the pipeline end to end, not a result: short generation checks (a 3-step model does not stop yet)
        overrides += ["train.max_steps=3", "train.eval_steps=3", "run.name=demo-quick",
                      "train.generation_check_samples=4", "train.generation_check_max_new_tokens=48"]
    return load_config(None, overrides, base=base)


LONG_MAX_NEW_TOKENS = 320  # long held-out answers are 110-200 tokens: room to finish, and to show one that never does
QUICK_LONG_MAX_NEW_TOKENS = 64  # --quick: the pipeline, not a result


def side_by_side(run: Path, max_new_tokens: int = 48, long_max_new_tokens: int = LONG_MAX_NEW_TOKENS) -> list[dict]:
    """Greedy answers of the base and the tuned model to held-out prompts."""
    from tunewise.samples.demo import heldout_prompts
    from tunewise.infer.generate import generate, load_run_model

    prompts = heldout_prompts()
    rows = [dict(p) for p in prompts]
    groups = [([i for i, p in enumerate(prompts) if p["kind"] != "long"], max_new_tokens),
              ([i for i, p in enumerate(prompts) if p["kind"] == "long"], long_max_new_tokens)]
    for tuned in (False, True):
        lm = load_run_model(run, tuned=tuned)
        for idx, limit in groups:
            convs = [[{"role": "user", "content": prompts[i]["prompt"]}] for i in idx]
            for i, res in zip(idx, generate(lm, convs, max_new_tokens=limit, batch_size=max(1, len(convs)))):
                rows[i]["tuned" if tuned else "base"] = res
        del lm
    return rows


def print_comparison(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Held-out prompts (never seen in training), greedy decoding", show_lines=True)
    table.add_column("prompt", ratio=2)
    table.add_column("base model", ratio=3)
    table.add_column("tuned model", ratio=3)
    table.add_column("expected", ratio=1)

    def cell(res):
        mark = "" if res["stopped"] else f" [red](never stopped: {res['num_new_tokens']} tokens)[/red]"
        text = res["text"] if len(res["text"]) <= 160 else res["text"][:160] + "…"
        return (text or "[dim](empty)[/dim]").replace("[", "\\[") + mark

    for r in rows:
        expected = r["expected"] or ("(a long answer that ends)" if r.get("kind") == "long" else "(identity)")
        table.add_row(r["prompt"][:120], cell(r["base"]), cell(r["tuned"]), expected)
    Console(stderr=False).print(table)
    checkable = [r for r in rows if r["expected"]]
    long = [r for r in rows if r.get("kind") == "long"]
    short = [r for r in rows if r.get("kind") != "long"]
    for who in ("base", "tuned"):
        ok = sum(1 for r in checkable if r[who]["text"].strip().lower().rstrip(".。") == r["expected"].lower())
        stops = sum(1 for r in short if r[who]["stopped"])
        long_stops = sum(1 for r in long if r[who]["stopped"])
        print(f"{who:>5}: {ok}/{len(checkable)} task answers exactly right, {stops}/{len(short)} short answers and "
              f"{long_stops}/{len(long)} long answers stopped on their own")


def run_demo(root: str = "runs", quick: bool = False, overwrite: bool = True, export: bool = True) -> Path:
    from tunewise.advise.lint import lint_before_training
    from tunewise.train.workflow import train

    t0 = time.time()
    cfg = demo_config(root, quick)
    run = Path(cfg.run.root) / cfg.run.name
    if not (overwrite is False and RunDir(run).adapter.exists()):
        run = train(cfg, overwrite=True, before_fit=lint_before_training)
    rows = side_by_side(run, cfg.generation.max_new_tokens, QUICK_LONG_MAX_NEW_TOKENS if quick else LONG_MAX_NEW_TOKENS)
    print_comparison(rows)
    from tunewise.fileio import write_json

    write_json(run / "demo_comparison.json", rows)
    if export:
        # The user's worst day was a model fine in training and "drunk" in Ollama: export it the way Ollama
        # runs it and prove, with llama.cpp, that it answers and stops like the trained model.
        from tunewise.export.run import export_run

        print("\nExporting to GGUF (q8_0) + Ollama Modelfile and verifying it with llama.cpp ...", file=sys.stderr, flush=True)
        export_run(run, gguf="q8_0", ollama=True, name="tunewise-demo")
    print(f"\nDone in {time.time() - t0:.0f}s. Run directory: {run}", file=sys.stderr)
    print(run)
    return run
