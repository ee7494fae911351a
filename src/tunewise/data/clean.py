"""Cleaning pipeline: each step configurable, counted, and every dropped record kept with its reason.

Steps, in order: unicode (NFKC + whitespace), markup (leftover HTML tags/entities), ai_phrases
(boilerplate like "As an AI language model" / "作为一个AI语言模型"), empty, length (too short/long),
exact duplicates, near duplicates (MinHash over character shingles, so Chinese works), and — between
the splits — validation items that near-duplicate training items (leakage).
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

_RES = Path(__file__).parent / "resources"


class CleanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    normalize_unicode: bool = Field(True, description="NFKC-normalise text (full-width letters, ligatures; CJK punctuation is kept), drop invisible characters, tidy whitespace.")
    strip_markup: bool = Field(True, description="Remove leftover HTML tags and decode entities (&amp; -> &).")
    ai_phrases: bool = Field(True, description="Drop records whose answer contains boilerplate AI phrases (bilingual list).")
    extra_ai_phrases: list[str] = Field(default_factory=list, description="More phrases to filter, besides the built-in list.")
    ai_phrases_file: str | None = Field(None, description="A file with more phrases, one per line.")
    min_chars: int = Field(1, ge=0, description="Drop records whose answer (or text) is shorter than this many characters.")
    max_chars: int = Field(200_000, ge=1, description="Drop records longer than this many characters in total.")
    dedup_exact: bool = Field(True, description="Drop exact duplicate records (after normalisation), keeping the first.")
    dedup_near: bool = Field(True, description="Drop near-duplicate records (MinHash over character shingles), keeping the first.")
    near_threshold: float = Field(0.85, gt=0, le=1, description="Estimated Jaccard similarity above which two records are near duplicates.")
    shingle_size: int = Field(5, ge=1, description="Characters per shingle for near-duplicate detection.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations (more = more precise, slower).")
    leakage_check: bool = Field(True, description="Drop validation items that near-duplicate a training item.")


@dataclass
class CleanResult:
    kept: list[dict]
    dropped: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)


# Only real HTML element names: `List<String>` or `a <b> c` in code answers are not markup.
_HTML_TAGS = ("a|abbr|b|big|blockquote|body|br|center|cite|code|dd|del|div|dl|dt|em|font|h[1-6]|head|hr|html|i|img|ins|kbd|"
              "li|mark|meta|ol|p|pre|q|s|samp|section|small|span|strike|strong|sub|sup|table|tbody|td|tfoot|th|thead|"
              "title|tr|tt|u|ul|article|aside|footer|header|nav|main|figure|figcaption|label|link|input|button|form|iframe")
_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.I)
_INVISIBLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_WS = re.compile(r"[ \t\u00a0\u3000]+")


# Chinese and Japanese text keeps its full-width punctuation (，。？！：；（） and …): NFKC would turn it into
# ASCII, and a model tuned on the result answers Chinese with half-width commas and "..." for "……".
_CJK_PUNCT = re.compile("([\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\u2026\u3000-\u303f]+)")


def _nfkc_keep_cjk_punct(s: str) -> str:
    parts = _CJK_PUNCT.split(s)
    return "".join(p if i % 2 else unicodedata.normalize("NFKC", p) for i, p in enumerate(parts))


def normalize_text(s: str) -> str:
    s = _nfkc_keep_cjk_punct(s)
    s = _INVISIBLE.sub("", s)  # control characters, zero-width spaces and stray BOMs from scraped text
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = _WS.sub(" ", s)
    s = re.sub(r" *\n *", "\n", s)
    s = re.sub(r"\n{3,}", "\n\n", s)
    return s.strip()


def strip_markup(s: str) -> str:
    s = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", s, flags=re.S | re.I)
    s = re.sub(r"<br\s*/?>|</p>", "\n", s, flags=re.I)
    return html.unescape(_TAG.sub("", s))


def _map_text(rec: dict, fn) -> dict:
    if "messages" in rec:
        return {**rec, "messages": [dict(m, content=fn(m["content"])) for m in rec["messages"]]}
    return {**rec, "text": fn(rec["text"])}


def record_text(rec: dict) -> str:
    if "messages" in rec:
        return "\n".join(f"{m['role']}: {m['content']}" for m in rec["messages"])
    return rec["text"]


def _answer(rec: dict) -> str:
    if "messages" in rec:
        return "\n".join(m["content"] for m in rec["messages"] if m["role"] == "assistant")
    return rec["text"]


def load_phrases(cfg: CleanConfig) -> list[str]:
    lines = (_RES / "ai_phrases.txt").read_text(encoding="utf-8").splitlines()
    if cfg.ai_phrases_file:
        lines += Path(cfg.ai_phrases_file).read_text(encoding="utf-8").splitlines()
    lines += cfg.extra_ai_phrases
    return [unicodedata.normalize("NFKC", x).strip().lower() for x in lines if x.strip() and not x.lstrip().startswith("#")]


def _shingles(text: str, k: int) -> set[str]:
    t = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).lower())
    return {t[i:i + k] for i in range(max(1, len(t) - k + 1))}


def _minhash(text: str, cfg: CleanConfig):
    from datasketch import MinHash

    m = MinHash(num_perm=cfg.num_perm, seed=1)
    for sh in _shingles(text, cfg.shingle_size):
        m.update(sh.encode("utf-8"))
    return m


def clean_records(records: list[dict], cfg: CleanConfig) -> CleanResult:
    kept = list(records)
    dropped: list[dict] = []
    steps: list[dict] = []

    def step(name: str, fn_keep=None, fn_map=None):
        nonlocal kept
        before, changed, out = len(kept), 0, []
        for rec in kept:
            if fn_map is not None:
                new = fn_map(rec)
                changed += new != rec
                rec = new
            reason = fn_keep(rec) if fn_keep is not None else None
            if reason:
                dropped.append({"step": name, "reason": reason, "where": rec.get("where"), "record": rec})
            else:
                out.append(rec)
        kept = out
        steps.append({"step": name, "before": before, "after": len(kept), "changed": changed})

    if cfg.normalize_unicode:
        step("unicode", fn_map=lambda r: _map_text(r, normalize_text))
    if cfg.strip_markup:
        step("markup", fn_map=lambda r: _map_text(r, lambda s: normalize_text(strip_markup(s)) if "<" in s or "&" in s else s))
    if cfg.ai_phrases:
        phrases = load_phrases(cfg)

        def ai(rec):
            low = unicodedata.normalize("NFKC", _answer(rec)).lower()  # phrases are NFKC too
            hit = next((p for p in phrases if p in low), None)
            return f"boilerplate AI phrase: '{hit}'" if hit else None

        step("ai_phrases", fn_keep=ai)

    def empty(rec):
        if "messages" in rec:
            bad = next((m["role"] for m in rec["messages"] if m["role"] != "system" and not m["content"].strip()), None)
            return f"empty {bad} turn" if bad else None
        return "empty text" if not rec["text"].strip() else None

    step("empty", fn_keep=empty)

    def length(rec):
        n_ans, n_all = len(_answer(rec)), len(record_text(rec))
        if n_ans < cfg.min_chars:
            return f"too short: answer has {n_ans} characters (data.clean.min_chars = {cfg.min_chars})"
        if n_all > cfg.max_chars:
            return f"too long: {n_all} characters (data.clean.max_chars = {cfg.max_chars})"
        return None

    step("length", fn_keep=length)

    if cfg.dedup_exact:
        seen: dict[str, str] = {}

        def exact(rec):
            h = hashlib.sha1(record_text(rec).encode("utf-8")).hexdigest()
            if h in seen:
                return f"exact duplicate of {seen[h]}"
            seen[h] = rec.get("where") or "an earlier record"
            return None

        step("dedup_exact", fn_keep=exact)
    if cfg.dedup_near and kept:
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=cfg.near_threshold, num_perm=cfg.num_perm)
        where_of: dict[str, str] = {}
        counter = iter(range(10**12))

        def near(rec):
            m = _minhash(record_text(rec), cfg)
            hits = lsh.query(m)
            if hits:
                return f"near duplicate of {where_of[sorted(hits)[0]]}"
            k = f"r{next(counter):012d}"
            lsh.insert(k, m)
            where_of[k] = rec.get("where") or "an earlier record"
            return None

        step("dedup_near", fn_keep=near)
    return CleanResult(kept, dropped, steps)


def drop_leakage(train: list[dict], val: list[dict], cfg: CleanConfig) -> tuple[list[dict], list[dict]]:
    """Validation items that near-duplicate a training item would make validation loss look too good."""
    if not cfg.leakage_check or not train or not val:
        return val, []
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=cfg.near_threshold, num_perm=cfg.num_perm)
    where_of = {}
    for i, rec in enumerate(train):
        key = f"t{i}"
        lsh.insert(key, _minhash(record_text(rec), cfg))
        where_of[key] = rec.get("where") or f"training record {i}"
    kept, dropped = [], []
    for rec in val:
        hits = lsh.query(_minhash(record_text(rec), cfg))
        if hits:
            dropped.append({"step": "leakage", "reason": f"validation item near-duplicates training item {where_of[sorted(hits)[0]]}",
                            "where": rec.get("where"), "record": rec})
        else:
            kept.append(rec)
    return kept, dropped
