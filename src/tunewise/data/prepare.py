"""Data stage orchestration: read -> convert -> clean -> split -> leakage check -> mix -> write.

Writes `data/train.jsonl`, `data/val.jsonl`, `data/dropped.jsonl` and `data/stats.json` in the run
directory. Only records cross into the next stage; tokens are made by `tunewise.templates.encode`.

One streaming pass reads, converts and cleans every record and appends the survivors to a spill file
(`tunewise.data.spill`); dropped records go straight to dropped.jsonl. Splitting, the leakage check,
augmentation, mixing and shuffling then work on index arrays over the spill file, and the outputs are
copied out of it. Memory grows by a few dozen bytes per record (offsets, sources, dedup indexes), never
by the records themselves, so small and very large inputs take the same path.

The files of one preparation are written together into a temporary folder that replaces data/ only when
all of them are complete, so train.jsonl, val.jsonl and stats.json always come from the same run; an
interrupted preparation leaves the previous data/ (and a temporary that the next one removes).
"""

from __future__ import annotations

import tempfile
from array import array
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from tunewise.config.schema import PREFERENCE_STAGES, Config, DatasetSpec
from tunewise.data import preference, tools
from tunewise.data.clean import CHUNK, Cleaner, find_leakage, leak_entry
from tunewise.data.parallel import resolve_workers
from tunewise.data.source import iter_dataset, read_rows, row_item, source_name
from tunewise.data.spill import DropLog, Spill, iter_indices
from tunewise.errors import DataError
from tunewise.fileio import atomic_path, clean_temps, read_jsonl, write_json
from tunewise.runs import RunDir


class PreparedData:
    """Prepared records and their stats.

    Records given as lists stay lists. `prepare()` leaves them in their files and reads a split on first
    use of `.train` / `.val` / `.dropped`; `records(split)` streams one without holding it.
    """

    def __init__(self, train: list[dict] | None = None, val: list[dict] | None = None,
                 dropped: list[dict] | None = None, stats: dict | None = None, *,
                 files: dict[str, Path] | None = None, owner: tempfile.TemporaryDirectory | None = None):
        self._lists = {"train": train, "val": val, "dropped": dropped}
        self.files = dict(files or {})
        self.stats = stats if stats is not None else {}
        self._owner = owner  # keeps a temporary folder (no run directory) alive as long as this object

    def records(self, split: str) -> Iterator[dict]:
        if self._lists[split] is not None:
            yield from self._lists[split]
        elif split in self.files:
            for _, rec in read_jsonl(self.files[split]):
                yield rec

    def stored(self, split: str) -> Iterator[dict | bytes]:
        """The records of a split as they are stored: the lines of its file (JSON, for whoever reads them: a worker
        process parses them there), or the dicts given."""
        if self._lists[split] is not None:
            yield from self._lists[split]
        elif split in self.files:
            with open(self.files[split], "rb") as f:
                yield from (line for line in f if line.strip())

    def _load(self, split: str) -> list[dict]:
        if self._lists[split] is None:
            self._lists[split] = list(self.records(split))
        return self._lists[split]

    def moved_to(self, folder: Path) -> "PreparedData":
        """The same data after its folder was renamed to `folder`."""
        self.files = {k: Path(folder) / v.name for k, v in self.files.items()}
        return self

    @property
    def train(self) -> list[dict]:
        return self._load("train")

    @property
    def val(self) -> list[dict]:
        return self._load("val")

    @property
    def dropped(self) -> list[dict]:
        return self._load("dropped")


def read_dataset(spec: DatasetSpec, *, dataset_info: str | None, strict: bool, default_system: str | None = None,
                 source: str | None = None) -> tuple[list[dict], list[dict]]:
    """Read one dataset into lists: (records, dropped)."""
    records, dropped = [], []
    for rec, bad in iter_dataset(spec, dataset_info=dataset_info, strict=strict, default_system=default_system, source=source):
        if bad is None:
            records.append(rec)
        else:
            dropped.append(bad)
    return records, dropped


# The `ChunkWork` results of one cleaning stream ("train" or "val", see `cleaning_streams`), in input order,
# computed elsewhere (the tasks of tunewise.data.distributed): what the cleaning pass takes instead of reading the
# rows itself.
Cleaned = Callable[[str], Iterable[dict]]


def _feed(rows: Iterable[tuple], spill: Spill, cleaner: Cleaner | None, chunk_size: int, per: dict,
          done: Iterable[dict] | None = None) -> None:
    """Rows of `tunewise.data.source.read_rows` into the spill file (through the cleaner), counted per dataset;
    with `done`, the rows are not read: their chunks were cleaned elsewhere."""
    if cleaner is not None:
        if done is not None:
            cleaner.take(done)
        else:
            cleaner.run(rows, chunk_size)
        counts = cleaner.read_counts
    else:
        counts = {}
        for row in rows:
            rec, bad = row_item(row)
            c = counts.setdefault(row[1][6], [0, 0])
            c[0] += 1
            c[1] += bad is not None
            if bad is None:
                spill.add(rec)
            else:
                spill.drops.drop(bad)
    for src, (n, bad) in counts.items():
        info = per[src]
        info["rows_read"] += n
        info["bad_rows"] += bad
        info["records"] += n - bad


_NO_INDEX = np.zeros(0, dtype=np.int64)


def _split(pool: np.ndarray, val_size: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if val_size >= 1 and int(val_size) >= len(pool):
        raise DataError(f"data.val_size asks for {int(val_size)} validation records, but only {len(pool)} record(s) "
                        "remain after reading and cleaning, which would leave nothing (or almost nothing) to train on",
                        where="data.val_size",
                        fix=f"set data.val_size below {len(pool)} (a count) or to a share such as 0.1, or add data")
    if val_size <= 0 or len(pool) < 2:
        return pool, _NO_INDEX
    n_val = int(round(len(pool) * val_size)) if val_size < 1 else int(val_size)
    n_val = max(1, min(n_val, len(pool) - 1))
    chosen = np.zeros(len(pool), dtype=bool)
    chosen[rng.permutation(len(pool))[:n_val]] = True
    return pool[~chosen], pool[chosen]


def _mix(idx: np.ndarray, src: np.ndarray, weights: dict[int, float], rng: np.random.Generator) -> np.ndarray:
    """Apply per-dataset weights: whole copies plus a seeded sample for the fraction.

    A dataset of n records with weight w contributes round(n * w) records, so the realised shares
    match the requested ones n_i*w_i / sum(n_j*w_j) up to rounding, and the same seed gives the same mix.
    """
    out = [_NO_INDEX]
    for sid in np.unique(src[idx]).tolist():
        recs = idx[src[idx] == sid]
        w = weights.get(sid, 1.0)
        whole, frac = int(w), w - int(w)
        out.append(np.tile(recs, whole))
        if frac > 0:
            out.append(rng.choice(recs, int(round(len(recs) * frac)), replace=False))
    return np.concatenate(out)


def _sample(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if not len(pool) or n <= 0:
        return _NO_INDEX
    if n <= len(pool):
        return rng.choice(pool, n, replace=False)
    return np.concatenate([np.tile(pool, n // len(pool)), rng.choice(pool, n % len(pool), replace=False)])


def is_mixed_in(rec: dict) -> bool:
    """A record the run mixed in (replay of a previous run's data, general instructions), not the user's."""
    return str(rec.get("source", "")).startswith(("replay:", "general:"))


def _replay(cfg: Config, n_new: int, rng: np.random.Generator, spill: Spill) -> np.ndarray:
    """Incremental training: mix back part of the previous run's training data (catastrophic forgetting)."""
    from tunewise.models.load import is_run_dir

    prev = Path(cfg.model.name_or_path)
    if cfg.data.replay_ratio <= 0 or not prev.is_dir() or not is_run_dir(prev):
        return _NO_INDEX
    old_path = RunDir(prev).train_data
    if not old_path.exists():
        return _NO_INDEX
    stage = cfg.train.stage  # only records this stage trains on: no SFT records in a DPO run after an SFT run
    lines = np.array(array("q", (n for n, r in read_jsonl(old_path) if not is_mixed_in(r) and preference.fits(r, stage))),
                     dtype=np.int64)
    picks = _sample(np.arange(len(lines)), int(round(n_new * cfg.data.replay_ratio)), rng)
    wanted = np.unique(picks)
    at = np.empty(len(wanted), dtype=np.int64)  # spill index of each wanted old record
    k = 0
    for lineno, r in read_jsonl(old_path):  # one more pass, copying only the picked records
        if k < len(wanted) and lineno == lines[wanted[k]]:
            at[k] = spill.add({**r, "source": f"replay:{r.get('source', prev.name)}"})
            k += 1
    return at[np.searchsorted(wanted, picks)]


def _general(cfg: Config, n_new: int, rng: np.random.Generator, spill: Spill) -> np.ndarray:
    if not cfg.data.general or cfg.data.general_ratio <= 0 or cfg.train.stage in PREFERENCE_STAGES:
        return _NO_INDEX  # general instructions have no rejected answers or labels to train a preference stage on
    start = len(spill)
    for spec in cfg.data.general:
        for rec, bad in iter_dataset(spec, dataset_info=cfg.data.dataset_info, strict=cfg.data.strict, stage=cfg.train.stage):
            if bad is None and (cfg.train.stage != "sft" or "messages" in rec):
                spill.add({**rec, "source": f"general:{rec['source']}"})
    return _sample(np.arange(start, len(spill)), int(round(n_new * cfg.data.general_ratio)), rng)


def _leakage(spill: Spill, train: np.ndarray, val: np.ndarray, chunk_size: int) -> np.ndarray:
    """Validation items that near-duplicate a training item would make validation loss look too good."""

    def chunks(members: np.ndarray):
        mask = np.zeros(len(spill), dtype=bool)
        mask[members] = True
        for start, keys in spill.band_key_blocks(chunk_size):  # in spill order: training ids increase
            ids = start + np.flatnonzero(mask[start:start + len(keys)])
            if len(ids):
                yield keys[ids - start], ids

    leaked = dict(find_leakage(spill.bands, chunks(train), chunks(val)))
    for v, t in sorted(leaked.items()):
        spill.drops.drop(leak_entry(spill.record(v), spill.kept_where(t)))
    return val[~np.isin(val, np.fromiter(leaked, dtype=np.int64, count=len(leaked)))]


def _unique_sources(specs: list[DatasetSpec]) -> list[str]:
    """One report name per dataset: two files both called data.jsonl become data and data#2."""
    names, seen = [], Counter()
    for spec in specs:
        base = source_name(spec)
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def prepare(cfg: Config, run_dir: Path | None = None, *, clean: bool = True, chunk_size: int = CHUNK,
            cleaned: Cleaned | None = None) -> PreparedData:
    """Prepare the data of `cfg` into run_dir/data (or a temporary folder): see the module docstring.

    `chunk_size` records are cleaned together; it bounds the memory of the cleaning pass, not the result.
    `cleaned`: the chunks' per-record cleaning was done elsewhere (see `Cleaned`); the rest is the same.
    """
    if run_dir is None:
        owner = tempfile.TemporaryDirectory(prefix="tunewise-data-")
        return prepare_into(cfg, Path(owner.name), clean=clean, chunk_size=chunk_size, owner=owner, cleaned=cleaned)
    final = RunDir(run_dir).data
    _check_datasets(cfg)
    clean_temps(run_dir)  # what an interrupted preparation left: .data.*.tmp
    empty = None
    with atomic_path(final, is_dir=True) as staging:
        try:
            prepared = prepare_into(cfg, staging, clean=clean, chunk_size=chunk_size, report_dir=final, cleaned=cleaned)
        except EmptyTrainingSet as e:  # still replace data/: its dropped.jsonl says why each record went
            empty = e
    if empty is not None:
        raise empty
    return prepared.moved_to(final)


class EmptyTrainingSet(DataError):
    """Nothing survived reading and cleaning."""


def _check_datasets(cfg: Config) -> None:
    if not cfg.data.datasets:
        raise DataError("no training data configured", where="data.datasets",
                        fix="add at least one dataset, e.g. data: {datasets: [my_data.jsonl]}")


def prepare_into(cfg: Config, data_dir: Path, *, clean: bool = True, chunk_size: int = CHUNK,
                 owner: tempfile.TemporaryDirectory | None = None, report_dir: Path | None = None,
                 cleaned: Cleaned | None = None) -> PreparedData:
    """Prepare straight into `data_dir` (no swap); `report_dir` is the folder the messages name."""
    d = cfg.data
    _check_datasets(cfg)
    if cleaned is not None and not clean:
        raise ValueError("chunks cleaned elsewhere (cleaned=) need clean=True")
    data_dir.mkdir(parents=True, exist_ok=True)
    files = {split: data_dir / f"{split}.jsonl" for split in ("train", "val", "dropped")}
    leak = clean and leak_keys(cfg)
    bands = Cleaner.bands_for(d.clean) if leak else None
    empty = None
    with atomic_path(files["dropped"]) as dropped_tmp, DropLog(dropped_tmp) as drops, \
            Spill(data_dir, drops, bands) as spill:
        per, steps = _read_and_clean(cfg, spill, clean=clean, leak=leak, chunk_size=chunk_size, cleaned=cleaned)
        n_pool = sum(v["kept"] for v in per.values())
        if n_pool:
            stats = _split_mix_write(cfg, spill, per, steps, n_pool, files, clean=clean, chunk_size=chunk_size)
        else:  # leave the block normally, so dropped.jsonl is written for the error to point at
            reasons = drops.by_step
            empty = EmptyTrainingSet(
                where=", ".join(str(s.path or s.name) for s in d.datasets),
                what="the training set is empty after reading and cleaning"
                + (f" (dropped: {', '.join(f'{k}={v}' for k, v in reasons.items())})" if reasons else ""),
                fix="check data/dropped.jsonl for why records were dropped, relax data.clean settings, or add data"
                + ("" if owner is not None else f" ({(report_dir or data_dir) / 'dropped.jsonl'})"),
            )
    if empty is not None:
        raise empty
    write_json(data_dir / "stats.json", stats)
    return PreparedData(stats=stats, files=files, owner=owner)


def leak_keys(cfg: Config) -> bool:
    """Whether the cleaning pass keeps each record's band keys for the leakage check between the splits."""
    d = cfg.data
    return d.clean.leakage_check and (bool(d.val_datasets) or d.val_size > 0)


def cleaning_streams(cfg: Config, per: dict | None = None) -> dict[str, tuple[Iterator[tuple], dict]]:
    """The two streams the cleaning pass reads, {"train": (rows, tag), "val": (rows, tag)}: the rows of the training
    datasets, then of the separate validation datasets (cleaned on their own, drops tagged with `tag`). The rows are
    read lazily; `per` gets each dataset's report entry at once."""
    d = cfg.data
    out = {}
    for name, specs, prefix, tag in (("train", d.datasets, "", {}), ("val", d.val_datasets, "val:", {"split": "val"})):
        sources = [prefix + src for src in _unique_sources(specs)]
        for spec, src in zip(specs, sources):
            if per is not None:
                per.setdefault(src, {"path": spec.path, "reader": spec.reader, "rows_read": 0, "bad_rows": 0,
                                     "records": 0, "weight": spec.weight, "system": spec.system})
        rows = (row for spec, src in zip(specs, sources)
                for row in read_rows(spec, dataset_info=d.dataset_info, strict=d.strict,
                                     default_system=cfg.template.system, source=src, stage=cfg.train.stage))
        out[name] = (rows, tag)
    return out


def _read_and_clean(cfg: Config, spill: Spill, *, clean: bool, leak: bool, chunk_size: int,
                    cleaned: Cleaned | None = None) -> tuple[dict, list]:
    """The streaming pass: training datasets, then separate validation datasets (cleaned on their own)."""
    d = cfg.data
    per: dict[str, dict] = {}
    streams = cleaning_streams(cfg, per)
    workers = resolve_workers(d.num_workers)
    (rows, tag), done = streams["train"], cleaned("train") if cleaned else None
    cleaner = Cleaner(d.clean, spill, keys=leak, tag=tag, workers=workers) if clean else None
    _feed(rows, spill, cleaner, chunk_size, per, done)
    n_read = sum(v["records"] for v in per.values())
    steps = [{"step": "read", "before": sum(v["rows_read"] for v in per.values()), "after": n_read}]
    steps += cleaner.steps if cleaner else []
    kept = _by_source(spill, spill.source_ids(), np.arange(len(spill)))
    for src, info in per.items():
        info["kept"] = kept[src]
    (rows, tag), done = streams["val"], cleaned("val") if cleaned else None
    val_cleaner = Cleaner(d.clean, spill, keys=leak, tag=tag, workers=workers) if clean else None
    _feed(rows, spill, val_cleaner, chunk_size, per, done)
    for src in [s for s in per if s.startswith("val:")]:
        del per[src]  # validation datasets are not part of the training report
    return per, steps


def _split_mix_write(cfg: Config, spill: Spill, per: dict, steps: list, n_pool: int, files: dict, *, clean: bool,
                     chunk_size: int) -> dict:
    d = cfg.data
    rng = np.random.default_rng(cfg.train.seed)
    pool = rng.permutation(n_pool) if d.shuffle else np.arange(n_pool)
    if d.val_datasets:
        train, val = pool, np.arange(n_pool, len(spill))
    else:
        train, val = _split(pool, d.val_size, rng)
    if clean and len(val):
        before = len(val)
        if d.clean.leakage_check and len(train):
            val = _leakage(spill, train, val, chunk_size)
        steps.append({"step": "leakage", "before": before, "after": len(val)})
    added: list[int] = []
    if d.augment.enabled:  # training split only
        from tunewise.data.augment import iter_augmented

        added = [spill.add(r) for r in iter_augmented((spill.record(i) for i in iter_indices(train)), d.augment, cfg.train.seed)]
        train = np.concatenate([train, np.asarray(added, dtype=np.int64)])
    src = spill.source_ids()
    sid = {name: i for i, name in enumerate(spill.sources)}
    weights = {sid[name]: info["weight"] for name, info in per.items() if name in sid}
    pre_mix = _by_source(spill, src, train)
    mixed = _mix(train, src, weights, rng)
    steps.append({"step": "mix", "before": len(train), "after": len(mixed)})
    n_new = len(mixed)
    train = np.concatenate([mixed, _replay(cfg, n_new, rng, spill), _general(cfg, n_new, rng, spill)])
    if d.shuffle:
        train = train[rng.permutation(len(train))]
    src = spill.source_ids()
    in_train, in_val = _by_source(spill, src, train), _by_source(spill, src, val)
    wanted_total = sum(pre_mix[s] * info["weight"] for s, info in per.items()) or 1.0
    for name, info in per.items():
        info.update(dropped=info["bad_rows"] + (info["records"] - info["kept"]), val=in_val[name],
                    train_before_weight=pre_mix[name], train=in_train[name],
                    requested_share=round(pre_mix[name] * info["weight"] / wanted_total * n_new / max(1, len(train)), 4),
                    share=round(in_train[name] / len(train), 4))
    # KTO: a pair stays one item through splitting (its two examples never land in different splits) and is
    # written as its two examples, the chosen answer desirable and the rejected one not.
    n_train, n_val = (_write(spill, idx, files[split], kto=cfg.train.stage == "kto")
                      for split, idx in (("train", train), ("val", val)))
    if n_train + n_val > len(train) + len(val):
        steps.append({"step": "kto_split", "before": len(train) + len(val), "after": n_train + n_val})
    prefs = preference.counts(spill.kinds(), train, val, cfg.train.stage)
    tool_stats = tools.counts(*spill.tool_counts(), train, val)
    return {
        "num_train": n_train, "num_val": n_val, "num_dropped": len(spill.drops),
        "steps": steps,
        "datasets": per,
        "sources_read": {name: info["records"] for name, info in per.items()},
        "mix": {name: {"records": n, "share": round(n / len(train), 4), "weight": per[name]["weight"] if name in per else 1.0}
                for name, n in sorted(in_train.items())},
        "dropped_by_step": dict(spill.drops.by_step),
        "augmented": len(added),
        "seed": cfg.train.seed,
        **({"preference": prefs} if prefs else {}),
        **({"tools": tool_stats} if tool_stats else {}),
    }


def _write(spill: Spill, idx: np.ndarray, path: Path, *, kto: bool) -> int:
    """Write one split; the number of examples written."""
    if kto:
        return spill.write(idx, path, split_pairs=True)
    spill.write(idx, path)
    return len(idx)


def _by_source(spill: Spill, src: np.ndarray, idx: np.ndarray) -> Counter:
    counts = np.bincount(src[idx], minlength=len(spill.sources)) if len(idx) else np.zeros(len(spill.sources), int)
    return Counter({spill.sources[i]: int(n) for i, n in enumerate(counts.tolist()) if n})
