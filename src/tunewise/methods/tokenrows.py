"""Trainable token rows (method.train_stop_tokens) without copying the vocabulary matrix.

peft's `trainable_token_indices` keeps a few embedding rows trainable (and, for tied weights, the same rows
of the output head) and saves them in a standard adapter. Its forward builds the whole merged matrix with
`index_copy` on every call: for Gemma 3's 262k x 640 embedding that is 670 MB copied per forward, twice
(embedding and tied head), and once more per loss chunk. Here the same result is computed from the base
matrix plus the few rows:

- embedding: look up the base rows, then put the trained rows where the input holds one of the tokens;
- head: base logits, then the trained rows' logits written into their columns (and, in the fused loss,
  the gradient of those rows taken from the same softmax).

`speed_up(model)` switches peft's layers to the subclass below; peft loads, saves and merges them as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _layer_class():
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    class FastTrainableTokensLayer(TrainableTokensLayer):
        """TrainableTokensLayer whose forward never materialises the merged weight matrix."""

        def forward_adapters(self, x, active_adapters, *args, **kwargs):
            if self.disable_adapters or not active_adapters or self.merged:
                return super().forward_adapters(x, active_adapters, *args, **kwargs)
            self._check_overlapping_tokens(active_adapters)
            base = self.base_layer
            if isinstance(base, torch.nn.Embedding):
                out = base(x)  # the base layer's own forward (Gemma scales its embeddings there)
                scale = self._get_embed_scale()
                for name in active_adapters:
                    idx, delta = token_rows(self, name, out.device)
                    hit = torch.isin(x, idx)
                    if bool(hit.any()):
                        pos = torch.searchsorted(idx, x[hit])  # idx is sorted (see token_rows)
                        rows = delta[pos]
                        if scale is not None:
                            rows = rows * scale.to(rows.dtype)
                        out = out.index_put((hit,), rows.to(out.dtype))
                return out
            if isinstance(base, torch.nn.Linear):  # a head tied to the embedding
                out = base(x)
                for name in active_adapters:
                    idx, delta = token_rows(self, name, out.device)
                    out = out.index_copy(-1, idx, F.linear(x, delta.to(x.dtype)).to(out.dtype))
                return out
            return super().forward_adapters(x, active_adapters, *args, **kwargs)

    return TrainableTokensLayer, FastTrainableTokensLayer


def token_rows(layer, name: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted token ids, their trainable rows in the same order) of one adapter of a token layer."""
    ids = torch.tensor(layer.token_indices[name], device=device)
    delta = layer.trainable_tokens_delta[name]
    order = torch.argsort(ids)
    if bool((order != torch.arange(len(ids), device=device)).any()):
        ids, delta = ids[order], delta[order]
    return ids, delta


def speed_up(model) -> int:
    """Switch every peft TrainableTokensLayer in `model` to the copy-free forward; returns how many."""
    base_cls, fast_cls = _layer_class()
    n = 0
    for m in model.modules():
        if type(m) is base_cls:
            m.__class__ = fast_cls
            n += 1
    return n


def head_rows(head):
    """For a head wrapped by peft's TrainableTokensWrapper (active, not merged): (base Linear, ids, rows).
    None for anything else."""
    layer = getattr(head, "token_adapter", None)
    if layer is None or type(layer).__name__ not in ("TrainableTokensLayer", "FastTrainableTokensLayer"):
        return None
    active = list(layer.active_adapters) if not layer.disable_adapters else []
    if len(active) != 1 or layer.merged or not isinstance(layer.base_layer, torch.nn.Linear):
        return None
    ids, rows = token_rows(layer, active[0], layer.base_layer.weight.device)
    return layer.base_layer, ids, rows
