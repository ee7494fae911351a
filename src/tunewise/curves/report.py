"""`tunewise curves RUN [RUN ...]`: curves.png, a self-contained report.html and diagnosis.json."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from tunewise.curves.diagnose import Diagnosis, diagnose, ema, format_diagnosis
from tunewise.errors import RunError
from tunewise.fileio import atomic_path, write_json, write_text
from tunewise.runs import RunDir

__all__ = ["analyze_run", "read_metrics", "plot_runs", "best_checkpoint", "format_diagnosis", "result_note"]


def read_metrics(run: Path) -> list[dict]:
    p = RunDir(run).metrics
    if not p.exists():
        raise RunError("no metrics.jsonl in this run", where=str(run), fix="train first (`tunewise train CONFIG`)")
    rows = []
    for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RunError(f"metrics.jsonl has a damaged line ({e.msg})", where=f"{p}:{i}",
                           fix="delete that line (a run killed while writing can leave half a line), then run again") from None
        if isinstance(row, dict):
            rows.append(row)
    if not rows:
        raise RunError("metrics.jsonl is empty", where=str(p), fix="the run logged nothing: lower train.logging_steps")
    return rows


def plot_runs(runs: list[Path], out_png: Path, diagnoses: list[Diagnosis] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows = [read_metrics(run) for run in runs]
    quality = any("gen_stop_rate" in r for rows in all_rows for r in rows)
    pref = any("rewards/margins" in r for rows in all_rows for r in rows)
    # the generation check's rates (train/behaviour.py) and a preference run's rewards get panels of their own
    ratios = [3] + [2] * quality + [2] * pref + [1]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(8, 2 + 2 * len(ratios)), dpi=100, sharex=True,
                             gridspec_kw={"height_ratios": ratios})
    ax, axlr = axes[0], axes[-1]
    axq = axes[1] if quality else None
    axp = axes[1 + quality] if pref else None
    for i, (run, rows) in enumerate(zip(runs, all_rows)):
        color = f"C{i}"
        label = Path(run).name
        tr = [(r["step"], r["loss"]) for r in rows if "loss" in r and math.isfinite(r["loss"])]
        va = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r and math.isfinite(r["val_loss"])]
        lr = [(r["step"], r["lr"]) for r in rows if "lr" in r]
        if tr:
            xs, ys = zip(*tr)
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1)
            ax.plot(xs, ema(list(ys), 0.6), color=color, label=f"{label} train (smoothed)")
        if va:
            xs, ys = zip(*va)
            ax.plot(xs, ys, color=color, linestyle="--", marker="o", markersize=3, label=f"{label} validation")
            j = min(range(len(ys)), key=ys.__getitem__)
            ax.scatter([xs[j]], [ys[j]], color=color, s=60, zorder=5, edgecolors="black")
        if lr:
            axlr.plot(*zip(*lr), color=color)
        if quality:
            _plot_quality(axq, rows, color, label if len(runs) > 1 else "")
        if pref:
            _plot_preference(axp, rows, color, label if len(runs) > 1 else "")
        if diagnoses and i < len(diagnoses):
            ax.text(0.99, 0.97 - 0.07 * i, f"{label}: {diagnoses[i].verdict}", transform=ax.transAxes, ha="right",
                    va="top", color=color, fontsize=10, fontweight="bold")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    if quality:
        axq.set_ylabel("answers (greedy)")
        axq.set_ylim(-0.05, 1.05)
        axq.legend(fontsize=8, loc="lower right")
        axq.grid(alpha=0.3)
    if pref:
        axp.set_ylabel("preference")
        axp.axhline(0.5, color="grey", linewidth=0.5)
        axp.legend(fontsize=8, loc="upper left")
        axp.grid(alpha=0.3)
    axlr.set_ylabel("learning rate")
    axlr.set_xlabel("optimizer step")
    axlr.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out_png)


_PREFERENCE = [("eval_rewards/accuracies", "validation accuracy", "-", "o"), ("eval_rewards/margins", "validation margin", "--", "o"),
               ("rewards/margins", "training margin", ":", None)]


def _plot_preference(ax, rows: list[dict], color: str, prefix: str) -> None:
    """A preference run's reward accuracy and margins (train/preference.py) over steps."""
    for key, name, style, marker in _PREFERENCE:
        pts = [(r["step"], r[key]) for r in rows if key in r and math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts), color=color, linestyle=style, marker=marker, markersize=3,
                    label=f"{prefix} {name}".strip())


_QUALITY = [("gen_stop_rate", "stop on their own", "-"), ("gen_key_term_rate", "name the key terms", "--"),
            ("gen_rougeL", "ROUGE-L", ":"), ("gen_repetition_rate", "repetition", "-.")]


def _plot_quality(ax, rows: list[dict], color: str, prefix: str) -> None:
    """Share of answers that stop, name the data's key terms, their ROUGE-L and repetition, over steps (step 0:
    before training)."""
    for key, name, style in _QUALITY:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None and r.get("event") in (None, "before_training")]
        if pts:
            ax.plot(*zip(*pts), color=color, linestyle=style, marker=".", label=f"{prefix} {name}".strip())


def best_checkpoint(run: Path, best_step: int | None) -> Path | None:
    ck = RunDir(run).checkpoints
    if best_step is None or not ck.exists():
        return None
    steps = sorted(int(p.name.split("-")[1]) for p in ck.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    at_or_before = [s for s in steps if s <= best_step]
    return ck / f"checkpoint-{at_or_before[-1]}" if at_or_before else None


def _html(run: Path, d: Diagnosis, png: bytes) -> str:
    ev = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(f'{v:.5g}' if isinstance(v, float) else str(v))}</td></tr>"
                 for k, v in d.evidence.items())
    adv = "".join(f"<li>{html.escape(x)}</li>" for x in d.advice["en"])
    adv_zh = "".join(f"<li>{html.escape(x)}</li>" for x in d.advice["zh"])
    img = base64.b64encode(png).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>tunewise report — {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}td{{border-bottom:1px solid #ddd;padding:.3em .8em}}
.verdict{{font-size:1.4em;font-weight:bold}}</style></head><body>
<h1>Learning curves / 学习曲线 — {html.escape(run.name)}</h1>
<p class="verdict">verdict: {d.verdict}</p><p>{html.escape(d.summary['en'])}<br>{html.escape(d.summary['zh'])}</p>
<img alt="curves" src="data:image/png;base64,{img}" style="max-width:100%">
<h2>Evidence / 证据</h2><table>{ev}</table>
<h2>What to do</h2><ul>{adv}</ul><h2>建议</h2><ul>{adv_zh}</ul></body></html>"""


def vocab_size_of(run: Path) -> int | None:
    """The output vocabulary of the run's model (train_summary.json), for the ln(vocabulary) diagnosis."""
    try:
        n = json.loads(RunDir(run).summary.read_text(encoding="utf-8")).get("vocab_size")
        return int(n) if n else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def analyze_run(run: Path) -> Diagnosis:
    run = Path(run)
    rows = read_metrics(run)
    d = diagnose(rows, vocab_size=vocab_size_of(run))
    ck = best_checkpoint(run, d.best_step)
    summary_path = RunDir(run).summary
    if summary_path.exists():
        s = json.loads(summary_path.read_text())
        d.evidence["result_is_best_checkpoint"] = bool(s.get("best_checkpoint"))
    out = d.to_dict()
    out["best_checkpoint"] = str(ck) if ck else None
    if d.verdict == "overfit":
        out["note"] = {"en": f"the saved result is the best checkpoint (step {d.best_step}); eval and export use it",
                       "zh": f"保存的结果即最佳检查点（第 {d.best_step} 步）；评估和导出都使用它"}
    write_json(RunDir(run).diagnosis, out)
    png = plot_runs([run], RunDir(run).curves_png, [d])
    write_text(RunDir(run).report_html, _html(run, d, png.read_bytes()))
    return d


def compare_runs(runs: list[Path], out_png: Path) -> list[Diagnosis]:
    ds = [diagnose(read_metrics(r)) for r in runs]
    plot_runs(runs, out_png, ds)
    return ds


def result_note(run: Path, lang: str = "en") -> str | None:
    """What later stages should tell the user about the weights they use, from diagnosis.json.

    When the run overfit, the saved result is the best (lowest validation loss) checkpoint, not the last
    step: evaluation and export use it and say so.
    """
    p = RunDir(run).diagnosis
    if not p.exists():
        return None
    d = json.loads(p.read_text(encoding="utf-8"))
    note = d.get("note")
    if d.get("verdict") != "overfit" or not note:
        return None
    return note.get(lang) or note.get("en")
