"""Generation metrics that work on Chinese, English and mixed text.

Tokenisation for scoring: every CJK character is a token (the usual choice for Chinese ROUGE/BLEU, and
independent of a segmenter's dictionary); runs of Latin letters/digits are lower-cased words;
punctuation is dropped. ROUGE-N/L F1 and corpus BLEU-4 (with add-one smoothing for n > 1, as in
sacrebleu's 'add-k' for short texts) are computed on those tokens.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[A-Za-z0-9]+(?:'[A-Za-z]+)?")


def tokenize_for_metrics(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text or "")]


def _ngrams(toks: list[str], n: int) -> Counter:
    return Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_pair(pred: str, ref: str) -> dict[str, float]:
    p, r = tokenize_for_metrics(pred), tokenize_for_metrics(ref)
    out = {}
    for n in (1, 2):
        pn, rn = _ngrams(p, n), _ngrams(r, n)
        overlap = sum((pn & rn).values())
        out[f"rouge{n}"] = _f1(overlap / max(sum(pn.values()), 1), overlap / max(sum(rn.values()), 1)) if pn and rn else 0.0
    lcs = _lcs(p, r)
    out["rougeL"] = _f1(lcs / max(len(p), 1), lcs / max(len(r), 1)) if p and r else 0.0
    if not p and not r:
        out = {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    return out


def rouge(preds: list[str], refs: list[str]) -> dict[str, float]:
    if not preds:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    scores = [rouge_pair(p, r) for p, r in zip(preds, refs)]
    return {k: 100 * sum(s[k] for s in scores) / len(scores) for k in ("rouge1", "rouge2", "rougeL")}


def bleu4(preds: list[str], refs: list[str]) -> float:
    """Corpus BLEU-4 (0-100) with brevity penalty; add-one smoothing for 2..4-gram precisions."""
    matches, totals = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for p, r in zip(preds, refs):
        pt, rt = tokenize_for_metrics(p), tokenize_for_metrics(r)
        hyp_len, ref_len = hyp_len + len(pt), ref_len + len(rt)
        for n in range(1, 5):
            pn, rn = _ngrams(pt, n), _ngrams(rt, n)
            matches[n - 1] += sum((pn & rn).values())
            totals[n - 1] += max(len(pt) - n + 1, 0)
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    logp = 0.0
    for n in range(4):
        m, t = (matches[n], totals[n]) if n == 0 else (matches[n] + 1, totals[n] + 1)
        logp += math.log(m / t) / 4
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100 * bp * math.exp(logp)


def _norm(s: str) -> str:
    return " ".join(tokenize_for_metrics(s))


def exact_match(preds: list[str], refs: list[str]) -> float:
    if not preds:
        return 0.0
    return 100 * sum(_norm(p) == _norm(r) for p, r in zip(preds, refs)) / len(preds)


def repetition_rate(text: str, n: int = 4) -> float:
    """Share of n-grams that repeat an earlier n-gram in the same answer (0 = none; near 1 = looping).

    Uses n=4 over metric tokens (n=2 for answers shorter than 8 tokens). It is 1 - distinct-n.
    """
    toks = tokenize_for_metrics(text)
    if len(toks) < 8:
        n = 2
    grams = [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def perplexity(mean_loss: float | None) -> float | None:
    if mean_loss is None or mean_loss != mean_loss:
        return None
    return math.exp(min(mean_loss, 700.0))  # exp(709) overflows a float


def score_generations(items: list[dict]) -> dict:
    """All generation metrics for items {prompt, reference, prediction, hit_max_new_tokens, num_new_tokens}."""
    preds = [it["prediction"] for it in items]
    refs = [it["reference"] for it in items]
    n = max(len(items), 1)
    out = {**rouge(preds, refs), "bleu4": bleu4(preds, refs), "exact_match": exact_match(preds, refs)}
    out["avg_answer_tokens"] = sum(it.get("num_new_tokens", 0) for it in items) / n
    out["avg_answer_chars"] = sum(len(p) for p in preds) / n
    out["no_stop_rate"] = sum(bool(it.get("hit_max_new_tokens")) for it in items) / n
    out["repetition_rate"] = sum(repetition_rate(p) for p in preds) / n
    out["count"] = len(items)
    return out


# ---- key terms: what a dataset teaches that a prompt does not already say ---------------------------------
_LATIN = re.compile(r"[A-Za-z][A-Za-z0-9'-]{2,}")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_STOPWORDS = frozenset(
    "the and for are was were you your yours with that this these those from have has had not but can could would should "
    "will shall may might must what which who whom whose when where why how all any each some such than then there their "
    "they them our ours its it's i'm i've i'll don't can't won't here just also very more most much many into onto over "
    "under about after before again once only own same too out off upon while because until been being does did doing "
    "let let's yes sure please thank thanks".split())


def term_set(text: str) -> set[str]:
    """Lower-cased Latin words of 3+ characters (minus stopwords) and CJK character bigrams of a text."""
    terms = {w.lower() for w in _LATIN.findall(text or "")} - _STOPWORDS
    for run in _CJK_RUN.findall(text or ""):
        terms.update(run[i:i + 2] for i in range(len(run) - 1))
    return terms


def key_terms(answers: list[str], prompts: list[str], *, min_share: float = 0.5, max_prompt_share: float = 0.05,
              exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Terms the answers of a dataset keep repeating that its prompts do not contain: a name, a maker, a label.

    A term is key when it is in at least `min_share` of the answers (a fact repeated in most answers, not a word
    that is merely common: in the identity set "orion", "bluefield" and "labs" are in 98-100% of the answers,
    the next term, "assistant", in 47%) and at most `max_prompt_share` of the prompts; `exclude` drops terms a
    model already says without training (its answers before training).
    """
    if not answers:
        return []
    a_df: Counter = Counter()
    p_df: Counter = Counter()
    for a in answers:
        a_df.update(term_set(a))
    for p in prompts:
        p_df.update(term_set(p))
    n_a, n_p = len(answers), max(len(prompts), 1)
    keys = [t for t, c in a_df.items() if c / n_a >= min_share and p_df[t] / n_p <= max_prompt_share and t not in exclude]
    return sorted(keys, key=lambda t: (-a_df[t], t))


def key_term_hits(preds: list[str], refs: list[str], keys: list[str]) -> tuple[int, int]:
    """(answers that name a key term their reference names, references that name one)."""
    hits = judged = 0
    keyset = set(keys)
    for p, r in zip(preds, refs):
        wanted = term_set(r) & keyset
        if not wanted:
            continue
        judged += 1
        hits += bool(term_set(p) & wanted)
    return hits, judged
