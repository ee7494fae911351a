"""Spill files of the streaming data stage: records written once, then read back by index.

`Spill` holds the records that survive cleaning as JSON lines in a temporary file next to the output,
with their byte offsets and sources in compact arrays (and, when the leakage check needs them, their LSH
band keys in a side file). Splitting, mixing and shuffling are then index arrays over it, and
train.jsonl / val.jsonl are copied out of it line by line. `DropLog` streams dropped records to
dropped.jsonl as they happen. Both are the `Sink` that `tunewise.data.clean.Cleaner` writes to.
"""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections import Counter
from itertools import accumulate, islice
from pathlib import Path
from typing import Iterator

import numpy as np

from tunewise.data.clean import json_line, record_info, where_of
from tunewise.data.preference import PAIR, kto_examples
from tunewise.fileio import atomic_path


def iter_indices(indices: np.ndarray, block: int = 1 << 16) -> Iterator[int]:
    """The indices as Python ints, converted a block at a time (a list of millions of ints is ~36 bytes each)."""
    for start in range(0, len(indices), block):
        yield from indices[start:start + block].tolist()


class DropLog:
    """Dropped records, one JSON line each, appended to `path` as they are dropped; ids are byte offsets."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._f = open(self.path, "wb", buffering=1 << 16)
        self._pos = 0
        self.by_step: Counter = Counter()

    def __len__(self) -> int:
        return sum(self.by_step.values())

    def drop(self, entry: dict) -> int:
        return self.drop_line(json_line(entry), entry["step"])

    def drop_line(self, line: bytes, step: str) -> int:
        self._f.write(line)
        at, self._pos = self._pos, self._pos + len(line)
        self.by_step[step] += 1
        return at

    def flush(self) -> None:
        self._f.flush()

    def dropped_where(self, offset: int) -> str:
        self._f.flush()
        with open(self.path, "rb") as f:
            f.seek(offset)
            return where_of(json.loads(f.readline()))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "DropLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Spill:
    """Records as JSON lines in a temporary file in `folder`; removed on close."""

    def __init__(self, folder: Path, drops: DropLog, bands: int | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.drops, self.bands = drops, bands
        fd, name = tempfile.mkstemp(prefix=".spill-", suffix=".jsonl", dir=folder)
        self.path = Path(name)
        self._w = os.fdopen(fd, "wb", buffering=1 << 20)
        self._r = os.open(self.path, os.O_RDONLY)
        self._dirty = False
        self._offsets = array("q", [0])  # line i is bytes offsets[i]:offsets[i+1]
        self._src = array("I")
        self._kind = array("B")  # tunewise.data.preference.kind of each record, for the counts in stats.json
        # tools, calls and parallel-call turns of each record (tunewise.data.tools.counts_of), for the same
        self._has_tools, self._calls, self._parallel = array("B"), array("I"), array("I")
        self.sources: list[str] = []
        self._source_id: dict[str, int] = {}
        self.keys_path: Path | None = None
        self._keys_w = None
        if bands:
            fd, name = tempfile.mkstemp(prefix=".spill-", suffix=".keys", dir=folder)
            self.keys_path, self._keys_w = Path(name), os.fdopen(fd, "wb", buffering=1 << 20)
        self._n_keys = 0

    def __len__(self) -> int:
        return len(self._src)

    def source_id(self, name: str) -> int:
        if name not in self._source_id:
            self._source_id[name] = len(self.sources)
            self.sources.append(name)
        return self._source_id[name]

    def add(self, rec: dict, band_keys: np.ndarray | None = None) -> int:
        return self.keep_many([json_line(rec)], [record_info(rec)], None if band_keys is None else band_keys[None])

    # the Sink protocol of tunewise.data.clean
    def keep_many(self, lines: list[bytes], infos: list, band_keys: np.ndarray | None) -> int:
        first = len(self._src)
        self._w.write(b"".join(lines))
        self._dirty = True
        self._offsets.extend(islice(accumulate(map(len, lines), initial=self._offsets[-1]), 1, None))
        self._src.extend(self.source_id(info[0]) for info in infos)
        for column, values in zip((self._kind, self._has_tools, self._calls, self._parallel), list(zip(*infos))[1:]):
            column.extend(values)
        if band_keys is not None and self._keys_w is not None:
            if self._n_keys != first:
                raise RuntimeError("band keys must be given for every spilled record or for none")
            self._keys_w.write(np.ascontiguousarray(band_keys, dtype="<u8").tobytes())
            self._n_keys += len(lines)
        return first

    def drop(self, line: bytes, step: str) -> int:
        return self.drops.drop_line(line, step)

    def flush(self) -> None:
        """Write out what is buffered (before worker processes fork: they must not inherit half a buffer)."""
        for h in (self._w, self._keys_w):
            if h is not None:
                h.flush()
        self._dirty = False
        self.drops.flush()

    def kept_where(self, i: int) -> str:
        return where_of(self.record(i))

    def dropped_where(self, i: int) -> str:
        return self.drops.dropped_where(i)

    def line(self, i: int) -> bytes:
        if self._dirty:
            self._w.flush()
            self._dirty = False
        start = self._offsets[i]
        return os.pread(self._r, self._offsets[i + 1] - start, start)

    def record(self, i: int) -> dict:
        return json.loads(self.line(i))

    def source_ids(self) -> np.ndarray:
        """Source id of every spilled record (names in `sources`)."""
        return np.array(self._src, dtype=np.uint32)

    def kinds(self) -> np.ndarray:
        """The kind of every spilled record (plain, pair, KTO desirable or undesirable: tunewise.data.preference)."""
        return np.array(self._kind, dtype=np.uint8)

    def tool_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per record: whether it has tools, its calls, its assistant turns with parallel calls."""
        return (np.array(self._has_tools, dtype=np.uint8), np.array(self._calls, dtype=np.int64),
                np.array(self._parallel, dtype=np.int64))

    def band_key_blocks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first index, (n, bands) uint64 keys) for consecutive blocks of the records that have band keys."""
        if self._keys_w is None:
            return
        self._keys_w.flush()
        width = 8 * self.bands
        with open(self.keys_path, "rb") as f:
            for start in range(0, self._n_keys, rows):
                raw = f.read(width * min(rows, self._n_keys - start))
                yield start, np.frombuffer(raw, dtype="<u8").reshape(-1, self.bands)

    def write(self, indices: np.ndarray, path: Path, *, split_pairs: bool = False) -> int:
        """Copy the records at `indices`, in that order, into `path` (atomically); the number of lines written.

        `split_pairs`: write each preference pair as its two KTO examples (tunewise.data.preference.kto_examples).
        """
        n = 0
        with atomic_path(path) as tmp, open(tmp, "wb", buffering=1 << 20) as f:
            for i in iter_indices(indices):
                if split_pairs and self._kind[i] == PAIR:
                    examples = kto_examples(self.record(i))
                    f.write(b"".join(json_line(ex) for ex in examples))
                    n += len(examples)
                else:
                    f.write(self.line(i))
                    n += 1
        return n

    def close(self) -> None:
        for h in (self._w, self._keys_w):
            if h is not None:
                h.close()
        os.close(self._r)
        self.path.unlink(missing_ok=True)
        if self.keys_path is not None:
            self.keys_path.unlink(missing_ok=True)

    def __enter__(self) -> "Spill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
