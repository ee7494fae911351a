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

    def __init__(self, pad_id: int | None = None, round_rows: bool = False, cost: "PackingCost | None" = None,
                 shared: "SharedPrefix | None" = None, pack: bool = True):
        self.pad_id = pad_id or 0
        self.pack = pack  # False: a batch that does not share its beginning is padded (evaluation's mean loss)
        self.round_rows = round_rows
        # train.packing: auto: a batch that costs less padded than packed is padded (PackingCost); true: every batch
        # packed. Rounded rows (bf16 on a CPU) always pack, to keep the set of shapes small.
        self.cost = None if round_rows else cost
        self.pad = PadCollator(self.pad_id)
        # Examples that begin alike share that beginning in one row (SharedPrefix), where the model reads such a row
        # exactly (shared_prefix_is_exact) and it costs less than padding or packing the batch.
        self.shared = shared
        self.shared_cost = cost

    def __call__(self, features: list[dict]) -> dict:
        lengths = [len(f["input_ids"]) for f in features]
        if self.shared is not None and (n := common_unsupervised_prefix(features)) >= SHARED_PREFIX_MIN:
            if self.shared_cost is None or self.shared_cost.shared_cheaper(lengths, n):
                return self._shared_row(features, n)
        if not self.pack or (self.cost is not None and self.cost.pads_cheaper(lengths)):
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

    def _shared_row(self, features: list[dict], n: int) -> dict:
        """[shared beginning | rest of example 1 | rest of example 2 | ...] in one row: every rest attends to the
        shared beginning and to itself, at the positions it has alone."""
        first = list(features[0]["input_ids"][:n])
        ids, labels, pos, seg = first, [IGNORE] * n, list(range(n)), [0] * n
        for k, f in enumerate(features, start=1):
            rest = list(f["input_ids"][n:])
            ids += rest
            lab = list(f["labels"][n:])
            lab[0] = IGNORE  # unsupervised by the choice of n: the token after the shared part is a prompt token
            labels += lab
            pos += list(range(n, n + len(rest)))
            seg += [k] * len(rest)
        pad = -len(ids) % row_multiple(len(ids)) if self.round_rows else 0
        ids += [self.pad_id] * pad
        labels += [IGNORE] * pad
        pos += list(range(pad))
        seg += [-1] * pad
        batch = {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([pos], dtype=torch.long),
            "attention_mask": self.shared.mask(torch.tensor(seg), torch.tensor(pos)),
            "use_cache": False,
            # the tokens the examples hold (tokens/s counts them as a padded or packed batch would)
            "example_tokens": torch.tensor([sum(len(f["input_ids"]) for f in features)], dtype=torch.long),
        }
        if self.round_rows:
            batch["pad_tokens"] = torch.tensor([pad], dtype=torch.long)
        return batch


SHARED_PREFIX_MIN = 16  # tokens: a shorter common beginning is not worth a row of its own layout


def common_unsupervised_prefix(features: list[dict]) -> int:
    """How many leading tokens every example of the batch has in common and that no example is scored on, the
    token after them included (each example's first own token is then no target either: it follows the shared
    part in its own example, not the previous example's end in the row). Each example keeps one token of its own.
    0 for a batch of one."""
    if len(features) < 2:
        return 0
    first = features[0]["input_ids"]
    limit = min(len(f["input_ids"]) for f in features) - 1
    for f in features:
        lab = f["labels"]
        sup = next((i for i, y in enumerate(lab) if y != IGNORE), len(lab))
        limit = min(limit, sup - 1)  # tokens 0..n (the shared part and the first own token) unscored
    n = 0
    while n < limit and all(f["input_ids"][n] == first[n] for f in features):
        n += 1
    return max(0, n)


class SharedPrefix:
    """The attention masks of a shared-prefix row (PackCollator._shared_row) for one model.

    The row holds [shared | rest 1 | rest 2 | ... | padding]. A token of rest k attends to the shared part and to
    the earlier tokens of rest k; the shared part attends to itself, causally; the padding segment only to itself.
    Positions continue from the shared part's end in every rest, so rotary embeddings see what they see alone, and a
    sliding-window layer's window is measured in those positions (query position - key position < window), which
    is the window the example has alone. transformers takes a 4D mask as it is (no mask of its own is built); models
    with several kinds of layer (Gemma 3, Qwen2) take one mask per kind. Boolean masks (True: may attend), the form
    sdpa takes."""

    def __init__(self, kinds: dict[str, int | None] | None):
        self.kinds = kinds  # layer type -> sliding window (None: full attention); None: one mask for every layer

    @classmethod
    def of(cls, model) -> "SharedPrefix | None":
        """For a loaded model (a peft model: its base), or None where it has layers of a kind whose mask this does
        not know. Boolean masks are sdpa's form (model.attn_implementation); an attention that reads them otherwise
        fails shared_prefix_is_exact."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        conf = base.config
        text = conf.get_text_config() if hasattr(conf, "get_text_config") else conf
        if getattr(text, "is_encoder_decoder", False):
            return None
        types = getattr(text, "layer_types", None)
        if not types:
            return cls(None)
        window = getattr(text, "sliding_window", None)
        kinds: dict[str, int | None] = {}
        for t in set(types):
            if t == "full_attention":
                kinds[t] = None
            elif t == "sliding_attention" and window:
                kinds[t] = int(window)
            else:
                return None
        return cls(kinds)

    def mask(self, seg: torch.Tensor, pos: torch.Tensor, parent: list[int] | None = None):
        """seg: each token's segment (-1: the padding segment); parent: each segment's parent segment (-1: none),
        by default segment 0 the parent of every other. A token attends to the earlier tokens of its own segment and
        of its segment's ancestors."""
        n = seg.shape[0]
        if parent is None:
            parent = [-1] + [0] * int(seg.max())
        m = len(parent)
        anc = torch.eye(m + 1, dtype=torch.bool)  # anc[s, t]: t is s or an ancestor of s; index m: padding
        for s_ in range(m):
            t = parent[s_]
            while t >= 0:
                anc[s_, t] = True
                t = parent[t]
        si = torch.where(seg < 0, m, seg)
        allowed = torch.ones(n, n, dtype=torch.bool).tril_() & anc[si[:, None], si[None, :]]
        if self.kinds is None:
            return allowed[None, None]
        out = {}
        for kind, window in self.kinds.items():
            m = allowed if window is None else allowed & ((pos[:, None] - pos[None, :]) < window)
            out[kind] = m[None, None]
        return out


def to_device(value, device):
    """A collated batch (or one of its values) on `device`, a shared row's per-layer-kind masks (a dict) included."""
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    return value.to(device) if torch.is_tensor(value) else value


def shared_for(model) -> "SharedPrefix | None":
    """SharedPrefix for a loaded model that reads shared rows exactly, else None."""
    shared = SharedPrefix.of(model)
    return shared if shared is not None and shared_prefix_is_exact(model, shared) else None


def shared_or_padded(model, pad_id: int) -> "PackCollator | PadCollator":
    """Batches for a forward pass outside training (evaluation's mean loss): a shared-prefix row where the batch
    begins alike and the model reads such a row exactly, padded otherwise."""
    shared = shared_for(model)
    if shared is None:
        return PadCollator(pad_id)
    return PackCollator(pad_id, cost=PackingCost.of(model), shared=shared, pack=False)


@torch.no_grad()
def shared_prefix_is_exact(model, shared: SharedPrefix, vocab_size: int | None = None) -> bool:
    """Whether this model reads a shared-prefix row as it reads its examples alone: two random examples with a
    common beginning, the second one's logits in the row against its logits alone (like packed_attention_is_exact).
    """
    vocab = vocab_size or getattr(getattr(model, "config", None), "vocab_size", None) or 100
    gen = torch.Generator().manual_seed(1)
    head = torch.randint(3, max(4, vocab), (7,), generator=gen).tolist()
    a = torch.randint(3, max(4, vocab), (5,), generator=gen).tolist()
    b = torch.randint(3, max(4, vocab), (4,), generator=gen).tolist()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        alone = _logits(model(input_ids=torch.tensor([head + b], device=device), use_cache=False))
        seg = torch.tensor([0] * 7 + [1] * 5 + [2] * 4)
        pos = torch.tensor(list(range(12)) + list(range(7, 11)))
        mask = to_device(shared.mask(seg, pos), device)
        row = _logits(model(input_ids=torch.tensor([head + a + b], device=device), position_ids=pos[None].to(device),
                            attention_mask=mask, use_cache=False))
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError):
        return False
    finally:
        model.train(was_training)
    if alone is None or row is None:
        return False
    alone, row = alone[7:], row[12:]
    scale = alone.abs().max().clamp_min(1e-6)
    return bool(((row - alone).abs().max() / scale) < 1e-3)


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

    def shared(self, lengths: list[int], prefix: int) -> float:
        """One row holding the first `prefix` tokens once: its attention is computed over the whole row."""
        s = sum(lengths) - (len(lengths) - 1) * prefix
        return s * self.per_token + s * s * self.per_pair

    def shared_cheaper(self, lengths: list[int], prefix: int) -> bool:
        return self.shared(lengths, prefix) < min(self.padded(lengths), self.packed(lengths))
