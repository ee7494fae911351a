"""Text augmentation for small datasets: random deletion, swap and synonym replacement (EDA-style).

Words come from jieba, which segments Chinese and keeps English words and spaces as tokens, so the same
edits work on zh, en and mixed text. Only user prompts are edited by default: answers stay exact.
Deterministic under the seed; applied to the training split only (never to validation).
"""

from __future__ import annotations

import logging
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

_RESOURCE = Path(__file__).parent / "resources" / "synonyms.txt"


def _words(text: str) -> list[str]:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba.lcut(text)


def _is_word(tok: str) -> bool:
    return bool(tok.strip()) and not re.fullmatch(r"\W+", tok)


@lru_cache(maxsize=8)
def load_synonyms(extra: str | None = None) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {}
    files = [_RESOURCE] + ([Path(extra)] if extra else [])
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            group = [w.strip() for w in line.split(",") if w.strip()]
            for w in group:
                table.setdefault(w.lower(), []).extend(x for x in group if x != w)
    return table


def _join(tokens: list[str]) -> str:
    return re.sub(r" {2,}", " ", "".join(tokens)).strip()


def random_deletion(text: str, prob: float, rng: random.Random) -> str:
    toks = _words(text)
    idx = [i for i, t in enumerate(toks) if _is_word(t)]
    if len(idx) < 2:
        return text
    drop = {i for i in idx if rng.random() < prob}
    if len(drop) >= len(idx):
        drop.discard(rng.choice(idx))
    return _join([t for i, t in enumerate(toks) if i not in drop])


def random_swap(text: str, prob: float, rng: random.Random) -> str:
    toks = _words(text)
    idx = [i for i, t in enumerate(toks) if _is_word(t)]
    if len(idx) < 2:
        return text
    for _ in range(max(1, int(len(idx) * prob))):
        a, b = rng.sample(idx, 2)
        toks[a], toks[b] = toks[b], toks[a]
    return _join(toks)


def synonym_replacement(text: str, prob: float, rng: random.Random, synonyms: dict[str, list[str]]) -> str:
    toks = _words(text)
    cand = [i for i, t in enumerate(toks) if t.lower() in synonyms]
    if not cand:
        return text
    for i in rng.sample(cand, max(1, int(len(cand) * prob + 0.5))):
        toks[i] = rng.choice(synonyms[toks[i].lower()])
    return _join(toks)


def augment_text(text: str, cfg, rng: random.Random) -> str:
    syn = load_synonyms(cfg.synonyms_file)
    for m in cfg.methods:
        if m == "delete":
            text = random_deletion(text, cfg.prob, rng)
        elif m == "swap":
            text = random_swap(text, cfg.prob, rng)
        elif m == "synonym":
            text = synonym_replacement(text, cfg.prob, rng, syn)
    return text


def augment_records(records: Iterable[dict], cfg, seed: int) -> list[dict]:
    """Augmented copies of `records` (the originals are not included). Identical copies are skipped."""
    return list(iter_augmented(records, cfg, seed))


def iter_augmented(records: Iterable[dict], cfg, seed: int) -> Iterator[dict]:
    """The copies of `augment_records`, one at a time, so a large training split is never held."""
    if not cfg.enabled:
        return
    rng = random.Random(seed)
    for rec in records:
        for _ in range(cfg.copies):
            if "messages" in rec:
                # a tool result is data the model reads, like the calls: edited, it would no longer match them
                msgs = [dict(m, content=augment_text(m["content"], cfg, rng))
                        if (m["role"] == "user" or (cfg.apply_to == "all" and m["role"] not in ("system", "tool")))
                        else dict(m) for m in rec["messages"]]
                new = {**rec, "messages": msgs}
                if "rejected" in rec and cfg.apply_to == "all":  # a pair's two answers are edited alike
                    new["rejected"] = augment_text(rec["rejected"], cfg, rng)
                changed = new != rec
            else:
                new = {**rec, "text": augment_text(rec["text"], cfg, rng)}
                changed = new["text"] != rec["text"]
            if changed:
                new["augmented"] = True
                yield new
