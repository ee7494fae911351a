"""Learning-rate advice: method defaults, and the square-root batch rule from the pretraining recipe.

    full_ft_lr = base_lr x sqrt(supervised tokens per optimizer step / pretraining batch tokens)

Fine-tuning batches are tiny next to pretraining batches, so the gradient is noisier and the step must
be smaller; the square root is the usual Adam scaling for batch size. LoRA-like methods train a
low-rank update that tolerates (and needs) about 10x the full fine-tuning LR (Schulman et al.,
"LoRA Without Regret", 2025), so their value is the rule's result x LORA_FACTOR. Results are
clamped to the range where each method is known to train; a clamp is reported.

Every number cites its source (families.yaml per model family, SOURCES for the rule's own constants), and
the advice says when it differs from the figure a newcomer has most likely read in a guide (MethodFacts.popular_lr, config/methods.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from tunewise.config.methods import (
    FACTS,
    PREFERENCE_LR_FACTOR,
    PREFERENCE_LR_SOURCE,
    MethodFacts,
    facts_of,
)

LORA_FACTOR = 10.0
# where each method trains well; the scaling rule's result is kept inside these
# LoRA-like floor 2e-4: measured to teach a 90-record identity set (20-60-token answers) to Gemma 3 270M and
# SmolLM2-135M within ~100 steps (docs/stopping.md); the square-root rule alone gives ~4e-5 for such small
# batches, too little for a small dataset's few steps.
# (the usual range and the default of each method: config/methods.py, shared with config defaults and the lint)
SOURCES = {
    "sqrt rule": "square-root batch scaling for Adam: Malladi et al., 'On the SDEs and Scaling Rules for Adaptive "
                 "Gradient Algorithms', arXiv:2205.10287",
    "lora factor": "LoRA's best LR is ~10x full fine-tuning's: Schulman et al., 'LoRA Without Regret', Thinking "
                   "Machines Lab, 2025 (thinkingmachines.ai/blog/lora)",
}
def method_facts(method: str) -> MethodFacts:
    """The method's facts; an unknown name is advised like LoRA (the registry's own check names the choices)."""
    return facts_of(method) or FACTS["lora"]


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


def advise_lr(method: str, model_type: str, supervised_tokens_per_step: float, stage: str = "sft") -> LrAdvice:
    """The advised peak learning rate for `method` on this model and batch; a preference stage (dpo, orpo,
    simpo, kto) gets a tenth of it: it moves a model that already answers well, and an SFT-sized rate wrecks it."""
    sft = _sft_lr(method, model_type, supervised_tokens_per_step)
    from tunewise.config.schema import PREFERENCE_STAGES

    if stage not in PREFERENCE_STAGES:
        return sft
    value = float(f"{sft.value * PREFERENCE_LR_FACTOR:.2g}")
    return LrAdvice(value, f"{value:g}: {PREFERENCE_LR_FACTOR:g} x the SFT rate for {stage}, which moves a model that "
                    f"already answers well (source: {PREFERENCE_LR_SOURCE}). The SFT rate: {sft.en}",
                    f"{value:g}：{stage} 用 SFT 学习率的 {PREFERENCE_LR_FACTOR:g} 倍——偏好训练调整的是已经会回答的模型"
                    f"（出处：TRL DPOTrainer 默认值与 LoRA DPO 配方，如 Zephyr）。SFT 学习率：{sft.zh}")


def _sft_lr(method: str, model_type: str, supervised_tokens_per_step: float) -> LrAdvice:
    mf = method_facts(method)
    default = mf.default_lr
    fam = family_of(model_type)
    if fam is None or mf.virtual_tokens or supervised_tokens_per_step <= 0:
        why = ("virtual-token methods keep their own default" if mf.virtual_tokens
               else f"no pretraining recipe known for '{model_type}'")
        why_zh = "虚拟 token 类方法使用其默认值" if mf.virtual_tokens else f"不知道“{model_type}”的预训练配方"
        return LrAdvice(default, f"{default:g}: the {method} default ({why})", f"{default:g}：{method} 的默认值（{why_zh}）")
    base, bt = fam["base_lr"], fam["batch_tokens"]
    ratio = supervised_tokens_per_step / bt
    full = base * math.sqrt(ratio)
    raw = full * (LORA_FACTOR if mf.adapter_like else 1.0)
    lo, hi = mf.lr_range
    value = float(f"{min(max(raw, lo), hi):.2g}")
    assumed = "" if fam["published"] else " (assumed values: " + fam["source"] + ")"
    arith = f"{base:g} x sqrt({supervised_tokens_per_step:,.0f} / {bt:,}) = {base:g} x {math.sqrt(ratio):.4f} = {full:.3g}"
    en = f"{value:g}: base LR x sqrt(supervised tokens per step / pretraining batch tokens): {arith}{assumed}"
    zh = f"{value:g}：基础学习率 × sqrt(每步监督 token 数 / 预训练批 token 数)：{arith}" + ("" if fam["published"] else "（假设值，官方未公布）")
    if mf.adapter_like:
        en += f"; x {LORA_FACTOR:g} for {method} (low-rank updates need ~10x the full fine-tuning LR) = {raw:.3g}"
        zh += f"；{method} 乘以 {LORA_FACTOR:g}（低秩更新需要约 10 倍于全参微调的学习率）= {raw:.3g}"
    if value != float(f"{raw:.2g}"):
        en += f"; kept inside [{lo:g}, {hi:g}] where {method} trains well"
        zh += f"；限制在 {method} 的常用区间 [{lo:g}, {hi:g}] 内"
    en += f". Sources: base rate and batch: {fam['cite']}; {SOURCES['sqrt rule']}" + (
        f"; {SOURCES['lora factor']}" if mf.adapter_like else "")
    zh += f"。出处：基础学习率与批大小：{fam['cite']}；平方根批缩放：arXiv:2205.10287" + (
        "；LoRA 约 10 倍：Schulman 等，“LoRA Without Regret”（2025）" if mf.adapter_like else "")
    if not fam["published"]:
        en += (f". The base rate {base:g} is an assumption for {model_type}: if you have read another pretraining "
               f"learning rate for this model, the rule's result scales with it (your figure / {base:g} x {raw:.3g}, "
               f"then kept inside [{lo:g}, {hi:g}])")
        zh += (f"。基础学习率 {base:g} 是对 {model_type} 的假设：如果你看到过该模型另外的预训练学习率，规则的结果按比例换算"
               f"（你的数值 / {base:g} × {raw:.3g}，再限制在 [{lo:g}, {hi:g}] 内）")
    guide = guide_note(method, value)
    if guide:
        en, zh = en + ". " + guide[0], zh + "。" + guide[1]
    return LrAdvice(value, en, zh)


def guide_note(method: str, value: float) -> tuple[str, str] | None:
    """When the advised LR is more than 2x away from the figure guides quote for this method: say so, and why."""
    popular = method_facts(method).popular_lr
    if popular is None:
        return None
    figure, where = popular
    if 0.5 <= value / figure <= 2:
        return None
    side = "higher" if value > figure else "lower"
    return (f"Guides usually quote {figure:g} for {method} ({where}); this is {value / figure:.2g}x that, {side}, "
            f"because it scales with the supervised tokens per step of this data and batch: a step that averages "
            f"{'more' if side == 'higher' else 'fewer'} tokens has a {'less' if side == 'higher' else 'more'} noisy "
            "gradient and takes a {} step".format("larger" if side == "higher" else "smaller"),
            f"教程通常给 {method} 用 {figure:g}（{where}）；这里是它的 {value / figure:.2g} 倍（{'更高' if side == 'higher' else '更低'}），"
            f"因为学习率随本数据与批大小下每步的监督 token 数缩放：每步 token 越{'多' if side == 'higher' else '少'}，"
            f"梯度噪声越{'小' if side == 'higher' else '大'}，步子就该越{'大' if side == 'higher' else '小'}")


def lora_tradeoff(method: str, lr: float, rule: LrAdvice | None, steps: int | None) -> tuple[str, str]:
    """Why an LR between 1e-6 and 1e-4 for a LoRA-like method is a choice, in this model's numbers."""
    ref = rule.value if rule is not None else method_facts(method).default_lr
    ratio = ref / lr
    basis = "The LR rule for this model and batch" if rule is not None else f"The {method} default"
    basis_zh = "按本模型与批大小计算的学习率规则" if rule is not None else f"{method} 的默认值"
    plan = (f"; with the {steps} steps planned, {lr:g} moves the adapter about as far as {max(1, round(steps / ratio))} "
            f"steps at {ref:g}" if steps else "")
    plan_zh = (f"；按计划的 {steps} 步，{lr:g} 让适配器走的距离约等于 {ref:g} 下的 {max(1, round(steps / ratio))} 步"
               if steps else "")
    en = (f"{method} with learning_rate {lr:g}: guides disagree here — some call ~1e-5 too low for LoRA on small data, "
          f"others recommend it to change the model gently. {basis} gives {ref:g}; {lr:g} takes steps "
          f"{ratio:.2g}x smaller: less forgetting of what the model knew, but about {ratio:.2g}x more steps for the same "
          f"change{plan}, so on a small dataset expect the curves to say underfit or stagnant_high")
    zh = (f"{method} 使用学习率 {lr:g}：各教程说法不一——有的说 LoRA 在小数据上用 1e-5 左右太低，有的推荐它以温和地改变模型。"
          f"{basis_zh}给出 {ref:g}；{lr:g} 的步长小 {ratio:.2g} 倍：原有能力遗忘更少，但要达到同样的改变需要约 {ratio:.2g} 倍的步数"
          f"{plan_zh}，因此在小数据集上曲线多半会判为 underfit 或 stagnant_high")
    return en, zh
