"""Compact duplicate indexes, so the data stage can dedup millions of records in bounded memory.

Exact duplicates are keyed by an 8-byte blake2b digest of the record text. Near duplicates use datasketch's
MinHash signatures (computed in numpy for a chunk of texts at once, value for value the same), banded the way datasketch's MinHashLSH bands them (its optimal (b, r) for the
threshold), but each band is folded into one uint64 and kept in sorted numpy runs instead of Python
dicts of byte strings: 12 bytes per record per band instead of a few hundred.

Both keep the first record: a record that collides with an earlier kept record is the duplicate, and a
dropped record is never indexed. Like MinHashLSH's `query`, a band collision is the answer; candidates
are not verified against the estimated Jaccard similarity.
"""

from __future__ import annotations

import hashlib
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


# The full-width CJK punctuation the unicode step keeps (tunewise.data.clean), and each of its characters as NFKC
# writes it alone (the others are their own).
CJK_PUNCT = ((0xFF01, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40), (0xFF5B, 0xFF65), (0x2026, 0x2026), (0x3000, 0x303F))
_PUNCT_NFKC = {c: n for a, b in CJK_PUNCT for c in range(a, b + 1) if (n := unicodedata.normalize("NFKC", chr(c))) != chr(c)}


def nfkc(s: str) -> str:
    """unicodedata.normalize("NFKC", s), quicker on text the unicode step has seen. That text is NFKC but for its CJK
    punctuation, which makes NFKC decompose and recompose the whole text; with those characters replaced by their
    NFKC forms first, NFKC's quick check passes. Exact: the replacement is compatibility-equivalent to `s`, so its NFKC
    is `s`'s, and it is returned only when it is already NFKC."""
    if s.isascii():
        return s  # NFKC keeps ASCII
    t = s.translate(_PUNCT_NFKC)
    return t if unicodedata.is_normalized("NFKC", t) else unicodedata.normalize("NFKC", t)


def shingle_text(text: str) -> str:
    """What shingles are cut from: the NFKC-normalised, lower-cased text without whitespace.

    str.split() splits on exactly the characters regex `\\s` matches (str.isspace), several times faster than
    re.sub(r"\\s+", "", ...) on text with many spaces.
    """
    return "".join(nfkc(text).lower().split())


def shingles(text: str, k: int) -> set[str]:
    """Character k-grams of the lower-cased text without whitespace, so Chinese works like English."""
    t = shingle_text(text)
    return {t[i:i + k] for i in range(max(1, len(t) - k + 1))}


def _crc_tables() -> np.ndarray:
    """zlib's CRC-32 register update by one UTF-8 character of 0 to 4 bytes, as four byte tables.

    After `x = register ^ (the character's bytes, little-endian)`, the new register is the XOR over i < 4 of
    table[i][n * 256 + byte i of x] for a character of n bytes: for i < n the byte's table followed by n-1-i zero
    bytes (slicing-by-4), for i >= n the byte moved down n places (the register's own shift). n = 0 leaves it.
    """
    t0 = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t0 = np.where(t0 & np.uint32(1), (t0 >> np.uint32(1)) ^ np.uint32(0xEDB88320), t0 >> np.uint32(1))
    by_zeros = [t0]  # by_zeros[z][byte]: the byte followed by z zero bytes
    for _ in range(3):
        prev = by_zeros[-1]
        by_zeros.append(t0[prev & np.uint32(0xFF)] ^ (prev >> np.uint32(8)))
    out = np.zeros((4, 5, 256), dtype=np.uint32)
    byte = np.arange(256, dtype=np.uint32)
    for n in range(5):
        for i in range(4):
            out[i, n] = by_zeros[n - 1 - i] if i < n else byte << np.uint32(8 * (i - n))
    return out.reshape(4, -1)


_CRC = _crc_tables()


def _utf8_formula(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes packed little-endian into a uint32, byte count) of each code point."""
    n = 1 + (cp >= 0x80).astype(np.uint32) + (cp >= 0x800) + (cp >= 0x10000)
    c, six = np.uint32(0x80), np.uint32(0x3F)

    def cont(shift: int, place: int) -> np.ndarray:  # a continuation byte: 10xxxxxx
        return (c | ((cp >> np.uint32(shift)) & six)) << np.uint32(8 * place)

    two = (np.uint32(0xC0) | (cp >> np.uint32(6))) | cont(0, 1)
    three = (np.uint32(0xE0) | (cp >> np.uint32(12))) | cont(6, 1) | cont(0, 2)
    four = (np.uint32(0xF0) | (cp >> np.uint32(18))) | cont(12, 1) | cont(6, 2) | cont(0, 3)
    return np.select([n == 1, n == 2, n == 3], [cp, two, three], four).astype(np.uint32), n


_BMP = _utf8_formula(np.arange(0x10000, dtype=np.uint32))  # the Basic Multilingual Plane, looked up: one gather


def _utf8(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes packed little-endian into a uint32, byte count) of each code point."""
    if len(cp) and int(cp.max()) >= 0x10000:  # emoji, rare scripts: computed
        return _utf8_formula(cp)
    return _BMP[0][cp], _BMP[1][cp]


def _window_crcs(texts: list[str], k: int, ascii: bool) -> np.ndarray:
    """CRC-32 of every k-character window of every text (each at least k long), text after text.

    ASCII text is one byte per character, so each step is zlib's own byte update (one table look-up); other text
    takes one whole UTF-8 character per step (`_CRC`, four look-ups)."""
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    count = lens - k + 1
    starts = np.arange(int(count.sum())) + np.repeat(np.cumsum(lens) - lens - (np.cumsum(count) - count), count)
    crc = np.full(len(starts), 0xFFFFFFFF, dtype=np.uint32)
    joined = "".join(texts)
    if ascii:
        code = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).astype(np.uint32)
        table = _CRC[0][256:512]  # one byte
        for j in range(k):
            crc = table[(crc ^ code[starts + j]) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
        return crc ^ np.uint32(0xFFFFFFFF)
    packed, nbytes = _utf8(np.frombuffer(joined.encode("utf-32-le"), dtype="<u4"))
    base = nbytes.astype(np.intp) * 256
    for j in range(k):
        at = starts + j
        x = crc ^ packed[at]
        b = base[at]
        crc = _CRC[0][b + (x & np.uint32(0xFF))]
        crc ^= _CRC[1][b + ((x >> np.uint32(8)) & np.uint32(0xFF))]
        crc ^= _CRC[2][b + ((x >> np.uint32(16)) & np.uint32(0xFF))]
        crc ^= _CRC[3][b + (x >> np.uint32(24))]
    return crc ^ np.uint32(0xFFFFFFFF)


def shingle_hashes(texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(zlib.crc32 of the UTF-8 bytes of every shingle of every text, as uint32; how many shingles each text has).

    The same values as `zlib.crc32(g.encode("utf-8")) for g in shingles(text, k)`, computed for all the windows
    of a chunk at once, one character of every window per step: a shingle repeated in a text appears once per
    place here, which leaves a minimum unchanged. Texts shorter than k (one shingle each, rare) use zlib.
    """
    norm = [shingle_text(t) for t in texts]
    lens = np.fromiter(map(len, norm), dtype=np.int64, count=len(norm))
    counts = np.maximum(1, lens - k + 1)
    first = np.cumsum(counts) - counts
    out = np.empty(int(counts.sum()), dtype=np.uint32)
    kind = np.array([2 if n < k else t.isascii() for t, n in zip(norm, lens.tolist())], dtype=np.int8)  # 2: short
    for ascii in (True, False):
        group = np.flatnonzero(kind == ascii)
        if len(group):
            at = np.repeat(first[group], counts[group]) + (np.arange(int(counts[group].sum()))
                                                            - np.repeat(np.cumsum(counts[group]) - counts[group], counts[group]))
            out[at] = _window_crcs([norm[i] for i in group.tolist()], k, ascii)
    for i in np.flatnonzero(kind == 2).tolist():
        out[first[i]] = zlib.crc32(norm[i].encode("utf-8"))
    return out, counts


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser, as datasketch's affine32 scheme applies it before its permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


class BandHasher:
    """Text -> one uint64 per LSH band of its MinHash signature (datasketch's MinHash, seed 1).

    Shingles are hashed with zlib.crc32 instead of datasketch's default sha1: for 5-character shingles as
    good once datasketch's murmur finaliser and affine permutations are applied to it. The signatures are
    datasketch's `MinHash(num_perm, seed=1, hashfunc=zlib.crc32)` over the shingle set, value for value, but
    computed for a whole chunk of texts in numpy: CRC-32 one UTF-8 character at a time over every window, then
    the permutations (datasketch's own parameters) over blocks of windows and a minimum per text.
    tests/data/test_streaming.py compares them with datasketch's.
    """

    BLOCK = 1 << 13  # windows permuted at once: (num_perm, BLOCK) uint32, 4 MB

    def __init__(self, threshold: float, num_perm: int, shingle_size: int):
        from datasketch import MinHash, MinHashLSH

        # The bands and rows MinHashLSH(threshold, num_perm) chooses (its public b and r), so the same records collide.
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = lsh.b, lsh.r
        self.num_perm, self.shingle_size = num_perm, shingle_size
        perm = MinHash(num_perm=num_perm, seed=1).permutations  # the affine32 scheme's (a, b), uint32
        if perm.dtype != np.uint32:
            raise RuntimeError(f"datasketch's MinHash permutations are {perm.dtype}, not the affine32 scheme's uint32")
        self._a, self._b = perm[0].copy(), perm[1].copy()

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) MinHash values."""
        h, counts = shingle_hashes(texts, self.shingle_size)
        h = _fmix32(h)
        out = np.empty((self.num_perm, len(texts)), dtype=np.uint32)
        ends = np.cumsum(counts)
        starts = ends - counts
        a, b = self._a[:, None], self._b[:, None]
        buf = np.empty((self.num_perm, self.BLOCK), dtype=np.uint32)  # reused: a fresh 4 MB array per block page-faults
        i = 0
        while i < len(texts):  # whole texts per block, at least one; permutations by rows: numpy reduces rows fastest
            j = max(i + 1, int(np.searchsorted(ends, starts[i] + self.BLOCK, side="right")))
            w = int(ends[j - 1] - starts[i])
            phv = buf[:, :w] if w <= self.BLOCK else np.empty((self.num_perm, w), dtype=np.uint32)
            np.multiply(a, h[starts[i]:ends[j - 1]], out=phv)
            phv += b
            out[:, i:j] = np.minimum.reduceat(phv, starts[i:j] - starts[i], axis=1)
            i = j
        return out.T.astype(np.uint64)

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
        # The keys are looked up in sorted order (and the answers put back): numpy's binary search starts from the
        # previous key's position when keys increase, which halves a lookup in a run of millions.
        order = np.argsort(keys)
        keys = keys[order]
        found = np.full(len(keys), ABSENT, dtype=np.int64)
        for run, vals in zip(self._keys, self._vals):  # oldest first: the first hit is the earliest
            pos = np.searchsorted(run, keys)
            inside = pos < len(run)
            hit = np.zeros(len(keys), dtype=bool)
            hit[inside] = run[pos[inside]] == keys[inside]
            new = hit & (found == ABSENT)
            found[new] = vals[pos[new]]
        out = np.empty_like(found)
        out[order] = found
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
