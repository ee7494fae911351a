"""`tunewise data prepare` (here, or as tasks of datatrove's executors: tunewise.data.distributed) and
`tunewise data preview`."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Iterable

import numpy as np

from tunewise.data.clean import CHUNK as CLEAN_CHUNK
from tunewise.runs import RunDir, run_dir_for


TOKEN_CHUNK = 1024  # records tokenised together for the stats; only counts are kept between chunks


class TokenCount:
    """The token stats of one chunk of records (dicts, or their JSON lines): (sums of EncodeStats, how many
    examples have each length). Plain data out, so chunks are counted on worker processes (tunewise.data.parallel),
    which inherit the loaded tokenizer."""

    def __init__(self, cfg, tokenizer, template):
        from tunewise.config.schema import PREFERENCE_STAGES
        from tunewise.train.data import encode_preference_for, encode_records_for

        self.cfg, self.tokenizer, self.template = cfg, tokenizer, template
        self.encode = encode_preference_for if cfg.train.stage in PREFERENCE_STAGES else encode_records_for

    def in_worker(self) -> None:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the workers already fill the cores

    def __call__(self, chunk: list) -> tuple[dict, list[int]]:
        records = [json.loads(r) if isinstance(r, (bytes, str)) else r for r in chunk]
        _, st = self.encode(self.cfg, self.tokenizer, self.template, records)
        sums = {k: v for k, v in st.__dict__.items() if k != "lengths"}
        return sums, np.bincount(np.asarray(st.lengths, dtype=np.int64)).tolist()


def token_stats(cfg, tokenizer, template, records: Iterable, chunk_size: int = TOKEN_CHUNK, *,
                workers: int = 1) -> tuple[dict | None, np.ndarray]:
    """The token stats `tunewise train` reports for `records` (EncodeStats.to_dict()), and how many
    examples have each length (index = tokens), in bounded memory: encodings are dropped after each chunk.

    `records` are dicts or their JSON lines; chunks are counted on `workers` processes and summed in order. None
    when there are no records. For continued pretraining each chunk is packed on its own, so block counts can
    differ from one packed stream by a partial block per chunk.
    """
    from tunewise.data.clean import batched
    from tunewise.data.parallel import ordered_map

    totals: dict[str, int] = {}
    hist = np.zeros(cfg.data.max_length + 1, dtype=np.int64)
    for sums, counts in ordered_map(TokenCount(cfg, tokenizer, template), batched(records, chunk_size), workers,
                                    inline=0):
        for k, v in sums.items():
            totals[k] = totals.get(k, 0) + v
        if len(counts) > len(hist):
            hist = np.concatenate([hist, np.zeros(len(counts) - len(hist), dtype=np.int64)])
        hist[: len(counts)] += np.asarray(counts, dtype=np.int64)
    if not totals:
        return None, hist
    n = int(hist.sum())
    if n:  # the summary EncodeStats.to_dict() gives, from counts instead of a list of every length
        present = np.flatnonzero(hist)
        totals.update(min_length=int(present[0]), max_length=int(present[-1]),
                      mean_length=round(float(np.dot(np.arange(len(hist)), hist)) / n, 1),
                      p95_length=int(np.searchsorted(np.cumsum(hist), int(0.95 * (n - 1)) + 1)))
    return totals, hist


def sampled_token_stats(cfg, tokenizer, template, records: Iterable, n: int, sample: int,
                        chunk_size: int = TOKEN_CHUNK, *, workers: int = 1) -> tuple[dict | None, np.ndarray]:
    """token_stats of `sample` of the `n` records, picked at random (seeded by train.seed), scaled to all n.

    The sums and the histogram are the sample's times n / sample, rounded; the lengths' minimum, maximum, mean and
    95th percentile are the sample's. `sampled` says so: {"records": sample, "of": n}.
    """
    picked = np.zeros(n, dtype=bool)
    picked[np.random.default_rng(cfg.train.seed).choice(n, sample, replace=False)] = True
    chosen = (r for i, r in enumerate(records) if i < n and picked[i])
    totals, hist = token_stats(cfg, tokenizer, template, chosen, chunk_size, workers=workers)
    if totals is None:
        return None, hist
    scale = n / sample
    for k in ("examples", "truncated_examples", "truncated_tokens", "dropped_no_labels", "total_tokens",
              "supervised_tokens", "stop_unsupervised", "text_blocks", "pairs", "desirable", "undesirable",
              "dropped_too_long", "dropped_prompt_differs"):
        if k in totals:
            totals[k] = int(round(totals[k] * scale))
    totals["sampled"] = {"records": sample, "of": n}
    return totals, np.rint(hist * scale).astype(np.int64)


def prepare_command(cfg, out: str | None = None, overwrite: bool = False, *, chunk_size: int | None = None,
                    token_chunk: int = TOKEN_CHUNK, cleaned=None) -> Path:
    """`tunewise data prepare`: the data stage, then the token stats and the length histogram.

    `chunk_size` (records cleaned together) and `token_chunk` (records tokenised together) bound memory and never
    change a kept record or a drop; tests make them small so that many chunks cross the worker processes.
    `cleaned`: the chunks were cleaned by other tasks (tunewise.data.distributed; see tunewise.data.prepare.Cleaned).
    """
    from tunewise.data.parallel import resolve_workers
    from tunewise.data.prepare import PreparedData, prepare
    from tunewise.fileio import read_json, write_json
    from tunewise.train.data import encode_for_training
    from tunewise.models.load import tokenizer_and_template

    target = Path(out) if out else run_dir_for(cfg)
    if not out:
        _check_not_trained(target, overwrite)
    prepared = prepare(cfg, target, cleaned=cleaned, **({"chunk_size": chunk_size} if chunk_size else {}))
    _, tokenizer, template = tokenizer_and_template(cfg)
    workers = resolve_workers(cfg.data.num_workers)

    n = {split: prepared.stats[f"num_{split}"] for split in ("train", "val")}
    total, sample = n["train"] + n["val"], cfg.data.token_stats_sample
    # train and val share the sample in proportion to their sizes (all records counted when it holds them all)
    share = {"train": 0, "val": 0} if not sample or total <= sample else \
        {"train": max(1, round(sample * n["train"] / total)), "val": max(1, round(sample * n["val"] / total))}

    def count(split: str, size: int) -> tuple[dict | None, np.ndarray]:
        if not size or n[split] <= size:
            return token_stats(cfg, tokenizer, template, prepared.stored(split), token_chunk, workers=workers)
        return sampled_token_stats(cfg, tokenizer, template, prepared.stored(split), n[split], size, token_chunk,
                                   workers=workers)

    train_tok, hist = count("train", share["train"])
    if not hist.sum() and share["train"]:  # nothing in the sample: count them all before refusing
        train_tok, hist = count("train", 0)
    if not hist.sum():
        encode_for_training(cfg, tokenizer, template, PreparedData([], []))  # raises training's own "no example" error
    val_tok, _ = count("val", share["val"])
    from tunewise.data.report import format_summary, length_histogram, write_length_histogram

    lengths = np.repeat(np.arange(len(hist), dtype=np.int32), hist)
    stats = {**read_json(RunDir(target).stats), "tokens": {"train": train_tok, "val": val_tok},
             "length_histogram": length_histogram(lengths)}
    write_json(RunDir(target).stats, stats)
    write_length_histogram(lengths, RunDir(target).lengths_png, cfg.data.max_length)
    print(format_summary(stats), file=sys.stderr)
    return RunDir(target).data


class WriteData:
    """Stage 2 of `data prepare` on datatrove's executors (tunewise.data.distributed), one task: this command on
    stage 1's results, read back in input order."""

    def __init__(self, cfg, work: str | os.PathLike, out: str | None = None, overwrite: bool = False,
                 chunk_size: int = CLEAN_CHUNK):
        self.cfg, self.work, self.out, self.overwrite, self.chunk_size = cfg, Path(work), out, overwrite, chunk_size

    def __repr__(self) -> str:
        return f"tunewise: decide duplicates, split and write from {self.work}"

    def __call__(self, data=None, rank: int = 0, world_size: int = 1):
        from tunewise.data.distributed import ChunkResults, check_plan, plan_of

        if world_size != 1:
            raise ValueError("WriteData is one task: the duplicate decisions see every chunk in input order")
        check_plan(self.work, plan_of(self.cfg, self.chunk_size))  # refuses chunks made for another preparation
        prepare_command(self.cfg, out=self.out, overwrite=self.overwrite, chunk_size=self.chunk_size,
                        cleaned=ChunkResults(self.work))
        return data


def prepare_local(cfg, work: str | os.PathLike, *, tasks: int, workers: int = -1, out: str | None = None,
                  overwrite: bool = False, chunk_size: int = CLEAN_CHUNK) -> Path:
    """Both stages on datatrove's LocalPipelineExecutor: `tasks` stage 1 tasks, `workers` processes at a time (-1:
    one per task), then stage 2 in this process; returns the data/ folder written. Logs go to WORK/logs."""
    from tunewise.extras import require_extra

    require_extra("distributed", "preparing data on datatrove's executors")
    from datatrove.executor import LocalPipelineExecutor

    from tunewise.data.distributed import CleanChunks, check_plan, plan_of

    work = Path(work)
    # before datatrove, which would skip the finished stage 1 tasks of another preparation and log a traceback
    check_plan(work, plan_of(cfg, chunk_size))
    clean = LocalPipelineExecutor([CleanChunks(cfg, work, chunk_size)], tasks=tasks, workers=workers,
                                  logging_dir=str(work / "logs" / "clean"))
    # stage 2 always runs again (skip_completed=False): a finished stage 1 is kept, a new output is written
    write = LocalPipelineExecutor([WriteData(cfg, work, out, overwrite, chunk_size)], tasks=1, workers=1,
                                  logging_dir=str(work / "logs" / "write"), depends=clean, skip_completed=False)
    write.run()
    return RunDir(Path(out) if out else run_dir_for(cfg)).data  # what prepare_command returns, in stage 2's process


def _check_not_trained(run: Path, overwrite: bool) -> None:
    """The data of a trained run is what its checkpoints and result were trained on: replace it only by
    starting the run over (--overwrite)."""
    from tunewise.errors import RunError
    from tunewise.runs import trained_parts
    from tunewise.train.rundir import describe_trained, reset_run_dir

    if not trained_parts(run):
        return
    if not overwrite:
        raise RunError(f"this run is already trained ({describe_trained(run)}); new data would no longer match "
                       "what it was trained on", where=str(run),
                       fix="prepare into a new run (--set run.name=NEW) or another folder (--out DIR), or add "
                       "--overwrite to start this run over (deletes its checkpoints and results)")
    print(f"[tunewise] --overwrite: emptying the trained run {run}", file=sys.stderr)
    reset_run_dir(run)


def encode_sample(cfg, n: int):
    """The first n training records as training encodes them: (tokenizer, template, records, encoded, stats).

    `data preview` and the web board's preview both show exactly this.
    """
    from tunewise.data.prepare import prepare
    from tunewise.templates.encode import encode_pretrain, encode_records
    from tunewise.models.load import tokenizer_and_template

    from tunewise.templates.system import settle_system

    prepared = prepare(cfg, None)
    _, tokenizer, template = tokenizer_and_template(cfg)
    choice = settle_system(template, cfg.template.system, list(prepared.records("train")))
    records = list(islice(prepared.records("train"), n))
    from tunewise.config.schema import PREFERENCE_STAGES

    if cfg.train.stage == "pretrain":
        encoded, st = encode_pretrain(tokenizer, records, block_size=cfg.data.max_length)
    elif cfg.train.stage in PREFERENCE_STAGES:
        records, encoded, st = _preference_sample(cfg, tokenizer, template, records)
    else:
        encoded, st = encode_records(tokenizer, template, records, max_length=cfg.data.max_length,
                                     train_on_prompt=cfg.data.train_on_prompt)
    return tokenizer, template, records, encoded, {**prepared.stats, "tokens": {"train": st.to_dict()},
                                                  "system": asdict(choice)}


def _preference_sample(cfg, tokenizer, template, records):
    """Each pair as two examples (its chosen, then its rejected answer; kto: the answer with its label), as the
    preference stage encodes them: the same prompt, only the answer and its end-of-turn supervised."""
    from tunewise.train.data import encode_preference_for

    encoded, st = encode_preference_for(cfg, tokenizer, template, records)
    out_recs, out_enc = [], []
    for e in encoded:  # too-long ones are left out; `record` says where each example came from
        rec = records[e["record"]]
        if "answer" in e:
            out_recs.append({**rec, "side": "desirable" if e["label"] else "undesirable"})
            out_enc.append(e["answer"])
        else:
            out_recs += [{**rec, "side": "chosen"}, {**rec, "side": "rejected"}]
            out_enc += [e["chosen"], e["rejected"]]
    return out_recs, out_enc, st


def _esc(s: str) -> str:
    return s.replace("[", "\\[")


def preview_command(cfg, n: int = 3, color: bool = True) -> None:
    from rich.console import Console

    from tunewise.templates.encode import render_preview

    tokenizer, template, records, encoded, stats = encode_sample(cfg, n)
    console = Console(highlight=False, no_color=not color, soft_wrap=True)
    from tunewise.templates.system import describe

    console.print(f"template: [bold]{template.name}[/bold] ({template.source}); stop tokens: {template.stop_strings}")
    from tunewise.templates.system import SystemChoice

    choice = SystemChoice(**stats["system"])
    if choice.builtin:
        console.print(f"the template's built-in system prompt: {_esc(choice.builtin)!r}")
    if note := describe(choice):
        console.print(f"[yellow]note: {_esc(note)}[/yellow]")
    elif template.system:
        console.print(f"system prompt for conversations without one: {template.system!r}")
    if any(r.get("tools") for r in records):
        how = ("by the tokenizer's own template" if template.tool_format == "native" else
               "in the hermes form: tools in the system prompt, calls as <tool_call> JSON, results as <tool_response>")
        console.print(f"records with tools are rendered {_esc(how)} (template.tools: {template.tool_format}); the calls "
                      "are supervised, tool results and the tools are not")
    console.print("supervised tokens (the loss is computed on them) are shown as [[...]]" + (" in green" if color else ""))
    for i, (rec, enc) in enumerate(zip(records, encoded)):
        side = f" — {rec['side']}" if rec.get("side") else ""
        console.rule(f"example {i + 1}{side} — {rec.get('where', '')} — {len(enc.input_ids)} tokens, "
                     f"{sum(1 for x in enc.labels if x != -100)} supervised")
        console.print(render_preview(tokenizer, enc, color=color))
