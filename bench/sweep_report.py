"""The sweep's table, the verdicts on the issue's targets, and the plot, rendered from the raw rows (bench/sweep.json)."""

from __future__ import annotations

from pathlib import Path

MB = 1024 ** 2
# The targets, at the 1.5B shape with LoRA, against TRL with its defaults; and the estimator's tolerance.
TARGET_SIZE, TARGET_METHOD = "qwen2.5-1.5b", "lora"
MEMORY_RATIO, SPEED_RATIO, LOSS_GAP, ESTIMATE_TOL = 0.5, 3.0, 0.02, 0.15
PEER_ORDER = ["tunewise", "tunewise_bf16base", "tunewise_gc", "tunewise_nogc", "trl_default", "trl_fp32", "plain"]
METHOD_ORDER = ["lora", "qlora", "full"]


NOTES = [
    "### Notes on the qwen2.5-1.5b LoRA rows (machine B, bf16 checkpoints)", "",
    "- The checkpoints are now saved in bfloat16, as the families publish them. tunewise's LoRA then keeps the base "
    "as stored (`train.frozen_dtype: auto`; exact, the values are the stored ones) and loads it without a float32 "
    "copy. TRL with its defaults loads float32 (its documented default dtype): loading alone peaks at ~9.2 GB there.",
    "- tunewise's default is now `train.gradient_checkpointing: auto` (session 14): on when the run without it is "
    "estimated at more than half of the memory the process may use. The note column says what it chose. At this "
    "LoRA cell on a 24 GB machine the estimate without it is just under half (11.2 GiB of ~23 GiB free), so auto left "
    "it off, twice (11.9 and 12.0 tokens/s, 11.4 and 10.8 GB): the row is the speed setting, and the memory target "
    "is met by asking for checkpointing (tunewise_gc). The qlora cell's estimate was just over half in session 16, so "
    "auto turned it on there; since session 17 the estimate that decides counts training only (the loading peak, "
    "the same either way, no longer), 9.4 GiB, so auto leaves it off (see the session 17 notes). On a machine "
    "with less free memory auto turns it on for LoRA too. tunewise_nogc (explicitly off) "
    "is session 13's row, measured when off was the default; its advise estimate is recomputed with the current "
    "estimator for the same config (session 13's, before advise counted the bf16 checkpoint's base, said 14,416 MB).",
    "- tunewise_gc is `train.gradient_checkpointing: true`, which TRL's defaults also have. With it, on a CPU, tensors "
    "of 1 MiB and more are handed back to the system as soon as they are freed (glibc's mallopt): before that change "
    "the same cell peaked at 8,114 MB and ran at 10.1 tokens/s; after it, in session 13, 4,248 MB at 6.2 tokens/s "
    "beside a short test run. Re-run quiet in session 14 (this row): 4,265 MB at 9.1 tokens/s; the same training with "
    "auto turning checkpointing on (a 11.6 GiB budget given to it) ran at 10.4 tokens/s, 4,257 MB. Checkpointing one "
    "decoder layer in 2 (transformers' every_n_layers), also tried: 10.2 tokens/s, 6,073 MB, so auto checkpoints every "
    "layer.",
    "- trl_fp32 (session 15) is TRL's defaults with `bf16=False`, nothing else changed: SFTConfig's default is bf16 "
    "autocast, which on this CPU (no bf16 matrix units) runs at about a tenth of fp32's speed, so trl_default never "
    "finishes here; in fp32 it does, and gives the validation-loss comparison (the same examples, steps and seed; "
    "TRL's gradient checkpointing on, its float32 load of the bf16 checkpoint). Measured twice: 5.9 tokens/s and "
    "10,506 MB quiet (the row), 5.2 tokens/s and 10,360 MB beside short test runs; the same validation loss both "
    "times.",
    "- TRL's cell was stopped by hand after 2,364 s, before its 4 steps ended (the session's time ran out), so its "
    "peak is a floor and its speed a ceiling. The plain Trainer and tunewise_bf16base were not re-run on bf16 "
    "checkpoints; their float32-checkpoint rows at this size were removed with the others.", "",
    "### Notes on the qwen2.5-3b LoRA rows (session 16, machine B, bf16 checkpoint)", "",
    "- Machine B's measured matmul (bench's 1024x1024 product, quiet, 2026-12-07): fp32 55.1 GFLOP/s on 1 thread, "
    "101.3 on 2; bf16 0.8-0.9 (no bf16 matrix units).",
    "- tunewise with its defaults: auto turned gradient checkpointing on (the run without it is estimated above half "
    "of the ~23 GiB free); 3.4 tokens/s at 7,525 MB, advise's estimate 1.05x the measured peak. A ~15 s burst of "
    "other work ran beside it once.",
    "- trl_fp32 (TRL's defaults with `bf16=False`, as at 1.5B; its gradient checkpointing on): 2.5 tokens/s at "
    "19,268 MB, its float32 copy of the bf16 checkpoint alone 12.4 GB. tunewise: 1.36x its speed at 0.39x its peak; "
    "validation losses 12.1494 and 12.1661, 0.14% apart. Both recompute activations here, so the speed gap is "
    "smaller than at 1.5B, where tunewise ran without (2.03x; tunewise_gc against trl_fp32 there: 1.55x).",
    "- Not run at 3B: trl_default (bf16 autocast on this CPU; at 1.5B it did not finish in 2,364 s), the plain "
    "Trainer, qlora and full.", "",
    "### Notes on the qwen2.5-1.5b rows added in session 16 (machine B, bf16 checkpoint)", "",
    "- qlora, trl_fp32 (TRL's defaults with `bf16=False` on the same 4-bit NF4 base): 3.1 tokens/s at 5,673 MB, "
    "validation loss 12.0329. tunewise's qlora with checkpointing on (tunewise_gc; what auto chose in session 16): "
    "2.70x its speed at 1.03x its peak, losses 0.15% apart. With its defaults since session 17 (auto: off) 3.68x its "
    "speed at 1.67x its peak.",
    "- lora, the plain Trainer + peft (float32 load of the bf16 checkpoint, padded batches, logits at every position, "
    "no checkpointing): 7.0 tokens/s at 16,367 MB, validation loss 12.0068. tunewise's defaults: 1.69x its speed at "
    "0.70x its peak.",
    "- qwen2.5-3b qlora, tunewise (session 16): 3.4 tokens/s at 10,653 MB (auto checkpointing on), above its LoRA "
    "cell's 7,525 MB. advise estimated 8,701 MB then (0.82x, outside ±15%); see the session 17 notes (the row is "
    "now session 17's re-run).", "",
    "### Notes on qlora's memory (session 17, machine B)", "",
    "- Where qlora's peak comes, measured by phase (RSS sampled every 0.1 s; anonymous and file-backed pages apart), "
    "the sweep's qlora cell with 2 steps: Qwen2.5-3B (checkpointing on) **10,202 MB while loading** (5,989 MB of it "
    "the checkpoint file's pages, 4,212 MB anonymous), 2,889 MB once built, 4,067 MB training; Qwen2.5-0.5B 2,342 MB "
    "loading (1,052 file), 4,848 MB training. bitsandbytes quantises as transformers reads the memory-mapped "
    "checkpoint, so the whole file is resident until the load ends, beside the 4-bit weights, the unquantised rest "
    "(embeddings, norms) in float32 plus its bfloat16 copy, and the layers being quantised in float32.",
    "- advise's estimate had added 0.8 of the file's bytes to the training peak (calibrated at 0.5B and 1.5B, where "
    "it happened to land near the measured peaks). It now estimates the two phases apart, peak = the larger "
    "(train/memory.py `quantised_load_peak`); with the file resident: 0.95 (0.5B, training's peak), 1.02 (1.5B, "
    "training's), 0.99 (1.5B with checkpointing, loading's), 0.95 (3B, loading's).",
    "- Then the cause: a load that converts what it reads (quantised, or widened to float32) now pages the mapped "
    "checkpoint out of the process every 0.3 s (models/load.py `checkpoint_pages_released`, madvise MADV_PAGEOUT, "
    "which never loses a page's contents; transformers maps the file private and writable, where MADV_DONTNEED could). "
    "Qwen2.5-3B qlora, the same cell re-run: **4,125 MB peak instead of 10,653 MB** (0.39x; now below the 3B LoRA "
    "cell's 7,525 MB, as a 4-bit base should be), 3.2 tokens/s (3.4 before: within this machine's run-to-run "
    "spread), the same validation loss to the last digit (12.0944). The estimate: 1.03x. By phase in a separate run: "
    "loading 4,152 MB in 107 s (before: 10,202 MB in 104 s).",
    "- Where the pages cannot be paged out (not Linux), the estimate counts the file, and what must be free leaves "
    "it out (clean page cache, dropped by the kernel under pressure): `needed`, which decides whether a run fits and "
    "the largest-model table; advise prints both when the peak is the load's.",
    "- Auto checkpointing now decides on the training estimate alone: at 1.5B qlora it is 9.4 GiB of ~23 GiB free, "
    "under half, so auto leaves checkpointing off there (it was on in session 16, when the loading term counted). "
    "The row was re-run: 11.4 tokens/s at 9,447 MB (estimate 1.02x; measured before the paging below, but its peak "
    "is training's, which paging does not change, as at 0.5B); session 16's run with it on (8.4 tokens/s, "
    "5,867 MB) became the tunewise_gc row, since re-run with the pages released as the load goes: 6.6 tokens/s at "
    "2,760 MB (the row; the peak came while loading; estimate 1.04x); an earlier re-run the same hour peaked at "
    "3,408 MB (5.9 tokens/s): the loading peak's spread between runs. Paging costs no training speed: the same "
    "training in one harness, 3 steps, 259 s with it and 266 s without (today this cell runs at ~6 tokens/s either "
    "way, below session 16's 8.4).", "",
]


def _measured(r: dict) -> bool:
    return "tokens_per_s" in r


def ordered(rows: list[dict]) -> list[dict]:
    def key(r):
        return (r.get("params") or 0, r["size"], METHOD_ORDER.index(r["method"]) if r["method"] in METHOD_ORDER else 9,
                PEER_ORDER.index(r["peer"]) if r["peer"] in PEER_ORDER else 9)
    return sorted(rows, key=key)


def _find(rows, size, method, peer):
    return next((r for r in rows if (r["size"], r["method"], r["peer"]) == (size, method, peer) and _measured(r)), None)


def _machines(rows: list[dict]) -> dict[str, str]:
    """Each distinct machine the rows were measured on -> a short tag (A, B, ...), in the order the results file
    first has them (rows are appended as they are measured, so a machine keeps its tag when new rows come)."""
    out: dict[str, str] = {}
    for r in rows:
        if r.get("machine") and r["machine"] not in out:
            out[r["machine"]] = chr(ord("A") + len(out))
    return out


def table(rows: list[dict]) -> list[str]:
    lines = ["| size | params | checkpoint | method | peer | tokens/s | peak RSS (MB) | val loss | advise estimate (MB) | estimate ÷ measured "
             "| tunewise speed-up vs this peer | tunewise memory ratio vs this peer | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    machines = _machines(rows)
    for r in ordered(rows):
        est = r.get("estimate_bytes")
        head = (f"| {r['size']} | {r.get('params', 0) / 1e9:.2f}B | {r.get('checkpoint', 'float32')} | {r['method']} "
                f"| {r['peer']} |")
        est_mb = f"{est / MB:.0f}" if est else (r.get("estimate_error", "-")[:60] or "-")
        if not _measured(r):
            why = r.get("skipped") or f"failed: {r.get('failed', '')[-200:]!r}"
            lines.append(f"{head} - | - | - | {est_mb} | - | - | - | {why.replace('|', '/')} |")
            continue
        tw = _find(rows, r["size"], r["method"], "tunewise")
        ratio = f"{est / (r['peak_rss_mb'] * MB):.2f}" if est and r["peer"].startswith("tunewise") else "-"
        speed = f"{tw['tokens_per_s'] / r['tokens_per_s']:.2f}x" if tw else "-"
        mem = f"{tw['peak_rss_mb'] / r['peak_rss_mb']:.2f}" if tw else "-"
        lines.append(f"{head} {r['tokens_per_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['val_loss']:.4f} | {est_mb} | {ratio} | "
                     f"{speed} | {mem} | {r['measured_tokens']} tokens in {r['measured_steps']} timed steps, {r['measured_s']:.1f} s"
                     f"{'; machine ' + machines[r['machine']] if len(machines) > 1 and r.get('machine') else ''}"
                     f"{_checkpointing(r)}{_load_peak(r)} |")
    return lines


def _load_peak(r: dict) -> str:
    """Where the peak came, for cells that recorded the peak once loaded (bench/sweep.py, session 17 on)."""
    load = r.get("load_peak_mb")
    if not load:
        return ""
    where = "while loading" if load >= 0.98 * r["peak_rss_mb"] else "while training"
    return f"; {load:.0f} MB once loaded: the peak came {where}"


def _checkpointing(r: dict) -> str:
    """The row's gradient checkpointing where the cell recorded it; for tunewise's default (auto), what it chose."""
    if "gradient_checkpointing" not in r:
        return ""
    return f"; checkpointing {'on' if r['gradient_checkpointing'] else 'off'}{' (auto)' if r['peer'] == 'tunewise' else ''}"


def verdicts(rows: list[dict]) -> list[str]:
    tw, trl = _find(rows, TARGET_SIZE, TARGET_METHOD, "tunewise"), _find(rows, TARGET_SIZE, TARGET_METHOD, "trl_default")
    fp32 = _find(rows, TARGET_SIZE, TARGET_METHOD, "trl_fp32")  # TRL's defaults in float32 (where its own never end)
    # a TRL cell stopped before its steps ended: its peak so far is a floor, its speed a ceiling
    part = None if trl else next((r for r in rows if (r["size"], r["method"], r["peer"]) == (TARGET_SIZE, TARGET_METHOD,
                                                                                           "trl_default")
                                  and r.get("peak_rss_mb_at_least")), None)
    out = [f"### Targets at {TARGET_SIZE}, {TARGET_METHOD} (tunewise against TRL with its defaults)", ""]
    if tw and trl:
        mem = tw["peak_rss_mb"] / trl["peak_rss_mb"]
        speed = tw["tokens_per_s"] / trl["tokens_per_s"]
        gap = abs(tw["val_loss"] - trl["val_loss"]) / trl["val_loss"]
        out += [f"- peak RSS {mem:.2f}x TRL defaults' (target <= {MEMORY_RATIO}x): {'met' if mem <= MEMORY_RATIO else 'NOT met'}",
                f"- tokens/s {speed:.2f}x TRL defaults' (target >= {SPEED_RATIO}x): {'met' if speed >= SPEED_RATIO else 'NOT met'}",
                f"- validation loss {tw['val_loss']:.4f} against {trl['val_loss']:.4f}, {100 * gap:.2f}% apart "
                f"(target within {100 * LOSS_GAP:.0f}%): {'met' if gap <= LOSS_GAP else 'NOT met'}"]
    elif tw and part:
        mem = tw["peak_rss_mb"] / part["peak_rss_mb_at_least"]
        speed = tw["tokens_per_s"] / part["tokens_per_s_below"]
        out += [f"- TRL's cell did not finish (see the table): its peak so far, {part['peak_rss_mb_at_least']:,.0f} MB, "
                f"is a floor and its speed, under {part['tokens_per_s_below']} tokens/s, a ceiling",
                f"- peak RSS at most {mem:.2f}x TRL defaults' (target <= {MEMORY_RATIO}x): "
                f"{'met' if mem <= MEMORY_RATIO else 'NOT met'}",
                f"- tokens/s more than {speed:.1f}x TRL defaults' (target >= {SPEED_RATIO}x): "
                f"{'met' if speed >= SPEED_RATIO else 'NOT met'}",
                "- validation loss: not compared with trl_default (its cell did not finish)"
                + ("; against TRL in fp32 below" if fp32 else "")]
    else:
        out.append("- not measured in this sweep (a cell was skipped or failed: see the table)")
    for peer, what in (("tunewise_bf16base", "train.frozen_dtype=bfloat16"), ("tunewise_gc", "train.gradient_checkpointing=true"),
                       ("tunewise_nogc", "train.gradient_checkpointing=false")):
        if (low := _find(rows, TARGET_SIZE, TARGET_METHOD, peer)) and part:
            out.append(f"- with {what} ({peer}): peak RSS at most {low['peak_rss_mb'] / part['peak_rss_mb_at_least']:.2f}x, "
                       f"tokens/s more than {low['tokens_per_s'] / part['tokens_per_s_below']:.1f}x TRL defaults'")
        elif low and trl:
            out.append(f"- with {what} ({peer}): peak RSS {low['peak_rss_mb'] / trl['peak_rss_mb']:.2f}x, "
                       f"tokens/s {low['tokens_per_s'] / trl['tokens_per_s']:.2f}x, validation loss "
                       f"{100 * abs(low['val_loss'] - trl['val_loss']) / trl['val_loss']:.2f}% apart")
    if fp32 and tw:
        gap = abs(tw["val_loss"] - fp32["val_loss"]) / fp32["val_loss"]
        out.append(f"- against TRL's defaults with float32 arithmetic (trl_fp32, `bf16=False`; the only change): "
                   f"peak RSS {tw['peak_rss_mb'] / fp32['peak_rss_mb']:.2f}x, tokens/s "
                   f"{tw['tokens_per_s'] / fp32['tokens_per_s']:.2f}x, validation loss {tw['val_loss']:.4f} against "
                   f"{fp32['val_loss']:.4f}, {100 * gap:.2f}% apart (target within {100 * LOSS_GAP:.0f}%): "
                   f"{'met' if gap <= LOSS_GAP else 'NOT met'}")
        if low := _find(rows, TARGET_SIZE, TARGET_METHOD, "tunewise_gc"):
            out.append(f"- tunewise_gc against trl_fp32: peak RSS {low['peak_rss_mb'] / fp32['peak_rss_mb']:.2f}x, "
                       f"tokens/s {low['tokens_per_s'] / fp32['tokens_per_s']:.2f}x")
    out += ["", f"### advise's peak-memory estimate within ±{100 * ESTIMATE_TOL:.0f}% of tunewise's measured peak", ""]
    checked = [r for r in ordered(rows) if r["peer"].startswith("tunewise") and _measured(r) and r.get("estimate_bytes")]
    bad = [r for r in checked if abs(r["estimate_bytes"] / (r["peak_rss_mb"] * MB) - 1) > ESTIMATE_TOL]
    for r in checked:
        q = r["estimate_bytes"] / (r["peak_rss_mb"] * MB)
        out.append(f"- {r['size']} {r['method']} ({r['peer']}): estimate ÷ measured = {q:.2f} ({'within' if r not in bad else 'OUTSIDE'})")
    out.append(f"- {'met' if checked and not bad else 'NOT met'}: {len(checked) - len(bad)} of {len(checked)} measured "
               "tunewise cells within the tolerance" + ("" if checked else " (none measured)"))
    return out


def plot(rows: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    colour = dict(zip(PEER_ORDER, ["tab:blue", "tab:cyan", "tab:purple", "tab:orange", "tab:green", "tab:olive", "tab:red"]))  # a colour per peer, a line per method
    for method in METHOD_ORDER:
        for peer in PEER_ORDER:
            pts = sorted((r["params"] / 1e9, r["tokens_per_s"], r["peak_rss_mb"] / 1024) for r in rows
                         if r["method"] == method and r["peer"] == peer and _measured(r))
            if not pts:
                continue
            x, tps, mem = zip(*pts)
            style = {"lora": "-", "qlora": ":", "full": "--"}[method]
            ax1.plot(x, tps, style, marker="o", color=colour[peer], label=f"{peer} {method}")
            ax2.plot(x, mem, style, marker="o", color=colour[peer], label=f"{peer} {method}")
        est = sorted((r["params"] / 1e9, r["estimate_bytes"] / 1024 ** 3) for r in rows
                     if r["method"] == method and r["peer"] == "tunewise" and r.get("estimate_bytes") and _measured(r))
        if est:
            ax2.plot(*zip(*est), {"lora": "x", "qlora": "+", "full": "*"}[method], color="black", markersize=10,
                     linestyle="none", label=f"advise estimate (tunewise), {method}")
    ax1.set(xlabel="parameters (billions)", ylabel="tokens/s (timed steps)", title="Training throughput", yscale="log")
    ax2.set(xlabel="parameters (billions)", ylabel="peak RSS (GiB)", title="Peak memory (VmHWM, loading + training)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def write_report(rows: list[dict], out: Path, png: Path) -> str:
    from bench.sweep import SETTINGS

    s = SETTINGS
    machines = _machines(rows)
    lengths = next((r["data_lengths"] for r in rows if r.get("data_lengths")), [])
    tok = next((r["tokenizer"] for r in rows if r.get("tokenizer")), "-")
    plot(rows, png)
    md = ["# Model-size sweep: tokens/s and peak memory against model size", "",
          "`python -m bench --sweep` (bench/sweep.py). Models have the exact shapes of the named families (from their "
          "published config.json, vocabulary included) with random weights, saved in the dtype of the checkpoint column "
          "(bfloat16 as the families publish them; the float32 rows come from earlier runs), trained on CPU.", "",
          *([f"- machine: {next(iter(machines), '-')}"] if len(machines) <= 1 else
            ["- machines (the note column names each row's; compare speeds within one machine only):",
             *[f"  - {tag}: {m}" for m, tag in machines.items()]]),
          f"- each cell: its own process; {s['warmup_steps']} warm-up step then {s['measured_steps']} timed optimizer steps, "
          f"batch {s['batch_size']} x max_length {s['max_length']}, lr {s['lr']}, seed {s['seed']}; LoRA r={s['lora_r']} "
          f"alpha={s['lora_alpha']} on all linear layers; qlora = the same LoRA on a 4-bit NF4 double-quantised base",
          f"- data: {len(lengths)} distinct instruction examples (half long answers, half short), token lengths "
          f"{lengths[:1] and lengths[0]}-{lengths[-1:] and lengths[-1]} ({tok}'s tokenizer, ChatML), the same "
          "examples in the same order for every peer; validation: 8 held-out examples, loss on the answers only, "
          "computed by one function for every peer after the steps",
          "- tokens/s: real tokens of the timed steps (padding not counted) ÷ their wall time; peak RSS: VmHWM as "
          "training ends (loading + training, before validation); advise estimate: `tunewise advise` for the tunewise "
          "cell's own config, compared with tunewise's measured peak", "",
          *table(rows), "", *verdicts(rows), "", "![tokens/s and peak memory against model size](sweep.png)", "",
          *NOTES]
    text = "\n".join(md)
    out.write_text(text, encoding="utf-8")
    return text
