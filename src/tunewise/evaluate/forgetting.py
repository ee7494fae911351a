"""Forgetting check: general-text perplexity and general-QA metrics before vs after fine-tuning."""

from __future__ import annotations

from pathlib import Path

_RES = Path(__file__).parent / "resources"

ADVICE = {
    "en": [
        "Mix general data back in: data.general: builtin (a bilingual general instruction set that ships with tunewise) "
        "or your own general data, with data.general_ratio 0.1-0.3 (when continuing a run, also data.replay_ratio).",
        "Lower train.learning_rate (e.g. halve it) and/or train fewer epochs (early stopping on).",
        "Prefer LoRA (method.name: lora) with a modest rank over full fine-tuning; it changes the model less.",
    ],
    "zh": [
        "混入通用数据：设置 data.general: builtin（tunewise 自带的中英双语通用指令集）或你自己的通用数据，并设 data.general_ratio 0.1～0.3"
        "（在之前的运行上继续训练时，还可用回放 data.replay_ratio）。",
        "降低 train.learning_rate（例如减半）和/或减少训练轮数（保持早停开启）。",
        "优先使用秩适中的 LoRA（method.name: lora）而不是全参数微调，它对模型的改变更小。",
    ],
}


def general_text_path() -> Path:
    return _RES / "general_text.jsonl"


def general_qa_path() -> Path:
    return _RES / "general_qa.jsonl"


def forgetting_verdict(before: dict, after: dict, *, ppl_increase_threshold: float = 0.15,
                       metric_drop_threshold: float = 10.0) -> dict:
    """Compare general ability before/after.

    `before`/`after`: {"general_text": {"perplexity": ...}, "rougeL": ..., "exact_match": ...} (QA metrics
    on 0-100). Warns when general-text perplexity rises by more than `ppl_increase_threshold` (relative)
    or QA ROUGE-L / exact match drop by more than `metric_drop_threshold` points.
    """
    reasons_en, reasons_zh = [], []
    out: dict = {"thresholds": {"ppl_increase": ppl_increase_threshold, "metric_drop_points": metric_drop_threshold}}
    pb = (before.get("general_text") or {}).get("perplexity")
    pa = (after.get("general_text") or {}).get("perplexity")
    if pb and pa:
        rel = (pa - pb) / pb
        out["general_ppl_before"], out["general_ppl_after"], out["general_ppl_change"] = pb, pa, rel
        if rel > ppl_increase_threshold:
            reasons_en.append(f"general-text perplexity rose {rel:+.0%} ({pb:.2f} -> {pa:.2f})")
            reasons_zh.append(f"通用文本困惑度上升 {rel:+.0%}（{pb:.2f} -> {pa:.2f}）")
    for key in ("rougeL", "exact_match"):
        if key in before and key in after:
            drop = before[key] - after[key]
            out[f"qa_{key}_before"], out[f"qa_{key}_after"] = before[key], after[key]
            if drop > metric_drop_threshold:
                reasons_en.append(f"general QA {key} fell {drop:.1f} points ({before[key]:.1f} -> {after[key]:.1f})")
                reasons_zh.append(f"通用问答 {key} 下降 {drop:.1f} 分（{before[key]:.1f} -> {after[key]:.1f}）")
    out["warning"] = bool(reasons_en)
    out["message"] = {
        "en": ("general ability dropped: " + "; ".join(reasons_en)) if reasons_en else "general ability kept (within thresholds)",
        "zh": ("通用能力下降：" + "；".join(reasons_zh)) if reasons_zh else "通用能力保持良好（在阈值内）",
    }
    out["advice"] = ADVICE if reasons_en else {"en": [], "zh": []}
    return out
