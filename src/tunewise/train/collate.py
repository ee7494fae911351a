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


@torch.no_grad()
def packed_attention_is_exact(model, vocab_size: int | None = None) -> bool:
    """Whether this model, given one packed row with restarting position_ids, attends within each example only.

    Two short random examples are run alone and packed; the packed row's logits of the second one must equal its
    logits alone. transformers builds the block-diagonal mask from position_ids for the architectures it ships;
    remote code or an attention implementation that ignores position_ids would let the second example read the
    first, which no loss value would reveal. A few dozen tokens through the model: milliseconds to a second.
    """
    vocab = vocab_size or getattr(getattr(model, "config", None), "vocab_size", None) or 100
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(3, max(4, vocab), (1, 6), generator=gen)
    b = torch.randint(3, max(4, vocab), (1, 5), generator=gen)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        alone = _logits(model(input_ids=b.to(device), use_cache=False))
        row = torch.cat([a, b], dim=1).to(device)
        pos = torch.tensor([list(range(6)) + list(range(5))], device=device)
        packed = _logits(model(input_ids=row, position_ids=pos, use_cache=False))
    except (TypeError, ValueError, RuntimeError):  # a model that cannot take a packed row at all
        return False
    finally:
        model.train(was_training)
    if alone is None or packed is None:
        return False  # no logits to compare: not shown exact, so not packed
    packed = packed[6:]
    scale = alone.abs().max().clamp_min(1e-6)
    return bool(((packed - alone).abs().max() / scale) < 1e-3)


def _logits(out) -> torch.Tensor | None:
    logits = out.get("logits") if isinstance(out, dict) else getattr(out, "logits", None)
    return None if logits is None else logits[0].float()


class PackCollator:
    """Concatenate a batch's examples into one row with position_ids restarting at each example.

    transformers builds a block-diagonal causal mask from restarting position_ids, so attention never
    crosses examples; the first label of every example is dropped so no example predicts across a seam.

    round_rows: round the row's length up (to `row_multiple` of it) with one padding segment of its own (its
    positions restart at 0, its labels are ignored, so no example attends to it or is scored on it). On a CPU in
    bf16 each new row length is a new matmul shape, and oneDNN caches a primitive and its buffers for every shape
    it has seen: packed rows of many lengths grew the peak memory of the headline benchmark by ~0.9 GB
    (bench/RESULTS.md). `pad_tokens` tells the trainer how many tokens of the row are padding.
    """

    def __init__(self, pad_id: int | None = None, round_rows: bool = False, cost: "PackingCost | None" = None):
        self.pad_id = pad_id or 0
        self.round_rows = round_rows
        # train.packing: auto: a batch that costs less padded than packed is padded (PackingCost); true: every batch
        # packed. Rounded rows (bf16 on a CPU) always pack, to keep the set of shapes small.
        self.cost = None if round_rows else cost
        self.pad = PadCollator(self.pad_id)

    def __call__(self, features: list[dict]) -> dict:
        if self.cost is not None and self.cost.pads_cheaper([len(f["input_ids"]) for f in features]):
            return self.pad(features)
        ids, labels, pos = [], [], []
        for f in features:
            k = len(f["input_ids"])
            ids += list(f["input_ids"])
            lab = list(f["labels"])
            lab[0] = IGNORE
            labels += lab
            pos += list(range(k))
        pad = -len(ids) % row_multiple(len(ids)) if self.round_rows else 0
        ids += [self.pad_id] * pad
        labels += [IGNORE] * pad
        pos += list(range(pad))
        batch = {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([pos], dtype=torch.long),
            # transformers only derives the block-diagonal mask from position_ids when no KV cache exists.
            "use_cache": False,
        }
        if self.round_rows:
            batch["pad_tokens"] = torch.tensor([pad], dtype=torch.long)
        return batch


def row_multiple(n: int) -> int:
    """What a packed row of n tokens is rounded up to a multiple of: an eighth of the power of two at or below n,
    from 8 to 64 tokens. Eight steps per doubling keep the set of shapes small (rows of 512-1023 tokens round to
    9 lengths, 512 to 1024) while the padding stays a small share of short rows too (measured: 3.7% of the headline
    benchmark's ~740-token rows, 5.0% of the identity set's ~160-token rows; a flat 64 would pad those by 21%)."""
    return max(8, min(64, 1 << max(0, n.bit_length() - 4)))


def rounds_rows(precision: str, device_type: str) -> bool:
    """Whether packed rows are rounded (PackCollator): on a CPU training in bf16, where oneDNN caches per shape;
    fp32 on a CPU does not cache per shape, and a GPU pads nothing it need not."""
    return precision == "bf16" and device_type == "cpu"


ATTENTION_WEIGHT = 4.0  # a unit of attention work (score or weighted value) costs this many of a weight matmul's


class PackingCost:
    """Whether a batch costs less padded than packed, from the model's shape.

    Packing removes the padding, but the packed row's attention is computed over the whole row with a
    block-diagonal mask: its cost grows with the square of the row's length, not with the sum of the examples'
    squares. Examples of like length, long ones above all, then cost more packed than padded. Per token, the weight
    matrices cost 2 x (parameters outside the embeddings) multiply-adds' worth; per pair of positions attention
    costs 4 x heads x head size x layers, weighted by ATTENTION_WEIGHT: measured on a 2-core AVX2 CPU, SmolLM2-135M
    on the tool-calling set (2 examples of ~510 tokens a step) trained 1.37x faster padded, where the plain count
    says 1.12x; the headline benchmark's batches of 4 mixed lengths (Gemma 3 270M) train 1.32x faster packed, and
    still pack by this rule. The two forms compute the same loss and gradients (tests/perf/test_packing*.py)."""

    def __init__(self, per_token: float, per_pair: float):
        self.per_token, self.per_pair = per_token, per_pair

    @classmethod
    def from_facts(cls, facts) -> "PackingCost":
        """From models/facts.ModelFacts, read from the config: the parameter count is the model's true one also
        where the loaded weights are 4-bit (bitsandbytes packs two to a byte, so a qlora model's tensors report
        half their elements)."""
        body = facts.params - facts.embedding_params
        return cls(2.0 * body, ATTENTION_WEIGHT * 4.0 * facts.heads * facts.head_dim * facts.layers)

    @classmethod
    def of(cls, model, trust_remote_code: bool = False) -> "PackingCost":
        """Of a loaded model (a peft model: of its base), from its config."""
        from tunewise.models.facts import facts_from_config

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return cls.from_facts(facts_from_config(base.config, trust_remote_code=trust_remote_code))

    def padded(self, lengths: list[int]) -> float:
        n = max(lengths)
        return len(lengths) * (n * self.per_token + n * n * self.per_pair)

    def packed(self, lengths: list[int]) -> float:
        s = sum(lengths)
        return s * self.per_token + s * s * self.per_pair

    def pads_cheaper(self, lengths: list[int]) -> bool:
        return len(lengths) > 1 and self.padded(lengths) < self.packed(lengths)
