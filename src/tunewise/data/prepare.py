"""Data stage orchestration: read -> convert -> clean -> split -> leakage check -> mix -> write.

Writes `data/train.jsonl`, `data/val.jsonl`, `data/dropped.jsonl` and `data/stats.json` in the run
directory. Only records cross into the next stage; tokens are made by `tunewise.templates.encode`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunewise.config.schema import Config, DatasetSpec
from tunewise.data import formats, readers
from tunewise.data.readers import BadRow
from tunewise.errors import DataError
from tunewise.fileio import read_json, write_json, write_jsonl


@dataclass
class PreparedData:
    train: list[dict]
    val: list[dict]
    dropped: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def _from_dataset_info(spec: DatasetSpec, info_path: str | None) -> DatasetSpec:
    """Fill path/format/columns/tags of a dataset named in a LLaMA-Factory dataset_info.json."""
    if spec.path or not spec.name:
        return spec
    if not info_path:
        raise DataError(
            f"dataset '{spec.name}' has no path and no data.dataset_info is set",
            where="data.datasets",
            fix="give the dataset a `path:`, or set data.dataset_info to your LLaMA-Factory dataset_info.json",
        )
    info = read_json(info_path)
    if spec.name not in info:
        import difflib

        close = difflib.get_close_matches(spec.name, list(info), n=3)
        raise DataError(
            f"dataset '{spec.name}' is not in dataset_info.json",
            where=str(info_path),
            fix=f"did you mean: {', '.join(close)}?" if close else f"known datasets: {', '.join(sorted(info))}",
        )
    entry = info[spec.name]
    if "file_name" not in entry:
        raise DataError(f"dataset '{spec.name}' has no file_name (hub/script datasets need network)", where=str(info_path),
                        fix="download the data and point file_name at the local file")
    path = Path(info_path).parent / entry["file_name"]
    fmt = {"alpaca": "alpaca", "sharegpt": "sharegpt"}.get(entry.get("formatting", "alpaca"), "alpaca")
    columns = dict(entry.get("columns", {}))
    if fmt == "alpaca" and "prompt" in columns and "response" not in columns and len(columns) == 1:
        fmt = "text"  # LLaMA-Factory pretraining sets: columns: {prompt: text}
        columns = {"text": columns["prompt"]}
    tags = dict(entry.get("tags", {}))
    if fmt == "sharegpt" and tags.get("role_tag") == "role":
        fmt = "messages"  # OpenAI-style messages declared as sharegpt
    return spec.model_copy(update={"path": str(path), "format": fmt, "columns": {**columns, **spec.columns},
                                   "tags": {**tags, **spec.tags}})


def source_name(spec: DatasetSpec) -> str:
    return spec.name or Path(spec.path or "data").stem


def read_dataset(spec: DatasetSpec, *, dataset_info: str | None, strict: bool, default_system: str | None = None,
                 source: str | None = None) -> tuple[list[dict], list[dict]]:
    """Read one dataset into records; returns (records, dropped). Strict mode raises on the first bad row."""
    spec = _from_dataset_info(spec, dataset_info)
    if not spec.path:
        raise DataError("dataset has neither path nor name", where="data.datasets", fix="add `path: your_file.jsonl`")
    source = source or source_name(spec)
    records, dropped = [], []
    fmt = spec.format
    columns, tags = dict(spec.columns), dict(spec.tags)
    system = spec.system or default_system

    def bad(where: str, reason: str, raw=None, fix: str | None = None):
        if strict:
            raise DataError(reason, where=where, fix=fix or "fix or remove this record, or set data.strict: false to skip bad records")
        dropped.append({"step": "read", "reason": reason, "where": where, "source": source, "record": raw})

    for row in readers.read(spec.path, spec.reader, spec.options):
        if isinstance(row, BadRow):
            bad(row.where, row.reason, row.raw, fix="fix the syntax of this row, or set data.strict: false to skip malformed rows")
            continue
        if fmt == "auto":
            try:
                fmt = formats.detect(row.data, columns)
            except DataError as e:
                raise DataError(e.what, where=row.where, fix=e.fix) from None
        try:
            rec = formats.convert(row.data, fmt, columns, tags)
        except formats.RecordError as e:
            bad(f"{row.where}", f"record field '{e.field}': {e.reason}", row.data,
                fix=f"fix field '{e.field}' in this record, map the right column with `columns:`, or set data.strict: false")
            continue
        if system and "messages" in rec and rec["messages"][0]["role"] != "system":
            rec["messages"].insert(0, {"role": "system", "content": system})
        rec["source"], rec["where"] = source, row.where
        records.append(rec)
    return records, dropped


def _split(records: list[dict], val_size: float, rng: random.Random) -> tuple[list[dict], list[dict]]:
    if val_size <= 0 or len(records) < 2:
        return records, []
    n_val = int(round(len(records) * val_size)) if val_size < 1 else int(val_size)
    n_val = max(1, min(n_val, len(records) - 1))
    idx = list(range(len(records)))
    rng.shuffle(idx)
    val_idx = set(idx[:n_val])
    return [r for i, r in enumerate(records) if i not in val_idx], [r for i, r in enumerate(records) if i in val_idx]


def _mix(records: list[dict], weights: dict[str, float], rng: random.Random) -> list[dict]:
    """Apply per-dataset weights: whole copies plus a seeded sample for the fraction.

    A dataset of n records with weight w contributes round(n * w) records, so the realised shares
    match the requested ones n_i*w_i / sum(n_j*w_j) up to rounding, and the same seed gives the same mix.
    """
    by_src: dict[str, list[dict]] = {}
    for r in records:
        by_src.setdefault(r["source"], []).append(r)
    out = []
    for src, recs in by_src.items():
        w = weights.get(src, 1.0)
        whole, frac = int(w), w - int(w)
        out += recs * whole
        if frac > 0:
            out += rng.sample(recs, int(round(len(recs) * frac)))
    return out


def _sample(records: list[dict], n: int, rng: random.Random) -> list[dict]:
    if not records or n <= 0:
        return []
    if n <= len(records):
        return rng.sample(records, n)
    return records * (n // len(records)) + rng.sample(records, n % len(records))


def _replay(cfg: Config, n_new: int, rng: random.Random) -> list[dict]:
    """Incremental training: mix back part of the previous run's training data (catastrophic forgetting)."""
    from tunewise.models.load import is_run_dir

    prev = Path(cfg.model.name_or_path)
    if cfg.data.replay_ratio <= 0 or not prev.is_dir() or not is_run_dir(prev):
        return []
    old_path = prev / "data" / "train.jsonl"
    if not old_path.exists():
        return []
    from tunewise.fileio import read_jsonl

    old = [r for _, r in read_jsonl(old_path) if not str(r.get("source", "")).startswith(("replay:", "general:"))]
    picked = _sample(old, int(round(n_new * cfg.data.replay_ratio)), rng)
    return [{**r, "source": f"replay:{r.get('source', prev.name)}"} for r in picked]


def _general(cfg: Config, n_new: int, rng: random.Random) -> list[dict]:
    if not cfg.data.general or cfg.data.general_ratio <= 0:
        return []
    pool: list[dict] = []
    for spec in cfg.data.general:
        recs, _ = read_dataset(spec, dataset_info=cfg.data.dataset_info, strict=cfg.data.strict)
        pool += recs
    if cfg.train.stage == "sft":
        pool = [r for r in pool if "messages" in r]
    picked = _sample(pool, int(round(n_new * cfg.data.general_ratio)), rng)
    return [{**r, "source": f"general:{r['source']}"} for r in picked]


def _unique_sources(specs: list[DatasetSpec]) -> list[str]:
    """One report name per dataset: two files both called data.jsonl become data and data#2."""
    names, seen = [], Counter()
    for spec in specs:
        base = source_name(spec)
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def prepare(cfg: Config, run_dir: Path | None = None, *, clean: bool = True) -> PreparedData:
    d = cfg.data
    if not d.datasets:
        raise DataError("no training data configured", where="data.datasets",
                        fix="add at least one dataset, e.g. data: {datasets: [my_data.jsonl]}")
    rng = random.Random(cfg.train.seed)
    all_train, dropped = [], []
    weights: dict[str, float] = {}
    per: dict[str, dict] = {}
    for spec, src in zip(d.datasets, _unique_sources(d.datasets)):
        recs, bad = read_dataset(spec, dataset_info=d.dataset_info, strict=d.strict, default_system=cfg.template.system,
                                 source=src)
        weights[src] = spec.weight
        per[src] = {"path": spec.path, "reader": spec.reader, "rows_read": len(recs) + len(bad), "bad_rows": len(bad),
                    "records": len(recs), "weight": spec.weight, "system": spec.system}
        all_train += recs
        dropped += bad
    val: list[dict] = []
    for spec, src in zip(d.val_datasets, _unique_sources(d.val_datasets)):
        recs, bad = read_dataset(spec, dataset_info=d.dataset_info, strict=d.strict, default_system=cfg.template.system,
                                 source=f"val:{src}")
        val += recs
        dropped += bad

    n_read = sum(v["records"] for v in per.values())
    steps = [{"step": "read", "before": sum(v["rows_read"] for v in per.values()), "after": n_read}]
    from tunewise.data.clean import clean_records, drop_leakage

    ccfg = d.clean
    if clean:
        res = clean_records(all_train, ccfg)
        all_train, dropped, steps = res.kept, dropped + res.dropped, steps + res.steps
        if val:
            vres = clean_records(val, ccfg)
            val, dropped = vres.kept, dropped + [{**x, "split": "val"} for x in vres.dropped]
    if not all_train:
        reasons = Counter(x["step"] for x in dropped)
        if run_dir is not None:  # the fix below points at it, so it must exist
            write_jsonl(Path(run_dir) / "data" / "dropped.jsonl", dropped)
        raise DataError(
            "the training set is empty after reading and cleaning"
            + (f" (dropped: {', '.join(f'{k}={v}' for k, v in reasons.items())})" if reasons else ""),
            fix="check data/dropped.jsonl for why records were dropped, relax data.clean settings, or add data"
            + ("" if run_dir is None else f" ({Path(run_dir) / 'data' / 'dropped.jsonl'})"),
        )
    kept_by_src = Counter(r["source"] for r in all_train)
    if d.shuffle:
        rng.shuffle(all_train)
    if not d.val_datasets:
        all_train, val = _split(all_train, d.val_size, rng)
    if clean and val:
        val, leaked = drop_leakage(all_train, val, ccfg)
        dropped += leaked
        steps.append({"step": "leakage", "before": len(val) + len(leaked), "after": len(val)})
    from tunewise.data.augment import augment_records

    augmented = augment_records(all_train, d.augment, cfg.train.seed)  # training split only
    pre_mix = Counter(r["source"] for r in all_train + augmented)
    train = _mix(all_train + augmented, weights, rng)
    steps.append({"step": "mix", "before": len(all_train) + len(augmented), "after": len(train)})
    n_new = len(train)
    train += _replay(cfg, n_new, rng)
    train += _general(cfg, n_new, rng)
    if d.shuffle:
        rng.shuffle(train)
    in_train, in_val = Counter(r["source"] for r in train), Counter(r["source"] for r in val)
    wanted_total = sum(pre_mix[s] * weights[s] for s in per) or 1.0
    for src, info in per.items():
        info.update(kept=kept_by_src[src], dropped=info["bad_rows"] + (info["records"] - kept_by_src[src]),
                    val=in_val[src], train_before_weight=pre_mix[src], train=in_train[src],
                    requested_share=round(pre_mix[src] * weights[src] / wanted_total * n_new / max(1, len(train)), 4),
                    share=round(in_train[src] / len(train), 4))
    stats = {
        "num_train": len(train), "num_val": len(val), "num_dropped": len(dropped),
        "steps": steps,
        "datasets": per,
        "sources_read": {src: info["records"] for src, info in per.items()},
        "mix": {src: {"records": n, "share": round(n / len(train), 4), "weight": weights.get(src, 1.0)}
                for src, n in sorted(in_train.items())},
        "dropped_by_step": dict(Counter(x["step"] for x in dropped)),
        "augmented": len(augmented),
        "seed": cfg.train.seed,
    }
    out = PreparedData(train, val, dropped, stats)
    if run_dir is not None:
        write_prepared(out, Path(run_dir))
    return out


def write_prepared(p: PreparedData, run_dir: Path) -> None:
    data_dir = run_dir / "data"
    write_jsonl(data_dir / "train.jsonl", p.train)
    write_jsonl(data_dir / "val.jsonl", p.val)
    write_jsonl(data_dir / "dropped.jsonl", p.dropped)
    write_json(data_dir / "stats.json", p.stats)
