"""Preference data against the training stage: which records a stage trains on, KTO examples from pairs, counts.

A record is one of three kinds (`tunewise.data.formats` makes them): a pair (`rejected` beside the chosen
conversation), a KTO example (`label`), or an ordinary record. dpo, orpo and simpo train on pairs; kto on
labelled examples, and a pair gives it two (the chosen answer desirable, the rejected one not, as TRL does for KTO
from paired data); sft and pretrain refuse preference data rather than quietly train on its chosen answers.

For kto a pair stays one item through cleaning, splitting and mixing, and becomes its two examples only when
train.jsonl and val.jsonl are written (`Spill.write(split_pairs=True)`): split earlier, the two halves of a pair
could land in different splits, and the leakage check would then drop the validation half.
"""

from __future__ import annotations

import numpy as np

from tunewise.config.schema import PAIR_STAGES, PREFERENCE_STAGES

# A record's kind, as the spill file keeps it for the counts in stats.json.
PLAIN, PAIR, DESIRABLE, UNDESIRABLE = 0, 1, 2, 3


def kind(rec: dict) -> int:
    if "rejected" in rec:
        return PAIR
    if "label" in rec:
        return DESIRABLE if rec["label"] else UNDESIRABLE
    return PLAIN


def mismatch(rec: dict, stage: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) when `stage` cannot train on this record, else None."""
    k = kind(rec)
    if stage in PAIR_STAGES:
        if k == PAIR:
            return None
        if k != PLAIN:
            return (f"a single answer labelled desirable or not (KTO data) cannot train train.stage {stage}, which "
                    "needs a chosen and a rejected answer to the same prompt",
                    "set train.stage: kto, or give this record chosen and rejected answers")
        return (f"no rejected answer: train.stage {stage} trains on pairs of a chosen and a rejected answer",
                "add chosen and rejected answers to this record (name the columns with columns: {chosen: ..., "
                "rejected: ...} if they are called otherwise), or set train.stage: sft")
    if stage == "kto":
        if k != PLAIN:
            return None
        return ("no label: train.stage kto needs each answer marked desirable (true) or undesirable (false)",
                "add a boolean `label` field (or name yours with columns: {kto_tag: ...}), give chosen/rejected "
                "pairs instead, or set train.stage: sft")
    if k == PAIR:
        return (f"this is preference data (a chosen and a rejected answer), but train.stage is {stage}: it would "
                "train on the chosen answers alone", "set train.stage: dpo (or orpo, simpo, kto)")
    if k != PLAIN:
        return (f"this is KTO data (answers labelled desirable or not), but train.stage is {stage}: it would train on "
                "the undesirable answers too", "set train.stage: kto, or remove the label field")
    return None


def fits(rec: dict, stage: str) -> bool:
    """The record is what `stage` trains on as it is (a replayed record of an earlier run must be)."""
    k = kind(rec)
    if stage in PAIR_STAGES:
        return k == PAIR
    if stage == "kto":
        return k != PLAIN  # a pair is written as two examples
    return k == PLAIN


def kto_examples(rec: dict) -> list[dict]:
    """A pair as two KTO examples, its chosen answer desirable and its rejected one not; other records as they are."""
    if "rejected" not in rec:
        return [rec]
    base = {k: v for k, v in rec.items() if k != "rejected"}
    prompt = rec["messages"][:-1]
    return [{**base, "label": True},
            {**base, "messages": prompt + [{"role": "assistant", "content": rec["rejected"]}], "label": False}]


def counts(kinds: np.ndarray, train: np.ndarray, val: np.ndarray, stage: str) -> dict | None:
    """stats.json's `preference`: pairs per split (dpo, orpo, simpo); desirable and undesirable examples per split,
    and how many pairs gave one of each (kto)."""
    if stage not in PREFERENCE_STAGES:
        return None

    def of(idx: np.ndarray, k: int) -> int:
        return int(np.count_nonzero(kinds[idx] == k)) if len(idx) else 0

    if stage in PAIR_STAGES:
        return {"stage": stage, "pairs": {"train": of(train, PAIR), "val": of(val, PAIR)}}
    pairs = {"train": of(train, PAIR), "val": of(val, PAIR)}  # each written as one example of either label
    return {"stage": stage, "desirable": {k: of(idx, DESIRABLE) + pairs[k] for k, idx in (("train", train), ("val", val))},
            "undesirable": {k: of(idx, UNDESIRABLE) + pairs[k] for k, idx in (("train", train), ("val", val))},
            "from_pairs": pairs}
