"""`tunewise advise CONFIG`: memory per method, and the settings that fit this machine and this data.

`recommend` is pure: model facts, data facts and hardware in, a plain dict out (the web UI reads its
JSON). It runs the named recommenders (`@recommender`, registered like the lint's rules) in order over one
shared `Advice`. `advise_config` gathers those facts for a config; `apply_advice` writes a config with the
advice filled in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from tunewise.train import memory as mem
from tunewise.hardware import Hardware
from tunewise.advise.lint import Facts, lint
from tunewise.advise.lr import advise_lr
from tunewise.models.facts import ModelFacts
from tunewise.config.methods import FACTS
from tunewise.config.schema import PREFERENCE_STAGES, Config
from tunewise.errors import ConfigError

TARGET_BATCH = 16
# On a CPU a training step of about this many tokens already runs the model's matmuls at full speed: larger
# per-device batches only add memory (and, packed, longer attention rows), so they are not faster (measured:
# bench/RESULTS.md, "Batch size on this CPU"). Gradient accumulation makes up the effective batch instead.
CPU_STEP_TOKENS = 512


def percentile(sorted_vals: list[int], q: float) -> int:
    if not sorted_vals:
        return 0
    return sorted_vals[min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1)]


def _round_up(n: int, k: int) -> int:
    return max(k, (n + k - 1) // k * k)


def _pow2_floor(n: int) -> int:
    return 1 << max(0, int(math.log2(max(1, n))))


def target_batch(n_train: int, min_steps: int = 60) -> int:
    """Effective batch to aim for: 16, smaller for tiny datasets (at least ~8 steps per epoch), and 4 for data too
    small to give min_steps optimizer steps in 3 passes at 8 (the training default does the same)."""
    from tunewise.config.plan import short_of_steps

    if short_of_steps(n_train, 8, min_steps):
        return 4
    return min(TARGET_BATCH, max(4, _pow2_floor(n_train // 8)))


@dataclass
class Advice:
    """What the recommenders share: the inputs, the memory table, and the advice so far (`rec`, `why`)."""
    cfg: Config
    model: ModelFacts
    hw: Hardware
    nproc: int
    n_train: int
    lengths: list[int]                  # sorted token lengths of the training examples
    mean_sup: float                     # mean supervised tokens per example
    sup_share: float                    # supervised share of all tokens
    precision: str
    wdtype: str
    max_len: int                        # the advised data.max_length (p99 rounded up)
    mp: mem.MethodParams
    eff_target: int                     # the effective batch to aim for
    per_dev_target: int
    memory: dict = field(default_factory=dict)   # per method: the estimate as configured and the fitted plan
    plans: dict = field(default_factory=dict)    # per method: (batch, gradient checkpointing, estimate) or None
    rec: dict = field(default_factory=dict)      # config key -> advised value
    why: dict[str, tuple[str, str]] = field(default_factory=dict)  # config key -> (en, zh)
    method: str = "lora"
    batch: tuple | None = None          # (per-device batch, gradient checkpointing, estimate) of the chosen method
    eff: int = 0                        # the advised effective batch
    speed: list[dict] | None = None     # measured training speed per batch size (advise/measure.measure_speed rows)

    def shape(self, batch: int, seq_cap: int, gc: bool, facts: ModelFacts | None = None) -> mem.Shape:
        """facts: another model's (advise/largest.py's sizes), whose checkpoint dtype decides the frozen dtype."""
        t, longest = self.cfg.train, (self.lengths[-1] if self.lengths else self.cfg.data.max_length)
        return mem.Shape.from_config(self.cfg, batch=batch, seq=max(1, min(seq_cap, longest)),
                                     supervised_share=self.sup_share, gradient_checkpointing=gc,
                                     precision=self.precision, weight_dtype=self.wdtype,
                                     frozen_dtype=resolved_frozen(t.frozen_dtype, self.precision, facts or self.model),
                                     nproc=self.nproc)

    def say(self, key: str, value, en: str, zh: str) -> None:
        self.rec[key] = value
        self.why[key] = (en, zh)


def resolved_frozen(configured: str, precision: str, model: ModelFacts) -> str:
    """train.frozen_dtype after 'auto' for an adapter method (the estimate narrows only those) on this model's
    checkpoint."""
    from tunewise.train.precision import frozen_dtype

    return frozen_dtype(configured, precision, adapter=True, stored=model.source_dtype)


Recommender = Callable[[Advice], None]
RECOMMENDERS: dict[str, Recommender] = {}  # run in the order they are registered: later ones read earlier advice


def recommender(name: str):
    """Register a named recommender (like the lint's rules): it reads the Advice and adds keys with reasons."""
    def deco(fn: Recommender) -> Recommender:
        RECOMMENDERS[name] = fn
        return fn

    return deco


def recommend(cfg: Config, model: ModelFacts, hw: Hardware, *, lengths: list[int], supervised: list[int],
              facts: Facts | None = None, nproc: int = 1, speed: list[dict] | None = None,
              family: str | None = None, budgets: list[float] | None = None) -> dict:
    """All advice for one config on one machine (pure): the memory table, then each recommender in turn.

    speed: training tokens/s measured here per per-device batch size (`tunewise advise --measure`); without it
    the batch size on a CPU follows CPU_STEP_TOKENS. family (a key of sizes.yaml): add the largest model of that
    family each method fits here and in each of `budgets` GiB (advise/largest.py)."""
    facts = facts or Facts(n_train=len(lengths), nproc=nproc)
    if nproc > 1 and hw.cuda and nproc > len(hw.gpus):
        raise ConfigError(f"--nproc {nproc} but this machine has {len(hw.gpus)} GPU(s)", where="--nproc",
                          fix=f"use --nproc {len(hw.gpus)} or fewer")
    n_train, srt = len(lengths), sorted(lengths)
    p99 = percentile(srt, 0.99)
    precision, wdtype = mem.resolved_dtypes(cfg.train.precision, cfg.model.dtype, hw, model, nproc)
    step = 8 if p99 < 256 else 64
    max_len = min(_round_up(p99, step), model.context_length or 10 ** 9) if srt else cfg.data.max_length
    eff_target = target_batch(n_train, cfg.train.min_steps) if n_train else TARGET_BATCH
    a = Advice(cfg, model, hw, nproc, n_train, srt,
               mean_sup=sum(supervised) / len(supervised) if supervised else 0.0,
               sup_share=(sum(supervised) / sum(lengths)) if lengths and sum(lengths) else 0.5,
               precision=precision, wdtype=wdtype, max_len=max_len, mp=mem.MethodParams.from_config(cfg.method),
               eff_target=eff_target, per_dev_target=max(1, math.ceil(eff_target / nproc)), speed=speed)
    _memory_table(a)
    for fn in RECOMMENDERS.values():
        fn(a)
    longest = srt[-1] if srt else cfg.data.max_length
    data = {"n_train": n_train, "p50": percentile(srt, 0.5), "p95": percentile(srt, 0.95), "p99": p99, "longest": longest,
            "mean_supervised_tokens": round(a.mean_sup, 1), "supervised_share": round(a.sup_share, 3)}
    sizes = None
    if family is not None:
        from tunewise.advise.largest import table

        sizes = table(family, hw, list(budgets or []), lambda f, b: a.shape(b, a.max_len, False, f), a.mp,
                      a.per_dev_target)
    return {"hardware": {**hw.to_dict(), "nproc": nproc, "precision": precision, "weight_dtype": wdtype},
            "model": model.to_dict(), "data": data, "memory": a.memory, "largest": sizes, "speed": speed,
            "recommendations": a.rec,
            "reasons": {k: {"en": v[0], "zh": v[1]} for k, v in a.why.items()},
            "lint": lint(cfg, replace(facts, nproc=nproc))}


def _memory_table(a: Advice) -> None:
    """Every method's estimate as configured, and the largest batch up to the target that fits it."""
    t, longest = a.cfg.train, (a.lengths[-1] if a.lengths else a.cfg.data.max_length)
    for m in mem.METHODS:
        gc = t.gradient_checkpointing
        configured = a.shape(t.per_device_batch_size, a.cfg.data.max_length, gc is True)
        if gc == "auto":  # as training resolves it (train/assemble.checkpointing_choice)
            gc, _without, current = mem.auto_checkpointing(a.model, m, a.mp, configured, a.hw)
        else:
            current = mem.estimate(a.model, m, a.mp, configured, a.hw)
        plan = mem.fit_batch(a.model, m, a.mp, a.shape(a.per_dev_target, a.max_len, False), a.hw, a.per_dev_target)
        a.plans[m] = plan
        a.memory[m] = {**current.to_dict(), "as_configured": {"batch": t.per_device_batch_size,
                                                              "seq": min(a.cfg.data.max_length, longest),
                                                              "gradient_checkpointing": gc},
                       "fits_as_configured": current.fits,
                       "fitted": None if plan is None else {"per_device_batch_size": plan[0],
                                                            "gradient_checkpointing": plan[1],
                                                            "total_gib": round(plan[2].needed / mem.GiB, 3)}}


@recommender("method")
def _method(a: Advice) -> None:
    """The configured method when it fits; else the first that does: low-rank (a quantised base only on a GPU),
    then virtual tokens, fewest parameters first."""
    method = a.cfg.method.name if a.cfg.method.name in mem.METHODS else "lora"
    budget = mem.fmt_bytes(a.memory[method]["budget"])
    if a.plans.get(method) is None:
        virtual = [n for n, f in FACTS.items() if f.virtual_tokens]
        order = [n for n, f in FACTS.items() if f.low_rank and (a.hw.cuda or not f.quantised_base)] \
            + sorted(virtual, key=lambda n: mem.trainable_params(a.model, n, a.mp))
        alt = next((m for m in order if a.plans.get(m) is not None), None)
        if alt is None:
            need = mem.estimate(a.model, "lora", a.mp, a.shape(1, a.max_len, True), a.hw).needed
            raise ConfigError(
                f"no tuning method fits: even LoRA with batch 1 and gradient checkpointing needs {mem.fmt_bytes(need)}, "
                f"more than this machine's {mem.fmt_bytes(a.memory['lora']['budget'])}",
                where="model.name_or_path", fix="choose a smaller model, or a machine with more memory")
        a.say("method.name", alt, f"{alt}: {method} does not fit in {budget} even with batch 1 and gradient checkpointing; {alt} does",
              f"{alt}：{method} 即使批大小为 1 并开启梯度检查点也放不进 {budget}；{alt} 可以")
    else:
        e = a.plans[method][2]
        a.say("method.name", method, f"{method}: fits ({mem.fmt_bytes(e.needed)} of {mem.fmt_bytes(e.budget)} per process)",
              f"{method}：放得下（每进程 {mem.fmt_bytes(e.needed)} / {mem.fmt_bytes(e.budget)}）")
    a.method = a.rec["method.name"]


def _fastest_batch(a: Advice, largest: int) -> tuple[int, str, str]:
    """The per-device batch to advise among powers of two up to `largest` (the largest that fits), and why.

    Measured speeds (--measure) decide when there are any: the fastest, or the smallest within 3% of it (less
    memory for the same speed). Otherwise on a GPU the largest that fits (its throughput grows with the batch);
    on a CPU the largest whose step stays near CPU_STEP_TOKENS tokens, since more tokens per step are no faster.
    """
    rows = sorted((r for r in a.speed or () if r["batch"] <= largest), key=lambda r: r["batch"])
    if rows:
        best = max(r["tokens_per_s"] for r in rows)
        pick = next(r for r in rows if r["tokens_per_s"] >= 0.97 * best)
        table = ", ".join(f"{r['batch']}: {r['tokens_per_s']:.0f}" for r in rows)
        more = " (larger batches fit but ran slower or no faster)" if pick["batch"] < largest else ""
        return (pick["batch"], f"{pick['batch']}: the fastest measured on this machine (tokens/s by batch: {table}){more}",
                f"{pick['batch']}：本机实测最快（各批大小的 tokens/s：{table}）{'（更大的批放得下，但不更快）' if more else ''}")
    if a.hw.cuda:
        return (largest, f"{largest}: the largest power of two up to {a.per_dev_target} that fits (a GPU runs larger batches faster)",
                f"{largest}：不超过 {a.per_dev_target} 且放得下的最大 2 的幂（GPU 上批越大越快）")
    mean = sum(a.lengths) / len(a.lengths) if a.lengths else a.max_len
    b = min(largest, _pow2_floor(max(1, int(CPU_STEP_TOKENS // max(mean, 1)))))
    more = f"; {largest} would fit but is not faster here" if b < largest else ""
    return (b, f"{b}: on a CPU a step of about {CPU_STEP_TOKENS} tokens already runs the matmuls at full speed "
               f"(examples average {mean:.0f} tokens){more}; `tunewise advise --measure` times the batch sizes on this machine",
            f"{b}：CPU 上每步约 {CPU_STEP_TOKENS} 个 token 时矩阵乘已满速（样本平均 {mean:.0f} 个 token）"
            f"{f'；{largest} 也放得下，但在这里不会更快' if b < largest else ''}；`tunewise advise --measure` 会在本机实测各批大小")


@recommender("batch")
def _batch(a: Advice) -> None:
    """The fastest power-of-two batch that fits (measured, or the CPU rule), without gradient checkpointing when a
    bf16 frozen base makes that possible; gradient accumulation up to the effective batch."""
    method, t = a.method, a.cfg.train
    b, gc, est = a.plans[method]
    frozen = resolved_frozen(t.frozen_dtype, a.precision, a.model)
    if gc and FACTS[method].adapter_like and a.wdtype == "float32" and frozen == "float32":
        # A bf16 frozen base costs ~10% of speed on CPUs; recomputing activations 15-40% (measured: ~40% at 270M,
        # 14% at 1.5B): narrow first.
        narrow = mem.fit_batch(a.model, method, a.mp, replace(a.shape(a.per_dev_target, a.max_len, False), frozen_dtype="bfloat16"),
                               a.hw, a.per_dev_target)
        if narrow is not None and not narrow[1]:
            (b, gc, est), frozen = narrow, "bfloat16"
            a.say("train.frozen_dtype", "bfloat16",
                  "bfloat16: with the frozen base in bf16 the run fits without gradient checkpointing "
                  "(about 10% slower on this kind of CPU, against 15-40% for checkpointing)",
                  "bfloat16：冻结基座用 bf16 就不必开梯度检查点也放得下（这类 CPU 上约慢 10%，梯度检查点慢 15-40%）")
    fastest, why_en, why_zh = _fastest_batch(a, b)
    if fastest != b:
        b, est = fastest, mem.estimate(a.model, method, a.mp, replace(a.shape(fastest, a.max_len, gc),
                                                                      frozen_dtype=frozen), a.hw)
    needed = gc
    auto, _without, checkpointed = (False, est, est) if gc else \
        mem.auto_checkpointing(a.model, method, a.mp, replace(a.shape(b, a.max_len, False), frozen_dtype=frozen), a.hw)
    if gc:
        gc_en, gc_zh = "on: needed to fit", "开启：不开放不下"
    elif auto:  # what train.gradient_checkpointing: auto does
        need, budget = mem.fmt_bytes(est.training), mem.fmt_bytes(est.budget)
        gc, est = True, checkpointed
        gc_en = (f"on: without it the run is estimated at {need} of {budget} per process, more than half (with it "
                 f"{mem.fmt_bytes(est.training)}; 1.15-1.3x the time measured at Qwen2.5-1.5B LoRA on a CPU); "
                 f"train.gradient_checkpointing: auto does the same")
        gc_zh = (f"开启：不开时估计每进程 {need} / {budget}，超过一半（开启后 {mem.fmt_bytes(est.training)}；CPU 上 "
                 f"Qwen2.5-1.5B LoRA 实测用时 1.15-1.3 倍）；train.gradient_checkpointing: auto 也会这样选")
    else:
        gc_en, gc_zh = "off: fits without recomputing activations (faster)", "关闭：不重算激活也放得下（更快）"
    accum = max(1, math.ceil(a.eff_target / (b * a.nproc)))
    a.batch, a.eff = (b, gc, est), b * accum * a.nproc
    procs = f" x {a.nproc} processes" if a.nproc > 1 else ""
    a.say("train.per_device_batch_size", b,
          f"{why_en} ({mem.fmt_bytes(est.needed)} per process{', with gradient checkpointing' if gc else ''})",
          f"{why_zh}（每进程 {mem.fmt_bytes(est.needed)}{'，开启梯度检查点' if gc else ''}）")
    a.say("train.gradient_accumulation_steps", accum,
          f"{accum}: effective batch {b} x {accum}{procs} = {a.eff} (target {a.eff_target} for {a.n_train} examples)",
          f"{accum}：有效批 {b} × {accum}{procs.replace(' processes', ' 个进程')} = {a.eff}（{a.n_train} 条样本的目标为 {a.eff_target}）")
    if t.gradient_checkpointing == "auto" and not needed:  # auto already does this here: advise keeps it
        a.say("train.gradient_checkpointing", "auto", f"auto, here {gc_en}", f"auto，此处{gc_zh}")
    else:
        a.say("train.gradient_checkpointing", gc, gc_en, gc_zh)


def padding_share(lengths: list[int], batch: int, seed: int = 0) -> float:
    """The share of a padded batch's positions that are padding, for these example lengths in a random order."""
    import random

    order = list(lengths)
    random.Random(seed).shuffle(order)
    pad = real = 0
    for i in range(0, len(order), max(1, batch)):
        chunk = order[i:i + batch]
        real += sum(chunk)
        pad += len(chunk) * max(chunk) - sum(chunk)
    return pad / (pad + real) if real else 0.0


@recommender("packing")
def _packing(a: Advice) -> None:
    """auto (packed batches) wherever the stage and method can take them: no padding, the same steps and loss."""
    from tunewise.config.plan import packs

    t = a.cfg.train
    auto = a.cfg.model_copy(update={"train": t.model_copy(update={"packing": "auto", "group_by_length": False})})
    if not packs(auto):
        if t.stage in PREFERENCE_STAGES:
            why = (f"a {t.stage} stage scores chosen and rejected answers row by row", f"{t.stage} 阶段逐行给选中/拒绝回答打分")
        else:
            why = (f"{a.cfg.method.name} tuning puts virtual tokens before every example", f"{a.cfg.method.name} 微调在每个样本前放虚拟 token")
        a.say("train.packing", False, f"false: {why[0]}, so examples cannot share a row", f"false：{why[1]}，样本不能拼在一行")
        return
    b = a.batch[0] if a.batch else t.per_device_batch_size
    pad = padding_share(a.lengths, b)
    gbl = (" Remove train.group_by_length: it turns packing off.", "请去掉 train.group_by_length：它会关闭打包。") if t.group_by_length else ("", "")
    a.say("train.packing", "auto",
          f"auto (packed): padded batches of {b} would be {pad:.0%} padding on these lengths; a packed row computes "
          f"none, with the same optimizer steps and loss (training checks that the model attends within examples "
          f"before it packs; measured 1.32x as fast as padding at batch 4 on realistic instruction data, bench/RESULTS.md).{gbl[0]}",
          f"auto（打包）：按 {b} 条一批补齐时，这些长度下 {pad:.0%} 是填充；打包成一行则没有填充，优化步数与损失不变"
          f"（训练开始前会检查模型只在样本内部做注意力；真实指令数据上批 4 时实测为补齐的 1.32 倍速度，见 bench/RESULTS.md）。{gbl[1]}")


@recommender("max_length")
def _max_length(a: Advice) -> None:
    srt = a.lengths
    p95, p99, longest = percentile(srt, 0.95), percentile(srt, 0.99), (srt[-1] if srt else a.cfg.data.max_length)
    step = 8 if p99 < 256 else 64
    a.say("data.max_length", a.max_len,
          f"{a.max_len}: token lengths p95 {p95}, p99 {p99}, longest {longest}; p99 rounded up to a multiple of {step}",
          f"{a.max_len}：token 长度 p95 {p95}，p99 {p99}，最长 {longest}；p99 向上取整到 {step} 的倍数")


@recommender("learning_rate")
def _learning_rate(a: Advice) -> None:
    lr = advise_lr(a.method, a.model.model_type, a.eff * a.mean_sup, stage=a.cfg.train.stage)
    a.say("train.learning_rate", lr.value, lr.en + f" (supervised tokens per step: {a.eff} x {a.mean_sup:.1f})",
          lr.zh + f"（每步监督 token 数：{a.eff} × {a.mean_sup:.1f}）")


@recommender("lora_rank")
def _lora_rank(a: Advice) -> None:
    if not FACTS[a.method].low_rank:
        return
    n = a.n_train
    r = 8 if n < 1000 else 16 if n < 10000 else 32
    a.say("method.lora_r", r, f"{r}: {n} examples ({'< 1000' if n < 1000 else '< 10000' if n < 10000 else '>= 10000'}); more data can use more rank",
          f"{r}：{n} 条样本；数据越多可用的秩越大")
    a.say("method.lora_alpha", 2 * r, f"{2 * r}: alpha = 2r, the usual start", f"{2 * r}：alpha = 2r，常用起点")


@recommender("epochs")
def _epochs(a: Advice) -> None:
    from tunewise.config.plan import auto_epochs

    n, eff, min_steps = a.n_train, a.eff, a.cfg.train.min_steps
    per_epoch = max(1, math.ceil(n / eff))
    if a.cfg.train.stage in PREFERENCE_STAGES:
        epochs = 1 if n >= 10000 else 2 if n >= 1000 else 3
        a.say("train.num_epochs", epochs,
              f"{epochs}: {n} preference examples ({per_epoch * epochs} steps); preference data is learned in a few "
              "passes, and more make the training pairs separate perfectly while held-out ones do not (the curves "
              "call it preference_overfit)",
              f"{epochs}：{n} 条偏好样本（共 {per_epoch * epochs} 步）；偏好数据几轮就能学会，轮数再多会让训练集的回答对"
              "被完全分开而留出集并不会（曲线诊断称为 preference_overfit）")
    elif n < 1000:
        epochs = auto_epochs(per_epoch, min_steps)
        a.say("train.num_epochs", epochs,
              f"{epochs}: {n} examples give {per_epoch} steps a pass at batch {eff}; {epochs} passes make "
              f"{per_epoch * epochs} steps (at least train.min_steps={min_steps}, at most 10 passes), because a few dozen "
              "steps teach neither the content nor the end-of-turn token; early stopping guards against overfitting",
              f"{epochs}：{n} 条样本在批大小 {eff} 下每轮 {per_epoch} 步；{epochs} 轮共 {per_epoch * epochs} 步"
              f"（至少 train.min_steps={min_steps} 步，最多 10 轮），因为几十步既学不会内容也学不会结束符；早停防止过拟合")
    else:
        epochs = 2 if n < 10000 else 1
        a.say("train.num_epochs", epochs, f"{epochs}: {n} examples ({per_epoch * epochs} steps)",
              f"{epochs}：{n} 条样本（共 {per_epoch * epochs} 步）")


@recommender("warmup")
def _warmup(a: Advice) -> None:
    total_steps = max(1, math.ceil(a.n_train / a.eff)) * a.rec["train.num_epochs"]
    wr = round(min(0.1, max(0.03, 10 / total_steps)), 2)
    a.say("train.warmup_ratio", wr,
          f"{wr}: about {max(1, round(wr * total_steps))} of {total_steps} steps (3-10%, at least ~10 steps when the run allows)",
          f"{wr}：{total_steps} 步中约 {max(1, round(wr * total_steps))} 步（3-10%，条件允许时至少约 10 步）")
    if a.cfg.train.warmup_steps > 0:
        a.say("train.warmup_steps", 0, "0: so warmup_ratio applies", "0：让 warmup_ratio 生效")


def advise_config(cfg: Config, hw: Hardware, *, nproc: int = 1, explicit: frozenset[str] | None = None,
                  measure: Callable[[Config, list[int]], list[dict]] | None = None,
                  budgets: list[float] | None = None, family: str | None = None) -> dict:
    """Gather the model and data facts for `cfg` and recommend.

    measure: times training at the given per-device batch sizes (advise/measure.measure_speed rows); when given,
    the batch sizes that fit the chosen method are measured and the fastest is advised. budgets: GiB sizes for the
    table of the largest model of the family each method fits (the configured model's family, or `family`)."""
    from tunewise.advise.largest import family_of
    from tunewise.advise.lint import gather_facts
    from tunewise.models.facts import model_facts

    facts, x = gather_facts(cfg, nproc=nproc, explicit=explicit)
    model = model_facts(x["resolved"].path, cfg.model.trust_remote_code, has_chat_template=bool(x["tokenizer"].chat_template))
    family = family or family_of(cfg.model.name_or_path, getattr(x["resolved"], "alias", None), str(x["resolved"].path))
    kw = dict(lengths=x["lengths"], supervised=x["supervised"], facts=facts, nproc=nproc, family=family, budgets=budgets)
    result = recommend(cfg, model, hw, **kw)
    if measure is None or hw.cuda:  # a GPU's throughput grows with the batch: the largest that fits stays
        return result
    rec = result["recommendations"]
    fitted = result["memory"][rec["method.name"]]["fitted"]
    largest = fitted["per_device_batch_size"] if fitted else 1
    candidates = [1 << i for i in range(int(math.log2(largest)) + 1)]
    measured_cfg = cfg.model_copy(update={
        "method": cfg.method.model_copy(update={"name": rec["method.name"]}),
        "data": cfg.data.model_copy(update={"max_length": rec["data.max_length"]}),
        "train": cfg.train.model_copy(update={"gradient_checkpointing": rec["train.gradient_checkpointing"],
                                              "frozen_dtype": rec.get("train.frozen_dtype", cfg.train.frozen_dtype)})})
    return recommend(cfg, model, hw, **kw, speed=measure(measured_cfg, candidates))


def to_json(result: dict, lang: str = "en") -> dict:
    """The shape the web UI reads: hardware, memory, recommendations, reasons, lint."""
    return {"hardware": result["hardware"], "model": result["model"], "data": result["data"], "memory": result["memory"],
            "largest": result.get("largest"), "speed": result.get("speed"), "recommendations": result["recommendations"],
            "reasons": {k: v[lang] for k, v in result["reasons"].items()},
            "lint": [f.to_dict(lang) for f in result["lint"]]}


def apply_advice(config_path: str | Path, recommendations: dict, out: str | Path) -> Path:
    """Write the user's config with the recommendations filled in (atomically); it must load."""
    import yaml

    from tunewise.config import load_config
    from tunewise.config.load import read_yaml, set_dotted
    from tunewise.fileio import write_text

    src, out = Path(config_path), Path(out)
    raw = read_yaml(src)
    if out.resolve().parent != src.resolve().parent:
        # relative dataset paths were relative to the original config: make them absolute
        cfg = load_config(src)
        resolved = cfg.model_dump(mode="json")
        data = raw.setdefault("data", {})
        for key in ("datasets", "val_datasets", "general"):
            if data.get(key):
                data[key] = [{k: v for k, v in d.items() if v not in (None, {}, [])} for d in resolved["data"][key]]
        if data.get("dataset_info"):
            data["dataset_info"] = resolved["data"]["dataset_info"]
        mp = resolved["model"]["name_or_path"]
        if Path(mp).exists():
            raw.setdefault("model", {})["name_or_path"] = mp
    raw.setdefault("run", {}).setdefault("name", src.stem)
    for k, v in recommendations.items():
        set_dotted(raw, k, v, str(out))
    text = "# written by `tunewise advise --apply`\n" + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    write_text(out, text)
    try:
        load_config(out)
    except ConfigError:
        out.unlink(missing_ok=True)
        raise
    return out
