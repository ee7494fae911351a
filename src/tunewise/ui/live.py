"""What the Train tab shows, read from the run directory: metrics, progress, verdict, run list.

Pure functions of files (metrics.jsonl, diagnosis.json, train_summary.json, eval/report.json,
export/verify.json), so the board shows the same thing for a run started from the CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from tunewise.runs import RunDir


def read_rows(run: str | Path) -> list[dict]:
    """metrics.jsonl rows; a half-written last line (training is appending) is skipped."""
    p = RunDir(run).metrics
    if not p.exists():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


_TYPES = {"step": "int64", "value": "float64", "series": "str", "lr": "float64"}


def _typed(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """A frame with numeric step/value even when empty: the plot fixes its axis types from the first value."""
    return pd.DataFrame(rows, columns=columns).astype({c: _TYPES[c] for c in columns})


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def loss_frame(rows: list[dict], label: str = "") -> pd.DataFrame:
    """Long table step | value | series for train and validation loss."""
    out = []
    for r in rows:
        for key, name in (("loss", "train loss"), ("val_loss", "val loss")):
            if _finite(r.get(key)):
                out.append({"step": int(r["step"]), "value": float(r[key]),
                            "series": f"{label} {name}".strip()})
    return _typed(out, ["step", "value", "series"])


LOSS_COLORS = {"train loss": "#4c78a8", "val loss": "#e45756"}


def with_all_series(frame: pd.DataFrame, colors: dict[str, str] = LOSS_COLORS) -> pd.DataFrame:
    """The frame plus one blank (NaN) row per series in `colors`, for a LinePlot with color="series".

    Gradio's plot fixes its colour scale to the series present in the value it is first drawn with and
    later only swaps the data; a series missing from that first value is drawn without a stroke, i.e. not
    at all. The board first draws an empty frame, so every value names every series up front. The blank
    rows sit at the first step (they still count for the x axis) and draw nothing.
    """
    step = int(frame["step"].min()) if len(frame) else 0
    blank = pd.DataFrame({"step": step, "value": float("nan"), "series": list(colors)})
    return pd.concat([blank.astype(frame.dtypes.to_dict()), frame], ignore_index=True)


# the generation check's rates, and a preference run's validation reward accuracy (train/preference.py)
QUALITY_SERIES = {"gen_stop_rate": "answers stop", "gen_key_term_rate": "key terms named", "gen_rougeL": "ROUGE-L",
                  "eval_rewards/accuracies": "preference accuracy"}
QUALITY_COLORS = {"answers stop": "#e45756", "key terms named": "#54a24b", "ROUGE-L": "#4c78a8",
                  "preference accuracy": "#f58518"}


def quality_frame(rows: list[dict]) -> pd.DataFrame:
    """Long table step | value | series of the generation check's rates (step 0: before training)."""
    out = []
    for r in rows:
        if r.get("event") not in (None, "before_training"):
            continue
        for key, name in QUALITY_SERIES.items():
            if _finite(r.get(key)):
                out.append({"step": int(r["step"]), "value": float(r[key]), "series": name})
    return _typed(out, ["step", "value", "series"])


def lr_frame(rows: list[dict]) -> pd.DataFrame:
    out = [{"step": int(r["step"]), "lr": float(r["lr"])} for r in rows if _finite(r.get("lr"))]
    return _typed(out, ["step", "lr"])


def compare_frame(runs: list[str | Path]) -> pd.DataFrame:
    """Validation loss of several runs (train loss where a run has no validation), one series per run."""
    frames = []
    for run in runs:
        rows = read_rows(run)
        name = Path(run).name
        val = [{"step": int(r["step"]), "value": float(r["val_loss"]), "series": f"{name} val loss"}
               for r in rows if _finite(r.get("val_loss"))]
        if not val:
            val = [{"step": int(r["step"]), "value": float(r["loss"]), "series": f"{name} train loss"}
                   for r in rows if _finite(r.get("loss"))]
        frames.append(_typed(val, ["step", "value", "series"]))
    if not frames:
        return _typed([], ["step", "value", "series"])
    return pd.concat(frames, ignore_index=True)


def latest(rows: list[dict]) -> dict:
    """The most recent value of each metric (step, loss, val_loss, lr, tokens_per_s, epoch)."""
    cur: dict = {}
    for r in rows:
        if r.get("event"):
            cur["event"] = r["event"]
            continue
        for k in ("step", "epoch", "loss", "val_loss", "lr", "tokens_per_s", "grad_norm"):
            if k in r and (k == "step" or _finite(r[k])):
                cur[k] = r[k]
    return cur


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def diagnosis(run: str | Path) -> dict | None:
    return read_json(RunDir(run).diagnosis)


def verdict_markdown(d: dict | None, lang: str) -> str:
    if not d:
        return ""
    summary = (d.get("summary") or {}).get(lang) or (d.get("summary") or {}).get("en", "")
    advice = (d.get("advice") or {}).get(lang) or (d.get("advice") or {}).get("en", [])
    head = "结论" if lang == "zh" else "Verdict"
    lines = [f"### {head}: **{d.get('verdict', '?')}**", "", summary]
    note = d.get("note")
    if isinstance(note, dict) and note.get(lang):
        lines += ["", f"*{note[lang]}*"]
    if advice:
        lines += ["", "建议：" if lang == "zh" else "What to do:"] + [f"- {a}" for a in advice]
    return "\n".join(lines)


def list_runs(root: str | Path) -> list[str]:
    """Run directories under root (folders with a config.yaml), newest first."""
    root = Path(root)
    if not root.exists():
        return []
    runs = [p for p in root.iterdir() if p.is_dir() and (p / "config.yaml").exists()]
    runs.sort(key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True)
    return [str(p) for p in runs]


def has_result(run: str | Path) -> bool:
    """A result to evaluate or export: adapter/ or model/, or a diverged run's last good checkpoint."""
    from tunewise.runs import has_result as result
    from tunewise.runs import last_good_checkpoint

    return result(run) or last_good_checkpoint(run) is not None


def eval_report(run: str | Path) -> dict | None:
    return read_json(RunDir(run).eval_report)


def eval_table(report: dict | None) -> pd.DataFrame:
    if not report or "table" not in report:
        return pd.DataFrame()
    t = report["table"]
    return pd.DataFrame(t["rows"], columns=t["header"])


def forgetting_markdown(report: dict | None, lang: str) -> str:
    fg = (report or {}).get("forgetting")
    if not fg:
        return ""
    msg = fg.get("message", {})
    msg = msg.get(lang) or msg.get("en", "") if isinstance(msg, dict) else str(msg or "")
    if fg.get("warning"):
        tips = (fg.get("advice") or {}).get(lang) or []
        head = "遗忘警告" if lang == "zh" else "Forgetting warning"
        return f"**{head}**: {msg}\n" + "".join(f"\n- {t}" for t in tips)
    return ("遗忘检查：通过 " if lang == "zh" else "Forgetting check: OK ") + msg


def verify_result(run: str | Path) -> dict | None:
    return read_json(RunDir(run).verify_json)


def verify_markdown(v: dict | None, lang: str) -> str:
    if not v:
        return ""
    status = str(v.get("status", "?")).upper()
    lines = [f"## {status}"]
    for key, en, zh in (("cause", "Cause", "原因"), ("fix", "Fix", "解决办法")):
        val = v.get(key)
        if isinstance(val, dict):
            val = val.get(lang) or val.get("en")
        if val:
            lines.append(f"**{zh if lang == 'zh' else en}**: {val}")
    for k, val in v.items():
        if k in ("status", "cause", "fix") or isinstance(val, (dict, list)):
            continue
        lines.append(f"- {k}: {val}")
    return "\n\n".join(lines[:2]) + ("\n\n" + "\n".join(lines[2:]) if len(lines) > 2 else "")
