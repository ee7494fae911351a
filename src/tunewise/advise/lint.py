"""Config lint: small named rules over (config, facts), each a function in a registry.

Facts about the model and data (dataset sizes, truncation, whether the stop token gets a label, the
model's own template) are gathered once into a plain `Facts`; the rules never load anything, so each
is unit-tested without a model (STYLE rule 3). `lint_before_training` is the hook for `tunewise train`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable

from tunewise.config.methods import MethodFacts, facts_of
from tunewise.config.schema import Config, TrainConfig
from tunewise.errors import ConfigError


@dataclass(frozen=True)
class Facts:
    """What the rules may know besides the config; None means 'not known' and the rule is skipped."""
    n_train: int | None = None
    n_val: int | None = None
    truncated_share: float | None = None        # share of training examples longer than data.max_length
    model_has_chat_template: bool | None = None
    template_name: str | None = None            # the template this run uses
    family_template: str | None = None          # what template.name: auto would pick for this model
    template_matches_own: bool | None = None    # renders like the tokenizer's own template (models that have one)
    stop_checked: int = 0                       # examples encoded to look for a labelled stop token
    stop_labelled: int = 0                      # ... of which carry a label on a stop/end-of-turn token
    stop_strings: tuple[str, ...] = ()
    nproc: int = 1
    explicit: frozenset[str] | None = None      # keys the user wrote (None: unknown)
    system_choice: dict | None = None           # templates.system.SystemChoice as a dict: built-in system prompt vs data
    model_type: str | None = None               # config.model_type (the family the LR rule looks up)
    mean_supervised: float | None = None        # supervised tokens per training example, on average
    train_text_bytes: int | None = None         # UTF-8 size of the training text (every turn)


@dataclass(frozen=True)
class Finding:
    code: str
    key: str
    en: str
    zh: str
    fix_en: str
    fix_zh: str
    severity: str = "warning"

    def to_dict(self, lang: str = "en") -> dict:
        return {"code": self.code, "key": self.key, "message": self.en if lang == "en" else self.zh,
                "fix": self.fix_en if lang == "en" else self.fix_zh, "severity": self.severity}

    def render(self, lang: str = "en") -> str:
        d = self.to_dict(lang)
        return f"{d['severity']} [{self.code}] {self.key}: {d['message']}\n  fix: {d['fix']}"


Rule = Callable[[Config, Facts], "Finding | list[Finding] | None"]
RULES: dict[str, Rule] = {}


def rule(code: str):
    def deco(fn: Rule) -> Rule:
        RULES[code] = fn
        return fn

    return deco


def effective_batch(cfg: Config, nproc: int = 1, n_train: int | None = None) -> int:
    from tunewise.config.plan import accumulation

    t = cfg.train
    return t.per_device_batch_size * accumulation(t, n_train, nproc) * max(nproc, 1)


def _lr(cfg: Config) -> float | None:
    return cfg.train.learning_rate


def _facts(cfg: Config) -> MethodFacts:
    """The method's facts (config/methods.py); an unknown method has none of them (the config check names it)."""
    return facts_of(cfg.method.name) or MethodFacts(cfg.method.name, "weights", 0.0, (0.0, 0.0))


def _trains(cfg: Config, *kinds: str) -> bool:
    mf = facts_of(cfg.method.name)
    return mf is not None and mf.trains in kinds


# ------------------------------------------------------------------------------------------- rules
@rule("full-high-lr")
def full_high_lr(cfg: Config, f: Facts):
    lr = _lr(cfg)
    if _trains(cfg, "weights") and lr is not None and lr >= 1e-4:
        return Finding("full-high-lr", "train.learning_rate",
                       f"{cfg.method.name} fine-tuning with learning_rate {lr:g} (>= 1e-4) usually wrecks the model: loss spikes, the model forgets and repeats itself",
                       f"{cfg.method.name} 微调使用学习率 {lr:g}（>= 1e-4）通常会毁掉模型：损失尖峰、遗忘、重复输出",
                       "use 1e-5 to 2e-5 (`tunewise advise CONFIG` computes one for your batch)",
                       "改用 1e-5 到 2e-5（`tunewise advise 配置` 会按你的批大小计算）")


@rule("lora-low-lr")
def lora_low_lr(cfg: Config, f: Facts):
    lr = _lr(cfg)
    if _trains(cfg, "adapter", "virtual tokens") and lr is not None and lr <= 1e-6:
        return Finding("lora-low-lr", "train.learning_rate",
                       f"{cfg.method.name} with learning_rate {lr:g} (<= 1e-6) barely moves the adapter: the result behaves like the base model",
                       f"{cfg.method.name} 使用学习率 {lr:g}（<= 1e-6）几乎不更新适配器：结果与原模型无异",
                       "LoRA-like methods need ~10x the full fine-tuning LR: start at 2e-4",
                       "LoRA 类方法需要约 10 倍于全参微调的学习率：从 2e-4 开始")


@rule("preference-high-lr")
def preference_high_lr(cfg: Config, f: Facts):
    """A preference stage at an SFT-sized learning rate: the margin grows within a few steps while the answers
    degrade (longer, repetitive, the chosen answers' own likelihood falling)."""
    from tunewise.config.methods import PREFERENCE_LR_FACTOR
    from tunewise.config.schema import PREFERENCE_STAGES

    lr, stage, mf = _lr(cfg), cfg.train.stage, facts_of(cfg.method.name)
    if stage not in PREFERENCE_STAGES or lr is None or mf is None or lr < mf.default_lr / 2:
        return None
    want = mf.lr_for(stage)
    return Finding("preference-high-lr", "train.learning_rate",
                   f"train.stage {stage} with learning_rate {lr:g}, an SFT-sized rate for {cfg.method.name}: preference "
                   "training moves a model that already answers well, and at this rate the reward margin races while the "
                   "answers degrade (longer, repetitive, the chosen answers themselves less likely)",
                   f"train.stage {stage} 使用学习率 {lr:g}，这是 {cfg.method.name} 做 SFT 的量级：偏好训练调整的是已经会回答的模型，"
                   "这个学习率下奖励差值飞涨而回答变差（变长、重复、连选中回答本身的概率都下降）",
                   f"use about {PREFERENCE_LR_FACTOR:g} x the SFT rate: {want:g} (remove train.learning_rate for that default)",
                   f"用 SFT 学习率的约 {PREFERENCE_LR_FACTOR:g} 倍：{want:g}（删除 train.learning_rate 即用此默认值）")


@rule("lr-far-out-of-range")
def lr_far_out_of_range(cfg: Config, f: Facts):
    """A learning rate 10x above (or 100x below) the range where the method trains: e.g. LoRA at 1e6 blows the
    update up (the loss flattens at ln(vocabulary) with zero gradient) and reads as 'underfit' on the curves."""
    lr, name, mf = _lr(cfg), cfg.method.name, facts_of(cfg.method.name)
    if lr is None or mf is None or full_high_lr(cfg, f) or lora_low_lr(cfg, f):
        return None  # the narrower rules say it better
    lo, hi = mf.lr_range
    if lo / 100 <= lr <= 10 * hi:
        return None
    high = lr > hi
    factor = lr / hi if high else lo / lr
    return Finding("lr-far-out-of-range", "train.learning_rate",
                   f"learning_rate {lr:g} is {factor:.3g}x {'above the top' if high else 'below the bottom'} of the range where "
                   f"{name} trains ({lo:g}-{hi:g}): " + ("the first updates blow the model up (NaN, or a flat loss at "
                   "ln(vocabulary) with zero gradient)" if high else "the weights barely move"),
                   f"学习率 {lr:g} {'高于' if high else '低于'} {name} 的常用范围（{lo:g}-{hi:g}）{factor:.3g} 倍："
                   + ("最初几步就会把模型更新坏（NaN，或损失停在 ln(词表大小) 且梯度为零）" if high else "权重几乎不更新"),
                   f"use {lo:g}-{hi:g} (`tunewise advise CONFIG` computes one for your batch)",
                   f"改用 {lo:g}-{hi:g}（`tunewise advise 配置` 会按你的批大小计算）", severity="error")


@rule("lora-lr-tradeoff")
def lora_lr_tradeoff(cfg: Config, f: Facts):
    """Between 1e-6 and 1e-4 a LoRA LR is a choice the guides disagree on: explain it with this model's numbers."""
    from tunewise.advise.lr import advise_lr, lora_tradeoff

    lr, method = _lr(cfg), cfg.method.name
    from tunewise.config.schema import PREFERENCE_STAGES

    if cfg.train.stage in PREFERENCE_STAGES:
        return None  # a preference stage's rate is meant to be a tenth of SFT's (preference-high-lr checks it)
    if not _trains(cfg, "adapter") or lr is None or not 1e-6 < lr < 1e-4:
        return None
    rule_lr = None
    if f.model_type and f.mean_supervised:
        rule_lr = advise_lr(method, f.model_type, effective_batch(cfg, f.nproc, f.n_train) * f.mean_supervised)
    steps = None
    if f.n_train:
        from tunewise.config.plan import steps_plan

        steps = steps_plan(cfg, f.n_train, f.nproc)["total"]
    en, zh = lora_tradeoff(method, lr, rule_lr, steps)
    ref = rule_lr.value if rule_lr is not None else 2e-4
    return Finding("lora-lr-tradeoff", "train.learning_rate", en, zh,
                   f"keep {lr:g} for a light touch on plenty of data (and more steps); otherwise use {ref:g} "
                   "(`tunewise advise CONFIG` shows the arithmetic)",
                   f"数据充足、想轻微改变模型（并增加步数）时保留 {lr:g}；否则用 {ref:g}（`tunewise advise 配置` 会给出计算过程）",
                   severity="note")


SMALL_TEXT_BYTES = 10 * 2 ** 20  # below ~10 MB of text the guides advise against full fine-tuning


@rule("full-small-data")
def full_small_data(cfg: Config, f: Facts):
    if cfg.method.name != "full" or f.train_text_bytes is None or f.train_text_bytes >= SMALL_TEXT_BYTES:
        return None
    mb = f.train_text_bytes / 2 ** 20
    return Finding("full-small-data", "method.name",
                   f"full fine-tuning on {mb:.2g} MB of training text (< 10 MB): every weight of the model moves on little "
                   "evidence, so it overfits this data and forgets what it knew; the guides keep full fine-tuning for "
                   "larger corpora",
                   f"在 {mb:.2g} MB 的训练文本上做全参数微调（< 10 MB）：模型的每个权重都只凭很少的证据改变，容易过拟合、遗忘原有能力；"
                   "各教程都建议数据更多时才做全参数微调",
                   "use method.name: lora (or qlora where memory is short): it trains ~1% of the weights and keeps the rest; "
                   "or collect more data",
                   "改用 method.name: lora（内存紧张时用 qlora）：只训练约 1% 的权重、其余保持不变；或收集更多数据")


@rule("many-epochs-small-data")
def many_epochs_small_data(cfg: Config, f: Facts):
    if f.n_train is None or f.n_train >= 1000:
        return None
    t = cfg.train
    if t.max_steps is not None:
        epochs = t.max_steps * effective_batch(cfg, f.nproc, f.n_train) / max(f.n_train, 1)
    elif t.num_epochs is not None:
        epochs = t.num_epochs
    else:
        from tunewise.config.plan import auto_epochs

        epochs = auto_epochs(math.ceil(f.n_train / effective_batch(cfg, f.nproc, f.n_train)), t.min_steps)
    has_val = (f.n_val or 0) > 0 if f.n_val is not None else (cfg.data.val_size > 0 or bool(cfg.data.val_datasets))
    if epochs > 5 and not (t.early_stopping and has_val):
        return Finding("many-epochs-small-data", "train.num_epochs",
                       f"{epochs:.3g} epochs over {f.n_train} examples without early stopping: the model will memorise the answers (overfitting)",
                       f"在 {f.n_train} 条样本上训练 {epochs:.3g} 轮且没有早停：模型会死记答案（过拟合）",
                       "use 2-3 epochs, or keep a validation set with train.early_stopping: true",
                       "改为 2-3 轮，或保留验证集并设置 train.early_stopping: true")


@rule("no-validation")
def no_validation(cfg: Config, f: Facts):
    none = f.n_val == 0 if f.n_val is not None else (cfg.data.val_size == 0 and not cfg.data.val_datasets)
    if none:
        return Finding("no-validation", "data.val_size",
                       "no validation set: no validation loss, no early stopping, and overfitting goes unseen",
                       "没有验证集：没有验证损失，不能早停，也看不出过拟合",
                       "set data.val_size: 0.1 (or give data.val_datasets)", "设置 data.val_size: 0.1（或提供 data.val_datasets）")


@rule("warmup-both")
def warmup_both(cfg: Config, f: Facts):
    t = cfg.train
    if f.explicit is not None:
        both = {"train.warmup_ratio", "train.warmup_steps"} <= f.explicit and t.warmup_steps > 0 and t.warmup_ratio > 0
    else:  # unknown which were written: a non-default ratio next to steps means both were meant
        both = t.warmup_steps > 0 and t.warmup_ratio != TrainConfig.model_fields["warmup_ratio"].default
    if both:
        return Finding("warmup-both", "train.warmup_steps",
                       f"both warmup_ratio ({t.warmup_ratio:g}) and warmup_steps ({t.warmup_steps}) are set: warmup_steps wins and the ratio is ignored",
                       f"同时设置了 warmup_ratio（{t.warmup_ratio:g}）和 warmup_steps（{t.warmup_steps}）：warmup_steps 生效，比例被忽略",
                       "keep one: remove warmup_steps (or set warmup_ratio: 0)", "只保留一个：删除 warmup_steps（或设置 warmup_ratio: 0）")


@rule("truncation")
def truncation(cfg: Config, f: Facts):
    if f.truncated_share is not None and f.truncated_share > 0.05:
        return Finding("truncation", "data.max_length",
                       f"data.max_length {cfg.data.max_length} truncates {100 * f.truncated_share:.1f}% of the training examples (> 5%): their answers lose the end and the stop token",
                       f"data.max_length {cfg.data.max_length} 截断了 {100 * f.truncated_share:.1f}% 的训练样本（> 5%）：回答丢掉结尾和停止符",
                       "raise data.max_length to the 99th percentile of lengths (`tunewise advise CONFIG` prints it)",
                       "把 data.max_length 提高到长度的第 99 百分位（`tunewise advise 配置` 会给出）")


@rule("effective-batch")
def effective_batch_rule(cfg: Config, f: Facts):
    eb = effective_batch(cfg, f.nproc, f.n_train)
    if eb < 4:
        return Finding("effective-batch", "train.gradient_accumulation_steps",
                       f"effective batch {eb} (< 4): every update follows a couple of examples, so the loss is noisy and training unstable",
                       f"有效批大小为 {eb}（< 4）：每次更新只看一两条样本，损失噪声大、训练不稳定",
                       "raise train.gradient_accumulation_steps so batch x accumulation x processes is 8-32",
                       "增大 train.gradient_accumulation_steps，使 批大小 × 累积 × 进程数 为 8-32")
    if f.n_train is not None and eb > f.n_train:
        return Finding("effective-batch", "train.gradient_accumulation_steps",
                       f"effective batch {eb} is larger than the training set ({f.n_train} examples): one optimizer step per epoch",
                       f"有效批大小 {eb} 大于训练集（{f.n_train} 条）：每轮只有一步优化",
                       "lower train.per_device_batch_size or train.gradient_accumulation_steps",
                       "减小 train.per_device_batch_size 或 train.gradient_accumulation_steps")


@rule("stop-token-unlabelled")
def stop_token_unlabelled(cfg: Config, f: Facts):
    if f.model_has_chat_template is False and f.stop_checked > 0 and f.stop_labelled == 0:
        stops = ", ".join(f.stop_strings) or "(none)"
        return Finding("stop-token-unlabelled", "template.name",
                       f"base model with template '{f.template_name}': none of {f.stop_checked} encoded examples has a label on a stop token ({stops}), so the model never learns to stop",
                       f"基座模型配模板“{f.template_name}”：{f.stop_checked} 条编码样本中没有一条在停止符（{stops}）上有标签，模型学不会停下",
                       "use template.name: auto (the family's template, whose end-of-turn token is in the vocabulary) or plain",
                       "使用 template.name: auto（家族模板，其轮次结束符在词表中）或 plain")


@rule("lora-alpha-ratio")
def lora_alpha_ratio(cfg: Config, f: Facts):
    m = cfg.method
    if not _facts(cfg).low_rank or m.use_rslora:
        return None
    ratio = m.lora_alpha / m.lora_r
    if ratio < 0.5 or ratio > 4:
        return Finding("lora-alpha-ratio", "method.lora_alpha",
                       f"lora_alpha/lora_r = {m.lora_alpha:g}/{m.lora_r} = {ratio:.3g} is unusual (outside 0.5-4): it acts like a {'much lower' if ratio < 0.5 else 'much higher'} learning rate",
                       f"lora_alpha/lora_r = {m.lora_alpha:g}/{m.lora_r} = {ratio:.3g} 不常见（不在 0.5-4 之间）：相当于学习率{'低很多' if ratio < 0.5 else '高很多'}",
                       f"set method.lora_alpha: {2 * m.lora_r} (2 x r)", f"设置 method.lora_alpha: {2 * m.lora_r}（2 × r）")


@rule("template-differs")
def template_differs(cfg: Config, f: Facts):
    if f.model_has_chat_template and f.template_matches_own is False:
        return Finding("template-differs", "template.name",
                       f"template '{f.template_name}' renders differently from the model's own chat template: the model must unlearn its format, and chat tools using the model's template will not match",
                       f"模板“{f.template_name}”与模型自带的对话模板渲染结果不同：模型要先忘掉原格式，使用模型自带模板的对话工具也对不上",
                       "use template.name: auto (the model's own template)", "使用 template.name: auto（模型自带模板）")
    if f.model_has_chat_template is False and f.family_template and f.template_name and f.template_name != f.family_template:
        return Finding("template-differs", "template.name",
                       f"template '{f.template_name}' differs from the one for this model family ('{f.family_template}'): its special tokens may be untrained in this model",
                       f"模板“{f.template_name}”与该模型家族的模板（“{f.family_template}”）不同：其特殊 token 在该模型中可能从未训练过",
                       f"use template.name: auto ('{f.family_template}') unless you have a reason", f"除非有理由，使用 template.name: auto（“{f.family_template}”）")


@rule("system-prompt-conflict")
def system_prompt_conflict(cfg: Config, f: Facts):
    c = f.system_choice
    if not c or c.get("reason") != "replaced":
        return None
    names = ", ".join(c.get("names") or ())
    return Finding("system-prompt-conflict", "template.system",
                   f"the chat template writes its default system prompt \"{c['builtin']}\" into every conversation without one, "
                   f"but {c['identity_answers']} answers in the data state an identity and only {c['naming_builtin']} name {names}: "
                   f"training against it would pull the model two ways, so this run uses \"{c['system']}\" in training, chat, eval and export",
                   f"聊天模板会把默认系统提示词“{c['builtin']}”写进每个没有系统提示的对话，但数据中有 {c['identity_answers']} 个回答陈述了身份，"
                   f"只有 {c['naming_builtin']} 个提到 {names}：照此训练会让模型左右为难，因此本次训练、对话、评估和导出改用“{c['system']}”",
                   "set template.system to the system prompt you want the model to live with (it then applies everywhere)",
                   "用 template.system 指定你希望模型使用的系统提示词（训练、对话、导出都会用它）")


@rule("ignored-setting")
def ignored_setting(cfg: Config, f: Facts):
    """Each setting the user wrote (or changed from its default) that has no effect in this config (advise/effect.py)."""
    from tunewise.advise.effect import ignored

    return [Finding("ignored-setting", x.key, x.en, x.zh, x.fix_en, x.fix_zh) for x in ignored(cfg, f.explicit)]


def text_bytes(records) -> int:
    """UTF-8 size of the text in the records (every turn, or the raw text)."""
    n = 0
    for r in records:
        parts = [m["content"] for m in r["messages"]] if "messages" in r else [r.get("text", "")]
        n += sum(len(str(x).encode("utf-8")) for x in parts)
    return n


def system_facts(cfg: Config, template, records: list[dict]) -> dict:
    """The system-prompt decision (templates.system) as a lint fact."""
    from dataclasses import asdict

    from tunewise.templates.system import choose_system

    if cfg.train.stage != "sft":
        return {}
    return {"system_choice": asdict(choose_system(cfg.template.system, template.builtin_system, records))}


def lint(cfg: Config, facts: Facts | None = None) -> list[Finding]:
    facts = facts or Facts()
    out = []
    for fn in RULES.values():
        r = fn(cfg, facts)
        if isinstance(r, list):
            out.extend(r)
        elif r is not None:
            out.append(r)
    return out


# ------------------------------------------------------------------------------------------- facts
def stop_label_check(tokenizer, template, records: list[dict], *, max_length: int, train_on_prompt: bool = False,
                     limit: int = 64) -> tuple[int, int]:
    """(examples checked, examples whose labels include a stop token), with the real encoding."""
    from tunewise.templates.encode import IGNORE, encode_messages

    stops = set(template.stop_token_ids)
    checked = labelled = 0
    for rec in records[:limit]:
        if "messages" not in rec:
            continue
        e = encode_messages(tokenizer, template, rec["messages"], max_length=max_length, train_on_prompt=train_on_prompt,
                            tools=rec.get("tools"))
        if e.truncated_tokens:
            continue  # a cut-off answer loses its stop token for another reason (see the truncation rule)
        checked += 1
        labelled += any(x != IGNORE and x in stops for x in e.labels)
    return checked, labelled


def template_facts(cfg: Config, tokenizer, template, model_type: str | None) -> dict:
    """Whether the model has its own template, what `auto` would pick, and whether ours renders like it."""
    from tunewise.templates import ChatTemplate, choose_template

    own = bool(getattr(tokenizer, "chat_template", None))
    out = {"model_has_chat_template": own, "template_name": template.name}
    if own:
        if template.source == "tokenizer":
            out["template_matches_own"] = True
        else:
            probe = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."},
                     {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
            try:
                mine = template.render(probe)
                theirs = ChatTemplate.from_tokenizer(tokenizer).render(probe)
                out["template_matches_own"] = mine == theirs
            except Exception:  # an exotic own template that cannot render the probe: do not guess
                out["template_matches_own"] = None
    elif model_type:  # unknown family: no basis to call the template foreign
        out["family_template"] = choose_template("auto", tokenizer, model_type).name
    return out


def lint_before_training(cfg: Config, tokenizer, template, prepared, enc_stats: dict | None = None, *,
                         model_type: str | None = None, world: int = 1, strict: bool = False, lang: str = "en",
                         say: Callable[[str], None] | None = None) -> list[Finding]:
    """Run the lint with what training already has in hand; print warnings; raise in strict mode.

    `prepared` is data.prepare's result, `enc_stats` the stats from train.data.encode_for_training
    (its "train" entry gives the truncation share without encoding twice).
    """
    say = say or (lambda s: print(s, file=sys.stderr, flush=True))
    trunc = None
    tr = (enc_stats or {}).get("train") or {}
    if tr.get("examples"):
        trunc = tr.get("truncated_examples", 0) / tr["examples"]
    checked, labelled = (0, 0)
    if cfg.train.stage == "sft":
        checked, labelled = stop_label_check(tokenizer, template, prepared.train, max_length=cfg.data.max_length,
                                             train_on_prompt=cfg.data.train_on_prompt)
    mean_sup = tr["supervised_tokens"] / tr["examples"] if tr.get("examples") and "supervised_tokens" in tr else None
    facts = Facts(n_train=len(prepared.train), n_val=len(prepared.val), truncated_share=trunc,
                  stop_checked=checked, stop_labelled=labelled, stop_strings=tuple(template.stop_strings), nproc=world,
                  model_type=model_type, mean_supervised=mean_sup, train_text_bytes=text_bytes(prepared.train),
                  **template_facts(cfg, tokenizer, template, model_type), **system_facts(cfg, template, prepared.train))
    found = lint(cfg, facts)
    for x in found:
        say("[tunewise] " + x.render(lang))
    refused = [x for x in found if x.severity != "note"]  # notes explain a choice: they never refuse
    if strict and refused:
        raise ConfigError(f"{len(refused)} lint finding(s) in strict mode: " + ", ".join(x.code for x in refused),
                          where="tunewise lint", fix="fix the findings above, or run without --strict")
    return found


def gather_facts(cfg: Config, *, nproc: int = 1, explicit: frozenset[str] | None = None):
    """Load the tokenizer, template and data as training would, and encode them untruncated.

    Returns (facts, extras): extras carries what `advise` reuses (tokenizer, template, prepared data,
    resolved model, model type, untruncated lengths and supervised-token counts of the training examples).
    """
    from transformers import AutoConfig

    from tunewise.config.schema import PREFERENCE_STAGES
    from tunewise.data.prepare import prepare
    from tunewise.templates.encode import IGNORE, encode_messages, encode_pretrain
    from tunewise.models.load import tokenizer_and_template

    from tunewise.templates.system import settle_system

    resolved, tok, tpl = tokenizer_and_template(cfg)
    model_type = AutoConfig.from_pretrained(resolved.path, trust_remote_code=cfg.model.trust_remote_code).model_type
    prepared = prepare(cfg, None)
    conversational = cfg.train.stage != "pretrain"  # sft and the preference stages
    if conversational:
        settle_system(tpl, cfg.template.system, prepared.train)  # lengths as training will see them
    lengths, supervised = [], []
    if cfg.train.stage in PREFERENCE_STAGES:
        from tunewise.templates.encode import encode_preference

        enc, _ = encode_preference(tok, tpl, prepared.train, stage=cfg.train.stage, max_length=10 ** 9)
        for e in enc:  # a pair counts as its longer answer's row (both are in the batch)
            rows = [e[k] for k in ("chosen", "rejected", "answer") if k in e]
            lengths.append(max(len(r.input_ids) for r in rows))
            supervised.append(max(sum(1 for x in r.labels if x != IGNORE) for r in rows))
    elif conversational:
        for rec in prepared.train:
            if "messages" not in rec:
                continue
            e = encode_messages(tok, tpl, rec["messages"], max_length=10 ** 9, train_on_prompt=cfg.data.train_on_prompt,
                                tools=rec.get("tools"))
            lengths.append(len(e.input_ids))
            supervised.append(sum(1 for x in e.labels if x != IGNORE))
    else:
        blocks, _ = encode_pretrain(tok, prepared.train, block_size=cfg.data.max_length)
        lengths = [len(b.input_ids) for b in blocks]
        supervised = list(lengths)
    trunc = (sum(1 for n in lengths if n > cfg.data.max_length) / len(lengths)) if lengths else None
    checked, labelled = (0, 0)
    if cfg.train.stage == "sft":
        checked, labelled = stop_label_check(tok, tpl, prepared.train, max_length=cfg.data.max_length,
                                             train_on_prompt=cfg.data.train_on_prompt)
    facts = Facts(n_train=len(prepared.train), n_val=len(prepared.val), truncated_share=trunc, stop_checked=checked,
                  stop_labelled=labelled, stop_strings=tuple(tpl.stop_strings), nproc=nproc, explicit=explicit,
                  model_type=model_type, mean_supervised=(sum(supervised) / len(supervised)) if supervised else None,
                  train_text_bytes=text_bytes(prepared.train),
                  **template_facts(cfg, tok, tpl, model_type), **system_facts(cfg, tpl, prepared.train))
    extras = {"resolved": resolved, "tokenizer": tok, "template": tpl, "prepared": prepared, "model_type": model_type,
              "lengths": lengths, "supervised": supervised}
    return facts, extras


def explicit_keys(path, overrides: list[str] | None = None) -> frozenset[str]:
    """Dotted keys the user wrote in the file or with --set (to tell 'set' from 'left at the default')."""
    from tunewise.config.load import parse_overrides, read_yaml
    from pathlib import Path

    out: set[str] = set()

    def walk(d: dict, prefix: str):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.add(key)
            if isinstance(v, dict):
                walk(v, key)

    walk(read_yaml(Path(path)), "")
    out.update(k for k, _ in parse_overrides(overrides))
    return frozenset(out)
