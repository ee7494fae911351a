"""Data report: a printed summary of every step's counts and a token-length histogram."""

from __future__ import annotations

from pathlib import Path

from tunewise.fileio import atomic_path


def write_length_histogram(lengths: list[int], path: Path, max_length: int | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#4c78a8")
    if max_length:
        ax.axvline(max_length, color="#e45756", linestyle="--", label=f"max_length = {max_length}")
        ax.legend()
    ax.set_xlabel("tokens per example")
    ax.set_ylabel("examples")
    ax.set_title(f"Token lengths ({len(lengths)} examples)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def length_histogram(lengths: list[int], bins: int = 20) -> dict:
    """The same histogram as the PNG, as numbers for stats.json: bin edges and counts."""
    import numpy as np

    if len(lengths) == 0:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(lengths, bins=min(bins, max(1, len(set(lengths)))))
    return {"edges": [round(float(e), 1) for e in edges], "counts": [int(c) for c in counts]}


def format_summary(stats: dict) -> str:
    lines = [f"data: {stats['num_train']} train / {stats['num_val']} val records; {stats['num_dropped']} dropped"]
    for s in stats.get("steps", []):
        extra = f"  ({s['changed']} changed)" if s.get("changed") else ""
        lost = s["before"] - s["after"]
        delta = f"-{lost}" if lost > 0 else (f"+{-lost}" if lost < 0 else "")
        lines.append(f"  {s['step']:<12} {s['before']:>7} -> {s['after']:>7} {delta:>6}{extra}")
    if stats.get("augmented"):
        lines.append(f"  augmented    +{stats['augmented']} copies")
    pref = stats.get("preference")
    if pref and "pairs" in pref:
        lines.append(f"  {pref['stage']}: {pref['pairs']['train']} train / {pref['pairs']['val']} val chosen/rejected pairs")
    elif pref:
        good, bad = pref["desirable"], pref["undesirable"]
        lines.append(f"  kto: train {good['train']} desirable / {bad['train']} undesirable; "
                     f"val {good['val']} / {bad['val']}")
    if tools := stats.get("tools"):
        t = {k: f"{v['train']} / {v['val']}" for k, v in tools.items()}
        lines.append(f"  tools (train / val): {t['records_with_tools']} records with tools, {t['tool_calls']} calls, "
                     f"{t['parallel_call_turns']} turns with parallel calls, {t['tools_but_no_call']} records with "
                     "tools but no call")
    per = stats.get("datasets") or {}
    if per:
        lines.append(f"  {'dataset':<16} {'read':>7} {'dropped':>8} {'train':>7} {'val':>6}  share (requested)")
        for name, v in per.items():
            lines.append(f"  {name[:16]:<16} {v['rows_read']:>7} {v['dropped']:>8} {v['train']:>7} {v['val']:>6}  "
                         f"{v['share']:.1%} ({v['requested_share']:.1%}, weight {v['weight']:g})")
    extra = {k: v for k, v in (stats.get("mix") or {}).items() if k not in per}
    if extra:  # replay / general data mixed in
        lines.append("  also mixed in: " + ", ".join(f"{k} {v['records']} ({v['share']:.0%})" for k, v in extra.items()))
    tok = (stats.get("tokens") or {}).get("train")
    if tok:
        lines.append(f"  tokens: {tok['total_tokens']:,} total, {tok['supervised_tokens']:,} supervised; "
                     f"lengths {tok.get('min_length', 0)}-{tok.get('max_length', 0)} (mean {tok.get('mean_length', 0)}); "
                     f"truncated {tok['truncated_examples']} examples ({tok['truncated_tokens']:,} tokens)"
                     + (f"; estimated from {tok['sampled']['records']:,} of {tok['sampled']['of']:,} records "
                        "(data.token_stats_sample)" if tok.get("sampled") else ""))
    if stats.get("num_dropped"):
        lines.append("  see data/dropped.jsonl for every dropped record and its reason")
    return "\n".join(lines)
