"""`tunewise eval RUN`: before/after report, forgetting check, blind human-review sheets."""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_eval(a) -> int:
    from tunewise.runs import RunDir, allow_remote_code, require_run

    allow_remote_code(a.trust_remote_code)
    run = require_run(a.run)
    if a.blind_score:
        from tunewise.evaluate.blind import format_blind_summary, score_blind
        from tunewise.fileio import write_json

        key = Path(a.key) if a.key else RunDir(run).eval / "blind_key.json"
        result = score_blind(Path(a.blind_score), key)
        write_json(RunDir(run).eval / "blind_scores.json", result)
        print(format_blind_summary(result, a.lang))
        return 0

    from rich.console import Console
    from rich.table import Table

    from tunewise.api import Run

    report = Run(run).evaluate(data=a.data, max_samples=a.max_samples, forgetting=not a.no_forgetting,
                               checkpoint=a.checkpoint, max_new_tokens=a.max_new_tokens)
    items = report.pop("_items")
    start = report.get("before_model", "base model")
    table = Table(title=f"Evaluation of {run} (greedy decoding; before = {start}, after = tuned)")
    for h in report["table"]["header"]:
        table.add_column(h, justify="right" if h != "metric" else "left")
    for row in report["table"]["rows"]:
        table.add_row(*row)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    fg = report.get("forgetting")
    if fg:
        msg = fg.get("message", {}).get(a.lang) if isinstance(fg.get("message"), dict) else None
        if fg.get("warning"):
            console.print(f"[bold yellow]forgetting warning[/bold yellow]: {msg or ''}")
            for tip in (fg.get("advice", {}) or {}).get(a.lang, []):
                console.print(f"  - {tip}")
        else:
            console.print(f"forgetting check: OK {msg or ''}")
    if a.blind_sheet:
        from tunewise.evaluate.blind import write_blind_sheet

        first = next(iter(items["after"]["predictions"]))
        rows = [{"id": f"{first}-{i}", "prompt": b["prompt"], "answer_base": b["prediction"], "answer_tuned": t["prediction"]}
                for i, (b, t) in enumerate(zip(items["before"]["predictions"][first], items["after"]["predictions"][first]))]
        paths = write_blind_sheet(rows, RunDir(run).eval, seed=a.seed)
        print(f"blind review sheet: {paths}", file=sys.stderr)
    print(RunDir(run).eval)
    return 0


def register(sub) -> None:
    e = sub.add_parser("eval", help="evaluate base vs tuned: loss, ROUGE, BLEU, stopping, forgetting; blind review sheets")
    e.add_argument("run", help="run directory")
    e.add_argument("--data", action="append", default=[], metavar="FILE", help="extra eval set (repeatable)")
    e.add_argument("--max-samples", type=int, help="at most this many prompts per set (the general QA probe too)")
    e.add_argument("--max-new-tokens", type=int, help="longest generated answer (default: the run's eval.max_new_tokens)")
    e.add_argument("--no-forgetting", action="store_true", help="skip the general-ability (forgetting) probes")
    e.add_argument("--checkpoint", help="evaluate this checkpoint instead of the final result")
    e.add_argument("--blind-sheet", action="store_true", help="also write a blind A/B review sheet (CSV + HTML)")
    e.add_argument("--blind-score", metavar="FILLED.csv", help="unblind a filled review sheet and aggregate the scores")
    e.add_argument("--key", help="the blind key (default: RUN/eval/blind_key.json)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--lang", choices=["en", "zh"], default="en")
    from tunewise.cli import add_trust_remote_code

    add_trust_remote_code(e)
    e.set_defaults(func=cmd_eval)
