"""`tunewise advise CONFIG`: memory per method, and the settings that fit this machine and this data.

`recommend` is pure: model facts, data facts and hardware in, a plain dict out (the web UI reads its
JSON). `advise_config` gathers those facts for a config; `apply_advice` writes a config with the
advice filled in.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from tunewise.advise import memory as mem
from tunewise.advise.hardware import Hardware
from tunewise.advise.lint import Facts, lint
from tunewise.advise.lr import advise_lr
from tunewise.advise.modelfacts import ModelFacts
from tunewise.config.methods import FACTS
from tunewise.config.schema import Config
from tunewise.errors import ConfigError

TARGET_BATCH = 16


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


def recommend(cfg: Config, model: ModelFacts, hw: Hardware, *, lengths: list[int], supervised: list[int],
              facts: Facts | None = None, nproc: int = 1) -> dict:
    """All advice for one config on one machine (pure)."""
    facts = facts or Facts(n_train=len(lengths), nproc=nproc)
    if nproc > 1 and hw.cuda and nproc > len(hw.gpus):
        raise ConfigError(f"--nproc {nproc} but this machine has {len(hw.gpus)} GPU(s)", where="--nproc",
                          fix=f"use --nproc {len(hw.gpus)} or fewer")
    n_train = len(lengths)
    srt = sorted(lengths)
    p95, p99, longest = percentile(srt, 0.95), percentile(srt, 0.99), (srt[-1] if srt else cfg.data.max_length)
    mean_sup = sum(supervised) / len(supervised) if supervised else 0.0
    sup_share = (sum(supervised) / sum(lengths)) if lengths and sum(lengths) else 0.5
    precision, wdtype = mem.resolved_dtypes(cfg.train.precision, cfg.model.dtype, hw)
    ctx = model.context_length or 10 ** 9
    step = 8 if p99 < 256 else 64
    max_len = min(_round_up(p99, step), ctx) if srt else cfg.data.max_length
    mp = mem.MethodParams.from_config(cfg.method)
    t = cfg.train

    def shape(batch: int, seq_cap: int, gc: bool) -> mem.Shape:
        return mem.Shape(batch=batch, seq=max(1, min(seq_cap, longest)), supervised_share=sup_share, gradient_checkpointing=gc,
                         precision=precision, weight_dtype=wdtype, frozen_dtype=t.frozen_dtype, fast_loss=t.fast_loss, loss_chunk_size=t.loss_chunk_size,
                         eager_attention=cfg.model.attn_implementation == "eager", nproc=nproc, strategy=cfg.distributed.strategy,
                         optimizer=t.optimizer)

    eff_target = target_batch(n_train, t.min_steps) if n_train else TARGET_BATCH
    per_dev_target = max(1, math.ceil(eff_target / nproc))
    memory, plans = {}, {}
    for m in mem.METHODS:
        current = mem.estimate(model, m, mp, shape(t.per_device_batch_size, cfg.data.max_length, t.gradient_checkpointing), hw)
        plan = mem.fit_batch(model, m, mp, shape(per_dev_target, max_len, False), hw, per_dev_target)
        plans[m] = plan
        memory[m] = {**current.to_dict(), "as_configured": {"batch": t.per_device_batch_size, "seq": min(cfg.data.max_length, longest),
                                                            "gradient_checkpointing": t.gradient_checkpointing},
                     "fits_as_configured": current.fits,
                     "fitted": None if plan is None else {"per_device_batch_size": plan[0], "gradient_checkpointing": plan[1],
                                                          "total_gib": round(plan[2].total / mem.GiB, 3)}}

    rec: dict = {}
    why: dict[str, tuple[str, str]] = {}
    method = cfg.method.name if cfg.method.name in mem.METHODS else "lora"
    if plans.get(method) is None:
        # the low-rank methods (a quantised base only on a GPU), then the virtual-token ones, fewest parameters first
        virtual = [n for n, f in FACTS.items() if f.virtual_tokens]
        order = [n for n, f in FACTS.items() if f.low_rank and (hw.cuda or not f.quantised_base)] \
            + sorted(virtual, key=lambda n: mem.trainable_params(model, n, mp))
        alt = next((m for m in order if plans.get(m) is not None), None)
        if alt is None:
            raise ConfigError(
                f"no tuning method fits: even LoRA with batch 1 and gradient checkpointing needs "
                f"{mem.fmt_bytes(mem.estimate(model, 'lora', mp, shape(1, max_len, True), hw).total)}, "
                f"more than this machine's {mem.fmt_bytes(memory['lora']['budget'])}",
                where="model.name_or_path", fix="choose a smaller model, or a machine with more memory")
        why["method.name"] = (f"{alt}: {method} does not fit in {mem.fmt_bytes(memory[method]['budget'])} even with batch 1 and "
                              f"gradient checkpointing; {alt} does",
                              f"{alt}：{method} 即使批大小为 1 并开启梯度检查点也放不进 {mem.fmt_bytes(memory[method]['budget'])}；{alt} 可以")
        method = alt
    else:
        e = plans[method][2]
        why["method.name"] = (f"{method}: fits ({mem.fmt_bytes(e.total)} of {mem.fmt_bytes(e.budget)} per process)",
                              f"{method}：放得下（每进程 {mem.fmt_bytes(e.total)} / {mem.fmt_bytes(e.budget)}）")
    rec["method.name"] = method
    b, gc, est = plans[method]
    if gc and FACTS[method].adapter_like and wdtype == "float32" and t.frozen_dtype == "float32":
        # A bf16 frozen base costs ~10% of speed on CPUs; recomputing activations ~40%: narrow first.
        narrow = mem.fit_batch(model, method, mp, replace(shape(per_dev_target, max_len, False), frozen_dtype="bfloat16"),
                               hw, per_dev_target)
        if narrow is not None and not narrow[1]:
            b, gc, est = narrow
            rec["train.frozen_dtype"] = "bfloat16"
            why["train.frozen_dtype"] = (
                "bfloat16: with the frozen base in bf16 the run fits without gradient checkpointing "
                "(about 10% slower on this kind of CPU, against about 40% for checkpointing)",
                "bfloat16：冻结基座用 bf16 就不必开梯度检查点也放得下（这类 CPU 上约慢 10%，梯度检查点约慢 40%）")
    accum = max(1, math.ceil(eff_target / (b * nproc)))
    eff = b * accum * nproc
    rec["train.per_device_batch_size"], rec["train.gradient_accumulation_steps"] = b, accum
    rec["train.gradient_checkpointing"] = gc
    procs = f" x {nproc} processes" if nproc > 1 else ""
    why["train.per_device_batch_size"] = (
        f"{b}: the largest power of two up to {per_dev_target} that fits ({mem.fmt_bytes(est.total)} per process{', with gradient checkpointing' if gc else ''})",
        f"{b}：不超过 {per_dev_target} 且放得下的最大 2 的幂（每进程 {mem.fmt_bytes(est.total)}{'，开启梯度检查点' if gc else ''}）")
    why["train.gradient_accumulation_steps"] = (
        f"{accum}: effective batch {b} x {accum}{procs} = {eff} (target {eff_target} for {n_train} examples)",
        f"{accum}：有效批 {b} × {accum}{procs.replace(' processes', ' 个进程')} = {eff}（{n_train} 条样本的目标为 {eff_target}）")
    why["train.gradient_checkpointing"] = (
        "on: needed to fit" if gc else "off: fits without recomputing activations (faster)",
        "开启：不开放不下" if gc else "关闭：不重算激活也放得下（更快）")
    rec["data.max_length"] = max_len
    why["data.max_length"] = (
        f"{max_len}: token lengths p95 {p95}, p99 {p99}, longest {longest}; p99 rounded up to a multiple of {step}",
        f"{max_len}：token 长度 p95 {p95}，p99 {p99}，最长 {longest}；p99 向上取整到 {step} 的倍数")
    lr = advise_lr(method, model.model_type, eff * mean_sup)
    rec["train.learning_rate"] = lr.value
    why["train.learning_rate"] = (lr.en + f" (supervised tokens per step: {eff} x {mean_sup:.1f})",
                                  lr.zh + f"（每步监督 token 数：{eff} × {mean_sup:.1f}）")
    if FACTS[method].low_rank:
        r = 8 if n_train < 1000 else 16 if n_train < 10000 else 32
        rec["method.lora_r"], rec["method.lora_alpha"] = r, 2 * r
        why["method.lora_r"] = (f"{r}: {n_train} examples ({'< 1000' if n_train < 1000 else '< 10000' if n_train < 10000 else '>= 10000'}); more data can use more rank",
                                f"{r}：{n_train} 条样本；数据越多可用的秩越大")
        why["method.lora_alpha"] = (f"{2 * r}: alpha = 2r, the usual start", f"{2 * r}：alpha = 2r，常用起点")
    from tunewise.config.plan import auto_epochs

    per_epoch = max(1, math.ceil(n_train / eff))
    if n_train < 1000:
        epochs = auto_epochs(per_epoch, t.min_steps)
        why["train.num_epochs"] = (
            f"{epochs}: {n_train} examples give {per_epoch} steps a pass at batch {eff}; {epochs} passes make "
            f"{per_epoch * epochs} steps (at least train.min_steps={t.min_steps}, at most 10 passes), because a few dozen "
            "steps teach neither the content nor the end-of-turn token; early stopping guards against overfitting",
            f"{epochs}：{n_train} 条样本在批大小 {eff} 下每轮 {per_epoch} 步；{epochs} 轮共 {per_epoch * epochs} 步"
            f"（至少 train.min_steps={t.min_steps} 步，最多 10 轮），因为几十步既学不会内容也学不会结束符；早停防止过拟合")
    else:
        epochs = 2 if n_train < 10000 else 1
        why["train.num_epochs"] = (f"{epochs}: {n_train} examples ({per_epoch * epochs} steps)",
                                   f"{epochs}：{n_train} 条样本（共 {per_epoch * epochs} 步）")
    rec["train.num_epochs"] = epochs
    total_steps = per_epoch * epochs
    wr = round(min(0.1, max(0.03, 10 / total_steps)), 2)
    rec["train.warmup_ratio"] = wr
    why["train.warmup_ratio"] = (f"{wr}: about {max(1, round(wr * total_steps))} of {total_steps} steps (3-10%, at least ~10 steps when the run allows)",
                                 f"{wr}：{total_steps} 步中约 {max(1, round(wr * total_steps))} 步（3-10%，条件允许时至少约 10 步）")
    if t.warmup_steps > 0:
        rec["train.warmup_steps"] = 0
        why["train.warmup_steps"] = ("0: so warmup_ratio applies", "0：让 warmup_ratio 生效")
    data = {"n_train": n_train, "p50": percentile(srt, 0.5), "p95": p95, "p99": p99, "longest": longest,
            "mean_supervised_tokens": round(mean_sup, 1), "supervised_share": round(sup_share, 3)}
    return {"hardware": {**hw.to_dict(), "nproc": nproc, "precision": precision, "weight_dtype": wdtype},
            "model": model.to_dict(), "data": data, "memory": memory, "recommendations": rec,
            "reasons": {k: {"en": v[0], "zh": v[1]} for k, v in why.items()},
            "lint": lint(cfg, replace(facts, nproc=nproc))}


def advise_config(cfg: Config, hw: Hardware, *, nproc: int = 1, explicit: frozenset[str] | None = None) -> dict:
    """Gather the model and data facts for `cfg` and recommend."""
    from tunewise.advise.lint import gather_facts
    from tunewise.advise.modelfacts import model_facts

    facts, x = gather_facts(cfg, nproc=nproc, explicit=explicit)
    model = model_facts(x["resolved"].path, cfg.model.trust_remote_code, has_chat_template=bool(x["tokenizer"].chat_template))
    return recommend(cfg, model, hw, lengths=x["lengths"], supervised=x["supervised"], facts=facts, nproc=nproc)


def to_json(result: dict, lang: str = "en") -> dict:
    """The shape the web UI reads: hardware, memory, recommendations, reasons, lint."""
    return {"hardware": result["hardware"], "model": result["model"], "data": result["data"], "memory": result["memory"],
            "recommendations": result["recommendations"],
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
