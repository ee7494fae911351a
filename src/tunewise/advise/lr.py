"""Learning-rate advice: method defaults, and the square-root batch rule from the pretraining recipe.

    full_ft_lr = base_lr x sqrt(supervised tokens per optimizer step / pretraining batch tokens)

Fine-tuning batches are tiny next to pretraining batches, so the gradient is noisier and the step must
be smaller; the square root is the usual Adam scaling for batch size. LoRA-like methods train a
low-rank update that tolerates (and needs) about 10x the full fine-tuning LR (Schulman et al.,
"LoRA Without Regret", 2025), so their value is the rule's result x LORA_FACTOR. Results are
clamped to the range where each method is known to train; a clamp is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

LORA_FACTOR = 10.0
# where each method trains well; the scaling rule's result is kept inside these
# LoRA-like floor 2e-4: measured to teach a 90-record identity set (20-60-token answers) to Gemma 3 270M and
# SmolLM2-135M within ~100 steps (docs/stopping.md); the square-root rule alone gives ~4e-5 for such small
# batches, too little for a small dataset's few steps.
RANGES = {"full": (5e-6, 5e-5), "freeze": (5e-6, 1e-4), "lora": (2e-4, 1e-3), "qlora": (2e-4, 1e-3),
          "adapter": (1e-4, 1e-3), "prefix": (1e-4, 1e-2), "prompt": (1e-4, 3e-2)}
DEFAULTS = {"full": 1e-5, "freeze": 1e-5, "lora": 2e-4, "qlora": 2e-4, "adapter": 2e-4, "prefix": 5e-4, "prompt": 1e-3}


@lru_cache(maxsize=1)
def families() -> dict:
    return yaml.safe_load((Path(__file__).parent / "families.yaml").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class LrAdvice:
    value: float
    en: str
    zh: str


def family_of(model_type: str) -> dict | None:
    table = families()
    if model_type in table:
        return table[model_type]
    for k in sorted(table, key=len, reverse=True):  # llama4_text -> llama
        if model_type.startswith(k):
            return table[k]
    return None


def advise_lr(method: str, model_type: str, supervised_tokens_per_step: float) -> LrAdvice:
    default = DEFAULTS.get(method, 2e-4)
    fam = family_of(model_type)
    if fam is None or method in ("prefix", "prompt") or supervised_tokens_per_step <= 0:
        why = ("virtual-token methods keep their own default" if method in ("prefix", "prompt")
               else f"no pretraining recipe known for '{model_type}'")
        why_zh = "虚拟 token 类方法使用其默认值" if method in ("prefix", "prompt") else f"不知道“{model_type}”的预训练配方"
        return LrAdvice(default, f"{default:g}: the {method} default ({why})", f"{default:g}：{method} 的默认值（{why_zh}）")
    base, bt = fam["base_lr"], fam["batch_tokens"]
    ratio = supervised_tokens_per_step / bt
    full = base * math.sqrt(ratio)
    raw = full * (LORA_FACTOR if method not in ("full", "freeze") else 1.0)
    lo, hi = RANGES.get(method, (1e-6, 1e-2))
    value = float(f"{min(max(raw, lo), hi):.2g}")
    assumed = "" if fam["published"] else " (assumed values: " + fam["source"] + ")"
    arith = f"{base:g} x sqrt({supervised_tokens_per_step:,.0f} / {bt:,}) = {base:g} x {math.sqrt(ratio):.4f} = {full:.3g}"
    en = f"{value:g}: base LR x sqrt(supervised tokens per step / pretraining batch tokens): {arith}{assumed}"
    zh = f"{value:g}：基础学习率 × sqrt(每步监督 token 数 / 预训练批 token 数)：{arith}" + ("" if fam["published"] else "（假设值，官方未公布）")
    if method not in ("full", "freeze"):
        en += f"; x {LORA_FACTOR:g} for {method} (low-rank updates need ~10x the full fine-tuning LR) = {raw:.3g}"
        zh += f"；{method} 乘以 {LORA_FACTOR:g}（低秩更新需要约 10 倍于全参微调的学习率）= {raw:.3g}"
    if value != float(f"{raw:.2g}"):
        en += f"; kept inside [{lo:g}, {hi:g}] where {method} trains well"
        zh += f"；限制在 {method} 的常用区间 [{lo:g}, {hi:g}] 内"
    return LrAdvice(value, en, zh)
