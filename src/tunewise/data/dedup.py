"""Compact duplicate indexes, so the data stage can dedup millions of records in bounded memory.

Exact duplicates are keyed by an 8-byte blake2b digest of the record text. Near duplicates use datasketch
MinHash signatures, banded the way datasketch's MinHashLSH bands them (its optimal (b, r) for the
threshold), but each band is folded into one uint64 and kept in sorted numpy runs instead of Python
dicts of byte strings: 12 bytes per record per band instead of a few hundred.

Both keep the first record: a record that collides with an earlier kept record is the duplicate, and a
dropped record is never indexed. Like MinHashLSH's `query`, a band collision is the answer; candidates
are not verified against the estimated Jaccard similarity.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from typing import Iterable

import numpy as np

ABSENT = -1  # what lookups answer for a key no indexed record has


def digests(texts: Iterable[str]) -> np.ndarray:
    """One uint64 per text: the first 8 bytes of its blake2b digest."""
    raw = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 that spreads every input bit over the output."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def shingles(text: str, k: int) -> set[str]:
    """Character k-grams of the lower-cased text without whitespace, so Chinese works like English."""
    t = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).lower())
    return {t[i:i + k] for i in range(max(1, len(t) - k + 1))}


class BandHasher:
    """Text -> one uint64 per LSH band of its MinHash signature (datasketch's MinHash, seed 1).

    Shingles are hashed with zlib.crc32, a C function, instead of datasketch's default Python sha1
    wrapper: half the time per record, and for 5-character shingles as good once datasketch's murmur
    finaliser and affine permutations are applied to it.
    """

    def __init__(self, threshold: float, num_perm: int, shingle_size: int):
        from datasketch import MinHashLSH

        # The bands and rows MinHashLSH(threshold, num_perm) chooses (its public b and r), so the same records collide.
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = lsh.b, lsh.r
        self.num_perm, self.shingle_size = num_perm, shingle_size

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) MinHash values."""
        from datasketch import MinHash

        out = np.empty((len(texts), self.num_perm), dtype=np.uint64)
        grams = ([g.encode("utf-8") for g in shingles(t, self.shingle_size)] for t in texts)
        for i, m in enumerate(MinHash.generator(grams, num_perm=self.num_perm, seed=1, hashfunc=zlib.crc32)):
            out[i] = m.hashvalues
        return out

    def band_keys(self, texts: list[str]) -> np.ndarray:
        """(len(texts), bands) uint64: two texts share a band key when that band of their signatures is equal."""
        sig = self.signatures(texts)[:, : self.bands * self.rows].reshape(len(texts), self.bands, self.rows)
        h = np.full((len(texts), self.bands), 0x9E3779B97F4A7C15, dtype=np.uint64)
        for j in range(self.rows):
            h = _mix64(h ^ sig[:, :, j])
        return h


def _merge(ka: np.ndarray, va: np.ndarray, kb: np.ndarray, vb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted runs; on equal keys the older run's (a's) entries come first."""
    pos = np.searchsorted(ka, kb, side="right") + np.arange(len(kb))
    keys, vals = np.empty(len(ka) + len(kb), ka.dtype), np.empty(len(ka) + len(kb), va.dtype)
    from_a = np.ones(len(keys), dtype=bool)
    from_a[pos] = False
    keys[pos], vals[pos] = kb, vb
    keys[from_a], vals[from_a] = ka, va
    return keys, vals


class SortedRuns:
    """A multiset of (uint64 key, value) in sorted runs, a small LSM tree.

    Each `add` becomes a small sorted run; the newest run is merged into the one before it while it is at
    least half that size, so there are O(log n) runs and each entry is copied O(log n) times. A lookup
    answers the value added first for each key (older runs first; equal keys keep insertion order).
    """

    def __init__(self, value_dtype=np.int64):
        self.value_dtype = np.dtype(value_dtype)
        self._keys: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys)

    @property
    def runs(self) -> int:
        return len(self._keys)

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        if len(keys) == 0:
            return
        order = np.argsort(keys, kind="stable")
        self._keys.append(np.ascontiguousarray(keys[order], dtype=np.uint64))
        self._vals.append(np.ascontiguousarray(values[order], dtype=self.value_dtype))
        while len(self._keys) > 1 and 2 * len(self._keys[-1]) >= len(self._keys[-2]):
            kb, vb = self._keys.pop(), self._vals.pop()
            ka, va = self._keys.pop(), self._vals.pop()
            k, v = _merge(ka, va, kb, vb)
            self._keys.append(k)
            self._vals.append(v)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """int64 per key: the earliest-added value, or ABSENT."""
        out = np.full(len(keys), ABSENT, dtype=np.int64)
        for run, vals in zip(self._keys, self._vals):  # oldest first: the first hit is the earliest
            pos = np.searchsorted(run, keys)
            inside = pos < len(run)
            hit = np.zeros(len(keys), dtype=bool)
            hit[inside] = run[pos[inside]] == keys[inside]
            new = hit & (out == ABSENT)
            out[new] = vals[pos[new]]
        return out


class BandIndex:
    """Records keyed by one uint64 per band (one band for exact digests, b for LSH); values are record ids.

    Ids must be added in increasing order: a lookup answers the smallest id that collides in any band,
    i.e. the earliest record, as datasketch's `sorted(lsh.query(m))[0]` does for keys inserted in order.
    """

    def __init__(self, bands: int, value_dtype=np.int64):
        self.bands = bands
        self._runs = [SortedRuns(value_dtype) for _ in range(bands)]

    def __len__(self) -> int:
        return len(self._runs[0])

    def add(self, keys: np.ndarray, ids: np.ndarray) -> None:
        keys = keys.reshape(len(keys), self.bands)
        for j, runs in enumerate(self._runs):
            runs.add(keys[:, j], ids)

    def first_hit(self, keys: np.ndarray) -> np.ndarray:
        """int64 per row: the smallest indexed id sharing a band key with it, or ABSENT."""
        keys = keys.reshape(len(keys), self.bands)
        best = np.full(len(keys), ABSENT, dtype=np.int64)
        for j, runs in enumerate(self._runs):
            got = runs.lookup(keys[:, j])
            better = (got != ABSENT) & ((best == ABSENT) | (got < best))
            best[better] = got[better]
        return best

    def claim(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep-first over a chunk of rows, without adding them.

        Returns (indexed, earlier): per row, the id of the earliest indexed record it collides with, and
        else the position of the earliest earlier row of this chunk that is kept and collides with it
        (ABSENT in both: the row is kept). Only rows sharing a key inside the chunk are resolved one by
        one; that is rare, so the chunk stays vectorised.
        """
        keys = keys.reshape(len(keys), self.bands)
        indexed = self.first_hit(keys)
        earlier = np.full(len(keys), ABSENT, dtype=np.int64)
        open_rows = np.flatnonzero(indexed == ABSENT)
        shared = np.zeros(len(keys), dtype=bool)
        for j in range(self.bands):
            col = keys[open_rows, j]
            order = np.argsort(col, kind="stable")
            same = col[order][1:] == col[order][:-1]
            shared[open_rows[order[1:][same]]] = True
            shared[open_rows[order[:-1][same]]] = True
        kept: dict[tuple[int, int], int] = {}
        for i in np.flatnonzero(shared):  # in row order, so the first of a group is kept
            row = list(enumerate(keys[i].tolist()))
            hits = [kept[k] for k in row if k in kept]
            if hits:
                earlier[i] = min(hits)
            else:
                kept.update((k, int(i)) for k in row)
        return indexed, earlier
