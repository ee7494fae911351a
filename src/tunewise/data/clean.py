"""Cleaning pipeline: each step configurable, counted, and every dropped record kept with its reason.

Steps, in order: unicode (NFKC + whitespace), markup (leftover HTML tags/entities), ai_phrases
(boilerplate like "As an AI language model" / "作为一个AI语言模型", matched whatever the spacing and
punctuation), empty, pair (a preference pair whose two answers are the same), length (too short/long),
exact duplicates, near duplicates (MinHash over character shingles, so Chinese works), and — between
the splits — validation items that near-duplicate training items (leakage).

A preference pair's rejected answer is normalised, stripped of markup and length-checked like its chosen one.
The boilerplate filter reads only answers the model is trained towards (a pair's chosen answer, a KTO example
labelled desirable): a rejected answer saying "As an AI language model" is what the pair teaches it to avoid.
Duplicates are found on the whole pair (two pairs that differ only in their rejected answers both stay); the
leakage check compares prompts and chosen answers, as for any record.

A record with tools (#25) is cleaned like any conversation: the text steps edit the turns' text (tool results
included), never the calls or the tools, which are data the model must reproduce exactly. An assistant turn that
only calls is not empty, nor is a tool result with no text (a function may return nothing). Duplicate keys and
length measures read the calls with their arguments, so two records that differ only in an argument are both kept;
exact duplicates read the tools' whole schemas too, near duplicates and leakage only the tools' names (a long
shared schema would otherwise make every record of a tool set look alike).

The steps stream: `Cleaner` takes records a chunk at a time and hands each kept or dropped one to a sink
(the spill file of `tunewise.data.prepare`), so memory does not grow with
the data beyond the compact duplicate indexes of `tunewise.data.dedup`.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from tunewise.config.schema import CleanConfig
from tunewise.data.dedup import ABSENT, CJK_PUNCT, BandHasher, BandIndex, digests, nfkc
from tunewise.data.preference import kind
from tunewise.data.source import row_item
from tunewise.data.tools import calls_text, canonical, counts_of
from tunewise.errors import TunewiseError
from tunewise.templates.tools import tool_names

_RES = Path(__file__).parent / "resources"


# Only real HTML element names: `List<String>` or `a <b> c` in code answers are not markup.
_HTML_TAGS = ("a|abbr|b|big|blockquote|body|br|center|cite|code|dd|del|div|dl|dt|em|font|h[1-6]|head|hr|html|i|img|ins|kbd|"
              "li|mark|meta|ol|p|pre|q|s|samp|section|small|span|strike|strong|sub|sup|table|tbody|td|tfoot|th|thead|"
              "title|tr|tt|u|ul|article|aside|footer|header|nav|main|figure|figcaption|label|link|input|button|form|iframe")
_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.I)
_INVISIBLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_WS = re.compile(r"[ \t\u00a0\u3000]+")


# Chinese and Japanese text keeps its full-width punctuation (，。？！：；（） and …): NFKC would turn it into
# ASCII, and a model tuned on the result answers Chinese with half-width commas and "..." for "……".
_CJK_PUNCT = re.compile("([" + "".join(f"{chr(a)}-{chr(b)}" for a, b in CJK_PUNCT) + "]+)")


def _nfkc_keep_cjk_punct(s: str) -> str:
    parts = _CJK_PUNCT.split(s)
    return "".join(p if i % 2 else unicodedata.normalize("NFKC", p) for i, p in enumerate(parts))


_SPACE_NL = re.compile(r" *\n *")
_NL3 = re.compile(r"\n{3,}")


def normalize_text(s: str) -> str:
    # Each substitution runs only when the text holds what it changes, so most text is scanned a few times in C
    # instead of rewritten match by match: NFKC leaves ASCII as it is (and ASCII has no CJK punctuation), `_WS`
    # changes only tabs, odd spaces and runs of spaces, the newline rules only spaces by a newline and 3+ newlines.
    if not s.isascii():
        s = _nfkc_keep_cjk_punct(s)
    s = _INVISIBLE.sub("", s)  # control characters, zero-width spaces and stray BOMs from scraped text
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    if "  " in s or "\t" in s or "\u00a0" in s or "\u3000" in s:
        s = _WS.sub(" ", s)
    if " \n" in s or "\n " in s:
        s = _SPACE_NL.sub("\n", s)
    if "\n\n\n" in s:
        s = _NL3.sub("\n\n", s)
    return s.strip()


def strip_markup(s: str) -> str:
    s = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", s, flags=re.S | re.I)
    s = re.sub(r"<br\s*/?>|</p>", "\n", s, flags=re.I)
    return html.unescape(_TAG.sub("", s))


def _map_text(rec: dict, fn) -> dict:
    """`rec` with `fn` applied to its texts; `rec` itself when no text changes (most records, most steps)."""
    if "messages" in rec:
        msgs = rec["messages"]
        texts = [fn(m["content"]) for m in msgs]
        rejected = fn(rec["rejected"]) if "rejected" in rec else None
        if all(t == m["content"] for t, m in zip(texts, msgs)) and rejected == rec.get("rejected"):
            return rec
        out = {**rec, "messages": [dict(m, content=t) for m, t in zip(msgs, texts)]}
        if "rejected" in rec:
            out["rejected"] = rejected
        return out
    text = fn(rec["text"])
    return rec if text == rec["text"] else {**rec, "text": text}


def _said(m: dict) -> str:
    """A turn's text, and an assistant's calls as `name({arguments})` lines after it."""
    if not m.get("tool_calls"):
        return m["content"]
    calls = calls_text(m)
    return "\n".join(([m["content"]] if m["content"] else []) + calls) if calls else m["content"]


def record_text(rec: dict) -> str:
    """The conversation (a pair's chosen one) with its calls, and its tools' names, or the text: what the leakage
    check and near duplicates compare."""
    if "messages" in rec:
        lines = [f"{m['role']}: {_said(m)}" for m in rec["messages"]]
        if rec.get("tools"):
            lines.insert(0, "tools: " + ", ".join(tool_names(rec["tools"])))
        return "\n".join(lines)
    return rec["text"]


def whole_text(rec: dict, schemas: bool = True) -> str:
    """The whole record, a pair's rejected answer, a KTO label and (`schemas`) the tools' schemas included: what
    exact duplicates are found on."""
    text = record_text(rec)
    if "rejected" in rec:
        text += f"\nrejected: {rec['rejected']}"
    if "label" in rec:
        text += f"\nlabel: {rec['label']}"
    if schemas and rec.get("tools"):
        text += f"\ntool schemas: {canonical(rec['tools'])}"
    return text


def _answer(rec: dict) -> str:
    if "messages" in rec:
        return "\n".join(_said(m) for m in rec["messages"] if m["role"] == "assistant")
    return rec["text"]


# Boilerplate is matched on a normalised form, so spacing, punctuation, case and full-width variants of a phrase
# all match it: "作为一个 AI 语言模型", "作为一个AI语言模型" and "作为一个ＡＩ语言模型，" are one phrase, as are
# "As an AI-language model" and "as an A.I. language model". The form is a string of units (a word of letters
# or digits, or one CJK character) between single spaces, with a space at both ends, so a phrase matches whole
# words only ("has an aim" does not contain "as an ai").
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_UNIT = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
# I'm -> Im, A.I. -> AI.: the mark first, then a look back at the letter before it (a pattern that starts with a
# look-behind tries it at every position, 6x slower).
_INNER = re.compile(r"[.'\u2018\u2019](?<=[^\W\d_][.'\u2018\u2019])(?=[^\W\d_])")


def _folded(s: str) -> str:
    """NFKC, lower case, marks inside words removed: the text whose units make the phrase form."""
    return _INNER.sub("", nfkc(s).lower())


def phrase_form(s: str) -> str:
    """`s` as matched against the boilerplate list (see above)."""
    return " " + " ".join(_UNIT.findall(_folded(s))) + " "


class PhraseMatcher:
    """The first phrase of the list (in its order) whose form is in a text's form, or None.

    Cutting a text into units is the slow part, so it is done only for texts that hold, as a plain substring,
    a key unit of some phrase (its longest): every unit of the form is a substring of the folded text, so a text
    without any key cannot contain a phrase.
    """

    def __init__(self, phrases: dict[str, str]):
        self.phrases = phrases
        keys = set()
        for form in phrases:
            units = form.split()
            keys.add(max(units, key=lambda u: (len(u), -sum(u in f for f in phrases))))
        self.keys = sorted(keys, key=len, reverse=True)

    def __call__(self, text: str) -> str | None:
        folded = _folded(text)
        if not any(k in folded for k in self.keys):
            return None
        form = " " + " ".join(_UNIT.findall(folded)) + " "
        hit = next((p for p in self.phrases if p in form), None)
        return self.phrases[hit] if hit else None


def load_phrases(cfg: CleanConfig) -> dict[str, str]:
    """{normalised form: phrase as written} of the built-in list, data.clean.ai_phrases_file and extra_ai_phrases."""
    lines = (_RES / "ai_phrases.txt").read_text(encoding="utf-8").splitlines()
    if cfg.ai_phrases_file:
        lines += Path(cfg.ai_phrases_file).read_text(encoding="utf-8").splitlines()
    lines += cfg.extra_ai_phrases
    out: dict[str, str] = {}
    for x in lines:
        if x.strip() and not x.lstrip().startswith("#") and phrase_form(x).strip():
            out.setdefault(phrase_form(x), x.strip())
    return out


Item = tuple[dict | None, dict | None]  # (record, None), or (None, drop entry) for a row the reader could not use
CHUNK = 2048  # records cleaned together: dedup lookups and MinHash banding are vectorised per chunk


class Sink(Protocol):
    """Where the cleaner puts records, in input order, as JSON lines. Ids count from 0 in each of the two streams.

    `info` is `record_info(rec)`: what the spill file keeps about each record besides its line."""

    def keep_many(self, lines: list[bytes], infos: list, band_keys: np.ndarray | None) -> int:
        """Keep records in order; the id of the first."""
    def drop(self, line: bytes, step: str) -> int: ...
    def kept_where(self, i: int) -> str: ...
    def dropped_where(self, i: int) -> str: ...


_JSON = json.JSONEncoder(ensure_ascii=False)  # what json.dumps(obj, ensure_ascii=False) builds anew on every call


def json_line(obj: dict) -> bytes:
    """A record or drop entry as written to train.jsonl, the spill file and dropped.jsonl."""
    return (_JSON.encode(obj) + "\n").encode("utf-8")


def record_info(rec: dict) -> tuple:
    """(source, preference kind, has tools, calls, parallel-call turns) of a record, for the counts in stats.json."""
    return (rec.get("source"), kind(rec), *counts_of(rec))


def entry_line(step: str, reason: str, where: str | None, record_line: bytes, tag: dict) -> bytes:
    """json_line({"step", "reason", "where", "record", **tag}) for a record already written as `record_line`:
    the duplicate steps decide in the main process, which has records only as the lines the workers made."""
    head = json.dumps({"step": step, "reason": reason, "where": where}, ensure_ascii=False)[:-1]
    tail = ", " + json.dumps(tag, ensure_ascii=False)[1:] if tag else "}"
    return head.encode("utf-8") + b', "record": ' + record_line[:-1] + tail.encode("utf-8") + b"\n"


def where_of(rec: dict) -> str:
    """How a duplicate names the record it repeats."""
    return rec.get("where") or "an earlier record"


def batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


Step = tuple[str, Callable | None, Callable | None]


def _record_steps(cfg: CleanConfig) -> list[Step]:
    """(name, map, keep) for each per-record step, in order; `keep` returns a drop reason or None."""
    steps: list[Step] = []
    if cfg.normalize_unicode:
        steps.append(("unicode", lambda r: _map_text(r, normalize_text), None))
    if cfg.strip_markup:
        steps.append(("markup", lambda r: _map_text(r, lambda s: normalize_text(strip_markup(s)) if "<" in s or "&" in s else s), None))
    if cfg.ai_phrases:
        matcher = PhraseMatcher(load_phrases(cfg))

        def ai(rec):
            if rec.get("label") is False:  # an undesirable KTO answer: the model is taught away from it
                return None
            hit = matcher(_answer(rec))
            return f"boilerplate AI phrase: '{hit}'" if hit else None

        steps.append(("ai_phrases", None, ai))

    def empty(rec):
        if "messages" in rec:
            bad = next((m["role"] for m in rec["messages"] if m["role"] not in ("system", "tool")
                        and not m["content"].strip() and not m.get("tool_calls")), None)
            if bad is None and "rejected" in rec and not rec["rejected"].strip():
                return "empty rejected answer: a preference pair needs two answers"
            return f"empty {bad} turn" if bad else None
        return "empty text" if not rec["text"].strip() else None

    def pair(rec):
        if rec["rejected"].strip() == rec["messages"][-1]["content"].strip():
            return "the rejected answer is the same as the chosen one (after cleaning): the pair prefers nothing"
        return None

    def length(rec):
        n_ans, n_all = len(_answer(rec)), len(whole_text(rec))
        if n_ans < cfg.min_chars:
            return f"too short: answer has {n_ans} characters (data.clean.min_chars = {cfg.min_chars})"
        if "rejected" in rec and len(rec["rejected"]) < cfg.min_chars:
            return (f"too short: rejected answer has {len(rec['rejected'])} characters "
                    f"(data.clean.min_chars = {cfg.min_chars})")
        if n_all > cfg.max_chars:
            return f"too long: {n_all} characters (data.clean.max_chars = {cfg.max_chars})"
        return None

    return steps + [("empty", None, empty), ("pair", None, pair), ("length", None, length)]


# Steps that only some records reach (a pair step only pairs), reported only when some record did.
_ONLY = {"pair": lambda rec: "rejected" in rec}


class ChunkWork:
    """The part of cleaning a chunk that needs no duplicate index: the per-record steps, each survivor's JSON line,
    exact digest and band keys, and each dropped record's entry line. Plain data in and out, so it runs in a worker
    process (tunewise.data.parallel); `Cleaner` decides the duplicates, in order, in the main process.
    """

    def __init__(self, cfg: CleanConfig, keys: bool, tag: dict):
        self.cfg, self.keys, self.tag = cfg, keys, tag
        self.steps = _record_steps(cfg)
        self.hasher = BandHasher(cfg.near_threshold, cfg.num_perm, cfg.shingle_size) if cfg.dedup_near or keys else None

    def _per_record(self, rec: dict, counts: dict) -> tuple[dict, dict | None]:
        for name, fn_map, fn_keep in self.steps:
            if name in _ONLY and not _ONLY[name](rec):
                continue
            c = counts[name]
            c[0] += 1
            if fn_map is not None:
                new = fn_map(rec)
                c[2] += new != rec
                rec = new
            reason = fn_keep(rec) if fn_keep is not None else None
            if reason:
                return rec, {"step": name, "reason": reason, "where": rec.get("where"), "record": rec, **self.tag}
            c[1] += 1
        return rec, None

    def __call__(self, items: list) -> dict:
        """Items are records (record, None) / (None, drop entry), or rows of tunewise.data.source.read_rows.

        Returns {"out": per item, (entry line, step) when dropped or None when alive; "counts": {step: [before, after,
        changed]}; "read": {source: [rows, bad rows]}; per alive record "lines", "wheres", "infos", and "exact" /
        "near" / "leak" keys as bytes}, or {"error": the error a strict read raised}."""
        counts = {name: [0, 0, 0] for name, _, _ in self.steps}
        read: dict[str, list[int]] = {}  # source: [rows, bad rows], for rows of tunewise.data.source.read_rows
        out, recs = [], []
        for item in items:
            if isinstance(item[0], str):  # a row still to convert
                try:
                    rec, bad = row_item(item)
                except TunewiseError as e:  # strict mode: raised by the main process, in input order
                    return {"error": e}
                c = read.setdefault(item[1][6], [0, 0])
                c[0] += 1
                c[1] += bad is not None
            else:
                rec, bad = item
            if bad is None:
                rec, bad = self._per_record(rec, counts)
            if bad is not None:
                out.append((json_line(bad), bad["step"]))
            else:
                out.append(None)
                recs.append(rec)
        done = {"out": out, "counts": counts, "read": read, "lines": [json_line(r) for r in recs],
                "wheres": [r.get("where") for r in recs], "infos": [record_info(r) for r in recs]}
        if not recs:
            return done
        texts = [whole_text(r) for r in recs]
        if self.cfg.dedup_exact:
            done["exact"] = digests(texts).tobytes()
        # near duplicates: without the tools' schemas (see the module docstring)
        texts = [whole_text(r, schemas=False) if r.get("tools") else t for r, t in zip(recs, texts)]
        near = self.hasher.band_keys(texts) if self.cfg.dedup_near else None
        if near is not None:
            done["near"] = near.tobytes()
        if self.keys:  # the leakage check's keys: of the conversation, without a rejected answer or label
            leak_texts = [record_text(r) for r in recs]
            other = [i for i, (a, b) in enumerate(zip(leak_texts, texts)) if near is None or a != b]
            leak = near.copy() if near is not None else np.empty((len(recs), self.hasher.bands), dtype=np.uint64)
            if other:
                leak[other] = self.hasher.band_keys([leak_texts[i] for i in other])
            done["leak"] = leak.tobytes()
        return done


class Cleaner:
    """Every clean step over a stream of records, a chunk at a time, in bounded memory.

    Per-record steps and keys run in `ChunkWork`, on `workers` processes; exact and near duplicates are then found
    here, chunk after chunk in input order, with compact indexes (`tunewise.data.dedup`) that hold digests, band
    hashes and ids, never records. When a duplicate is found, the earlier record's `where` is asked of the sink by
    its id. Results go to the sink in input order, so the output depends neither on the chunk size nor on the number
    of workers. `keys=True` hands each kept record's LSH band keys to the sink even without near-dedup (the leakage
    check needs them).
    """

    def __init__(self, cfg: CleanConfig, sink: Sink, *, keys: bool = False, tag: dict | None = None, workers: int = 1):
        self.cfg, self.sink, self.tag, self.keys, self.workers = cfg, sink, dict(tag or {}), keys, workers
        self.work = ChunkWork(cfg, keys, self.tag)
        names = [s[0] for s in self.work.steps] + ["dedup_exact"] * cfg.dedup_exact + ["dedup_near"] * cfg.dedup_near
        self._counts = {n: {"step": n, "before": 0, "after": 0, "changed": 0} for n in names}
        self.bands = self.work.hasher.bands if self.work.hasher is not None else None
        self._exact = BandIndex(1) if cfg.dedup_exact else None
        self._near = BandIndex(self.bands, np.uint32) if cfg.dedup_near else None
        self.read_counts: dict[str, list[int]] = {}  # source: [rows, bad rows] of the rows converted here

    @staticmethod
    def bands_for(cfg: CleanConfig) -> int:
        """How many band keys per record the near-duplicate index of `cfg` uses."""
        return BandHasher(cfg.near_threshold, cfg.num_perm, cfg.shingle_size).bands

    @property
    def steps(self) -> list[dict]:
        # near-dedup is reported only when some record reached it, as before streaming; the pair step likewise
        return [dict(c) for n, c in self._counts.items() if n not in ("dedup_near", *_ONLY) or c["before"]]

    def run(self, items: Iterable[Item], chunk_size: int = CHUNK) -> None:
        from tunewise.data.parallel import ordered_map

        flush = getattr(self.sink, "flush", None)
        self.take(ordered_map(self.work, batched(items, chunk_size), self.workers, before_fork=flush))

    def take(self, results: Iterable[dict]) -> None:
        """Decide the duplicates of chunks whose `ChunkWork` ran elsewhere (`run`'s workers, or other machines);
        `results` must come in input order."""
        for done in results:
            self._finish(done)

    def _ticket_where(self, ticket: int) -> str:
        return self.sink.dropped_where(ticket // 2) if ticket % 2 else self.sink.kept_where(ticket // 2)

    def _dedup(self, step: str, index: BandIndex, keys: np.ndarray, rows: np.ndarray, done: dict, row_drop: list,
               indexed_where) -> np.ndarray:
        """Drop the alive `rows` that duplicate an earlier kept record; returns the mask of rows kept."""
        indexed, earlier = index.claim(keys)
        keep = (indexed == ABSENT) & (earlier == ABSENT)
        c = self._counts[step]
        c["before"] += len(rows)
        c["after"] += int(keep.sum())
        kind = "exact" if step == "dedup_exact" else "near"
        wheres = done["wheres"]
        for i in np.flatnonzero(~keep).tolist():
            first = indexed_where(int(indexed[i])) if indexed[i] != ABSENT else (wheres[rows[earlier[i]]] or "an earlier record")
            r = rows[i]
            row_drop[r] = (entry_line(step, f"{kind} duplicate of {first}", wheres[r], done["lines"][r], self.tag), step)
        return keep

    def _finish(self, done: dict) -> None:
        if "error" in done:
            raise done["error"]
        for src, (rows, bad) in done["read"].items():
            c = self.read_counts.setdefault(src, [0, 0])
            c[0], c[1] = c[0] + rows, c[1] + bad
        for name, (before, after, changed) in done["counts"].items():
            c = self._counts[name]
            c["before"], c["after"], c["changed"] = c["before"] + before, c["after"] + after, c["changed"] + changed
        n = len(done["lines"])
        rows = np.arange(n)
        row_drop: list = [None] * n  # (entry line, step) of an alive record a duplicate step drops
        exact_rows = exact_keys = near_keys = None
        if self._exact is not None and n:
            keys = np.frombuffer(done["exact"], dtype=np.uint64)
            keep = self._dedup("dedup_exact", self._exact, keys, rows, done, row_drop, self._ticket_where)
            exact_rows, exact_keys, rows = rows[keep], keys[keep], rows[keep]
        if self._near is not None and len(rows):
            keys = np.frombuffer(done["near"], dtype=np.uint64).reshape(n, self.bands)[rows]
            keep = self._dedup("dedup_near", self._near, keys, rows, done, row_drop, self.sink.kept_where)
            near_keys, rows = keys[keep], rows[keep]
        leak = np.frombuffer(done["leak"], dtype=np.uint64).reshape(n, self.bands) if "leak" in done else None
        # Drops go to dropped.jsonl and survivors to the spill file, each in input order; ids are per file.
        tickets = np.empty(n, dtype=np.int64)
        r = 0
        for entry in done["out"]:
            if entry is not None:
                self.sink.drop(*entry)
                continue
            if row_drop[r] is not None:
                tickets[r] = 2 * self.sink.drop(*row_drop[r]) + 1
            r += 1
        if len(rows):
            first = self.sink.keep_many([done["lines"][i] for i in rows.tolist()], [done["infos"][i] for i in rows.tolist()],
                                        None if leak is None else leak[rows])
            kept_ids = np.arange(first, first + len(rows), dtype=np.int64)
            tickets[rows] = 2 * kept_ids
        if exact_rows is not None and len(exact_rows):
            self._exact.add(exact_keys, tickets[exact_rows])
        if near_keys is not None and len(near_keys):
            self._near.add(near_keys, kept_ids.astype(np.uint32))


def leak_entry(rec: dict, train_where: str) -> dict:
    return {"step": "leakage", "reason": f"validation item near-duplicates training item {train_where}",
            "where": rec.get("where"), "record": rec}


def find_leakage(bands: int, train: Iterable[tuple[np.ndarray, np.ndarray]],
                 val: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[int, int]]:
    """(validation id, training id) for each validation item whose band keys collide with a training item's.

    `train` and `val` are chunks of (band keys, ids); training ids must come in increasing order, and the
    earliest colliding training item is named.
    """
    index = BandIndex(bands, np.uint32)
    for keys, ids in train:
        index.add(keys, ids)
    for keys, ids in val:
        hit = index.first_hit(keys)
        for v, t in zip(ids[hit != ABSENT].tolist(), hit[hit != ABSENT].tolist()):
            yield v, t
