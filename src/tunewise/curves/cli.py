"""`tunewise curves RUN [RUN ...]`."""

from __future__ import annotations

from pathlib import Path


def cmd_curves(a) -> int:
    from tunewise.curves.report import analyze_run, compare_runs, format_diagnosis
    from tunewise.runs import require_run

    runs = [require_run(r) for r in a.runs]
    for run in runs:
        d = analyze_run(run)
        print(f"{run}: " + format_diagnosis(d, a.lang))
    if len(runs) > 1:
        out = Path(a.out or "curves-compare.png")
        compare_runs(runs, out)
        print(f"overlay of {len(runs)} runs: {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("curves", help="plot learning curves, give a verdict (underfit/overfit/...) and advice")
    p.add_argument("runs", nargs="+", help="one or more run directories (several are overlaid)")
    p.add_argument("--lang", choices=["en", "zh"], default="en")
    p.add_argument("--out", help="overlay PNG when comparing runs (default curves-compare.png)")
    p.set_defaults(func=cmd_curves)
