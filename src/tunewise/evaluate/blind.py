"""Blind human review: A/B sheets with hidden order, and unblinded aggregation with a sign test."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import random
from pathlib import Path

from tunewise.errors import DataError
from tunewise.fileio import write_json, write_text

CRITERIA = ["accuracy", "completeness", "logic", "fluency"]
_ZH = {"accuracy": "准确性", "completeness": "完整性", "logic": "逻辑性", "fluency": "流畅性"}


def _columns() -> list[str]:
    cols = ["id", "prompt", "answer_A", "answer_B"]
    cols += [f"{c}_{s}" for s in ("A", "B") for c in CRITERIA]
    return cols + ["preferred", "comment"]


def write_blind_sheet(items: list[dict], out_dir: Path, *, seed: int = 0) -> dict:
    """items: {id, prompt, answer_base, answer_tuned}. Writes blind_sheet.csv/.html and blind_key.json."""
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    key, rows = {}, []
    for it in items:
        tuned_is_a = rng.random() < 0.5
        a, b = (it["answer_tuned"], it["answer_base"]) if tuned_is_a else (it["answer_base"], it["answer_tuned"])
        key[str(it["id"])] = "A" if tuned_is_a else "B"
        rows.append({"id": it["id"], "prompt": it["prompt"], "answer_A": a, "answer_B": b})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_columns())
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in _columns()})
    csv_path = write_text(out_dir / "blind_sheet.csv", "\ufeff" + buf.getvalue())  # BOM: Excel opens Chinese correctly
    write_json(out_dir / "blind_key.json", {"tuned_is": key, "seed": seed})
    cells = "".join(
        f"<tr><td>{html.escape(str(r['id']))}</td><td>{html.escape(r['prompt'])}</td>"
        f"<td class=a>{html.escape(r['answer_A'])}</td><td class=b>{html.escape(r['answer_B'])}</td></tr>" for r in rows)
    crit = ", ".join(f"{c} ({_ZH[c]})" for c in CRITERIA)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Blind review / 盲评</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:.5em;vertical-align:top;white-space:pre-wrap}}
table{{border-collapse:collapse;width:100%}}th{{background:#f3f3f3}}</style></head><body>
<h1>Blind review / 盲评</h1>
<p>Score each answer 1-5 on {crit} in <code>blind_sheet.csv</code>, and put A, B or tie in <code>preferred</code>.
The order of A and B is random for each prompt; do not look at <code>blind_key.json</code>.</p>
<p>请在 <code>blind_sheet.csv</code> 中为每个回答按 1-5 分打分（{crit}），并在 preferred 列填写 A、B 或 tie。每道题 A/B 的顺序是随机的，请勿查看 <code>blind_key.json</code>。</p>
<table><tr><th>id</th><th>prompt / 问题</th><th>answer A / 回答 A</th><th>answer B / 回答 B</th></tr>{cells}</table></body></html>"""
    html_path = write_text(out_dir / "blind_sheet.html", page)
    return {"csv": str(csv_path), "html": str(html_path), "key": str(out_dir / "blind_key.json")}


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test (ties excluded)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * p)


def score_blind(filled_csv: Path, key_json: Path) -> dict:
    filled_csv, key_json = Path(filled_csv), Path(key_json)
    if not key_json.exists():
        raise DataError("blind key not found", where=str(key_json), fix="pass --key with the blind_key.json written with the sheet")
    key = json.loads(key_json.read_text(encoding="utf-8"))["tuned_is"]
    with open(filled_csv, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    score_cols = [f"{c}_{s}" for s in ("A", "B") for c in CRITERIA]
    totals = {who: {c: [] for c in CRITERIA} for who in ("base", "tuned")}
    wins = losses = ties = blank = 0
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{filled_csv}:{i}"
        rid = str(row.get("id", "")).strip()
        if rid not in key:
            raise DataError(f"unknown id '{rid}'", where=where, fix="do not edit the id column; use the sheet that matches this key")
        vals = {c: (row.get(c) or "").strip() for c in score_cols}
        pref = (row.get("preferred") or "").strip().upper()
        if not any(vals.values()) and not pref:
            blank += 1
            continue
        parsed = {}
        for c, v in vals.items():
            try:
                x = int(float(v))
                if float(v) != x:
                    raise ValueError
            except ValueError:
                raise DataError(f"column '{c}' must be a whole number from 1 to 5 (got {v!r})", where=where,
                                fix="fill every score column of a reviewed row with 1, 2, 3, 4 or 5") from None
            if not 1 <= x <= 5:
                raise DataError(f"column '{c}' must be from 1 to 5 (got {x})", where=where, fix="use the 1-5 scale")
            parsed[c] = x
        tuned_side = key[rid]
        base_side = "B" if tuned_side == "A" else "A"
        for c in CRITERIA:
            totals["tuned"][c].append(parsed[f"{c}_{tuned_side}"])
            totals["base"][c].append(parsed[f"{c}_{base_side}"])
        if pref in ("A", "B", "TIE"):
            outcome = "tie" if pref == "TIE" else ("win" if pref == tuned_side else "loss")
        elif pref:
            raise DataError(f"column 'preferred' must be A, B or tie (got {pref!r})", where=where, fix="write A, B or tie")
        else:
            t = sum(parsed[f"{c}_{tuned_side}"] for c in CRITERIA)
            b = sum(parsed[f"{c}_{base_side}"] for c in CRITERIA)
            outcome = "tie" if t == b else ("win" if t > b else "loss")
        wins, losses, ties = wins + (outcome == "win"), losses + (outcome == "loss"), ties + (outcome == "tie")
    reviewed = wins + losses + ties
    if reviewed == 0:
        raise DataError("no reviewed rows in the sheet", where=str(filled_csv), fix="fill in scores for at least one row")
    means = {who: {c: sum(v) / len(v) for c, v in crit.items()} for who, crit in totals.items()}
    return {"reviewed": reviewed, "blank_rows": blank, "means": means, "wins": wins, "losses": losses, "ties": ties,
            "win_rate": wins / reviewed, "sign_test_p": sign_test_p(wins, losses)}


def format_blind_summary(r: dict, lang: str = "en") -> str:
    zh = lang == "zh"
    lines = [("盲评结果" if zh else "Blind review") + f": {r['reviewed']} " + ("条已评" if zh else "reviewed")
             + (f", {r['blank_rows']} " + ("条空白跳过" if zh else "blank skipped") if r["blank_rows"] else "")]
    for c in CRITERIA:
        name = _ZH[c] if zh else c
        lines.append(f"  {name:<14} base {r['means']['base'][c]:.2f}  tuned {r['means']['tuned'][c]:.2f}")
    lines.append(("微调模型 胜/平/负" if zh else "tuned wins/ties/losses") + f": {r['wins']}/{r['ties']}/{r['losses']}, "
                 + ("胜率" if zh else "win rate") + f" {r['win_rate']:.0%}, " + ("符号检验 p" if zh else "sign test p") + f" = {r['sign_test_p']:.4f}")
    return "\n".join(lines)
