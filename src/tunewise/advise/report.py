"""`tunewise advise`'s result as text (en, zh): hardware, model, data, memory per method, recommendations, lint."""

from __future__ import annotations

_COL = {"en": ("method", "weights", "train.", "grads", "optim.", "activ.", "logits", "overhead", "total", "fits?"),
        "zh": ("方法", "权重", "可训练", "梯度", "优化器", "激活", "logits", "进程开销", "合计", "放得下？")}


_COMPONENT = {
    "en": {"weights": "the model's weights", "trainable": "the trained parameters", "gradients": "their gradients",
           "optimizer": "the optimizer's states", "activations": "the activations kept for backward",
           "logits": "the logits", "overhead": "the process itself"},
    "zh": {"weights": "模型权重", "trainable": "被训练的参数", "gradients": "梯度", "optimizer": "优化器状态",
           "activations": "反向传播保存的激活", "logits": "logits", "overhead": "进程本身"},
}


def format_advice(r: dict, lang: str = "en") -> str:
    from tunewise.train.memory import fmt_bytes

    zh = lang == "zh"
    hw, d, m = r["hardware"], r["data"], r["model"]
    gpus = ", ".join(f"{g['name']} {g['memory_bytes'] / 2**30:.0f} GiB" for g in hw["gpus"]) or ("无 GPU" if zh else "no GPU")
    lines = [("硬件" if zh else "hardware") + f": {hw['cpu_cores']} CPU cores, RAM {hw['available_ram_gib']}/{hw['ram_gib']} GiB "
             + ("可用" if zh else "available") + f", {gpus}; precision {hw['precision']}, weights {hw['weight_dtype']}"
             + (f", {hw['nproc']} processes" if hw["nproc"] > 1 else "")
             + (f"\n  {hw['threads']['line']}" if hw.get("threads") else ""),
             ("模型" if zh else "model") + f": {m['model_type']}, {m['params'] / 1e6:.1f}M params, {m['layers']} layers, hidden {m['hidden']}, vocab {m['vocab']:,}",
             ("数据" if zh else "data") + f": {d['n_train']} " + ("条训练样本" if zh else "training examples")
             + f"; tokens p50 {d['p50']}, p95 {d['p95']}, p99 {d['p99']}, max {d['longest']}; "
             + ("平均监督 token" if zh else "mean supervised tokens") + f" {d['mean_supervised_tokens']}", ""]
    cols = _COL[lang]
    lines.append(("按当前配置估计的峰值内存（每进程）" if zh else "peak memory per process, as configured") + ":")
    lines.append("  " + "".join(f"{c:>10}" for c in cols))
    for name, e in r["memory"].items():
        vals = [name] + [fmt_bytes(e[k]) for k in ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead", "total")]
        fitted = e["fitted"]
        ok = ("是" if zh else "yes") if e["fits"] else ("否" if zh else "no")
        if not e["fits"] and fitted:
            ok += f" (b{fitted['per_device_batch_size']}{'+gc' if fitted['gradient_checkpointing'] else ''})"
        lines.append("  " + "".join(f"{v:>10}" for v in vals) + f"  {ok}")
    for name, e in r["memory"].items():
        if e["loading"] > e["training"]:  # qlora on a CPU: the peak can be the load
            cache = e["reclaimable"]
            part_zh = f"，其中 {fmt_bytes(cache)} 是检查点文件的页缓存，内存紧张时内核会释放" if cache else ""
            part_en = f", of which {fmt_bytes(cache)} is the checkpoint's page cache, which the kernel drops under pressure" if cache else ""
            lines.append(f"  {name}：峰值出现在加载时（{fmt_bytes(e['loading'])}{part_zh}）；训练时 {fmt_bytes(e['training'])}；"
                         f"需要空闲 {fmt_bytes(e['needed'])}" if zh else
                         f"  {name}: the peak comes while loading ({fmt_bytes(e['loading'])}{part_en}); training "
                         f"{fmt_bytes(e['training'])}; needs {fmt_bytes(e['needed'])} free")
    chosen = r["memory"].get(r["recommendations"].get("method.name", ""))
    if chosen:
        parts = {k: chosen[k] for k in ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead")}
        top = max(parts, key=parts.get)
        m, share = r["recommendations"]["method.name"], 100 * parts[top] / max(chosen["training"], 1)
        lines.append(f"  {m} 的内存大头：{_COMPONENT[lang][top]}（{fmt_bytes(parts[top])}，{share:.0f}%）" if zh else
                     f"  what dominates for {m}: {_COMPONENT[lang][top]} ({fmt_bytes(parts[top])}, {share:.0f}%)")
    budget = next(iter(r["memory"].values()))["budget"]
    lines.append(("  预算" if zh else "  budget") + f": {fmt_bytes(budget)} " + ("（可用内存的 90% 以内）" if zh else "(use at most 90% of it)"))
    if r.get("largest"):
        lines += [""] + largest_lines(r["largest"], lang)
    lines.append("")
    lines.append(("建议" if zh else "recommendations") + ":")
    for k, v in r["recommendations"].items():
        lines.append(f"  {k}: {v}")
        lines.append(f"      {r['reasons'][k][lang]}")
    if r["lint"]:
        lines.append("")
        lines.append(("当前配置的检查结果" if zh else "lint of the current config") + ":")
        lines.extend("  " + f.render(lang).replace("\n", "\n  ") for f in r["lint"])
    return "\n".join(lines)


def largest_lines(t: dict, lang: str = "en") -> list[str]:
    """The largest model of the family each method fits: this machine's memory, then each budget asked for."""
    from tunewise.advise.largest import METHODS, cell

    zh = lang == "zh"
    out = [(f"{t['label']} 系列中各方法能放下的最大模型（尺寸 {', '.join(t['sizes'])}；按本次数据与设置估计）" if zh else
            f"largest {t['label']} model each method fits ({', '.join(t['sizes'])}; estimated with this run's data and settings):")]
    for row in t["rows"]:
        where = (f"本机 {row['budget_gib']:g} GiB" if zh else f"here, {row['budget_gib']:g} GiB") if row["here"] else f"{row['budget_gib']:g} GiB"
        out.append(f"  {where}: " + "; ".join(f"{m} {cell(row[m], lang)}" for m in METHODS))
    return out
