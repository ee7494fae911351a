"""Collators: pad to the longest example in the batch, or pack several examples into one row."""

from __future__ import annotations

import torch

from tunewise.templates.encode import IGNORE


class PadCollator:
    """Right-pad input_ids/labels; pad positions get attention 0 and label -100."""

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id = pad_id
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        n = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            n = (n + self.multiple - 1) // self.multiple * self.multiple
        ids = torch.full((len(features), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), n), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            ids[i, :k] = torch.as_tensor(f["input_ids"])
            labels[i, :k] = torch.as_tensor(f["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class PackCollator:
    """Concatenate a batch's examples into one row with position_ids restarting at each example.

    transformers builds a block-diagonal causal mask from restarting position_ids, so attention never
    crosses examples; the first label of every example is dropped so no example predicts across a seam.
    """

    def __call__(self, features: list[dict]) -> dict:
        ids, labels, pos = [], [], []
        for f in features:
            k = len(f["input_ids"])
            ids += list(f["input_ids"])
            lab = list(f["labels"])
            lab[0] = IGNORE
            labels += lab
            pos += list(range(k))
        return {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([pos], dtype=torch.long),
            # transformers only derives the block-diagonal mask from position_ids when no KV cache exists.
            "use_cache": False,
        }
