"""Model facts the memory estimate (train/memory.py) and advise's rules need (layers, widths, vocabulary, parameter
counts, linear shapes).

Read from the model's config and a meta-device copy (no weights loaded), so this takes seconds
even for large models. The result is a plain dataclass: the memory and LR arithmetic never
touches a model.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Linear:
    name: str            # short name, e.g. q_proj
    layer: int | None    # transformer block index, None outside the blocks (lm_head)
    in_features: int
    out_features: int


@dataclass(frozen=True)
class ModelFacts:
    model_type: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    params: int                      # total parameters (tied embeddings counted once)
    embedding_params: int            # input embedding (+ output head when untied)
    tied_embeddings: bool
    context_length: int | None = None
    linears: tuple[Linear, ...] = field(default_factory=tuple)
    has_chat_template: bool = False
    source_dtype_bytes: int = 4      # bytes per weight in the checkpoint (drives load-time peak)
    source_dtype: str = "float32"    # the checkpoint's dtype (models/load.stored_dtype; bfloat16 narrows LoRA's base)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("linears")
        return d


_LAYER = re.compile(r"\.layers\.(\d+)\.")


def model_facts(path, trust_remote_code: bool = False, has_chat_template: bool | None = None) -> ModelFacts:
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if has_chat_template is None:
        from tunewise.models.load import load_tokenizer

        has_chat_template = bool(load_tokenizer(path, trust_remote_code).chat_template)
    from tunewise.models.load import stored_dtype

    return facts_from_config(conf, trust_remote_code=trust_remote_code, has_chat_template=has_chat_template,
                             stored=stored_dtype(path))


def facts_from_config(conf, *, trust_remote_code: bool = False, has_chat_template: bool = False,
                      stored: str | None = None) -> ModelFacts:
    """ModelFacts of a transformers config (a meta-device model: no weights are made). stored: the checkpoint's
    dtype as its files hold it, where known (else the config's)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(conf, trust_remote_code=trust_remote_code)
    text = conf.get_text_config() if hasattr(conf, "get_text_config") else conf
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = out is not None and emb is not None and out.weight is emb.weight
    n_emb = emb.weight.numel() + (out.weight.numel() if out is not None and not tied else 0)
    linears = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            m = _LAYER.search(name + ".")
            linears.append(Linear(name.rsplit(".", 1)[-1], int(m.group(1)) if m else None, mod.in_features, mod.out_features))
    heads = getattr(text, "num_attention_heads", 1)
    hidden = text.hidden_size
    src_dtype = stored or str(getattr(conf, "dtype", None) or getattr(conf, "torch_dtype", None) or "float32")
    src_dtype = src_dtype.removeprefix("torch.")
    return ModelFacts(
        model_type=conf.model_type, layers=text.num_hidden_layers, hidden=hidden,
        intermediate=getattr(text, "intermediate_size", 4 * hidden), heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or hidden // heads, vocab=text.vocab_size,
        params=sum(p.numel() for p in model.parameters()), embedding_params=n_emb, tied_embeddings=tied,
        context_length=getattr(text, "max_position_embeddings", None), linears=tuple(linears),
        has_chat_template=has_chat_template, source_dtype_bytes=2 if ("16" in src_dtype) else 4,
        source_dtype=src_dtype if src_dtype in ("bfloat16", "float16", "float32") else "float32",
    )


def synthetic_facts(*, layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int | None = None,
                    vocab: int, tied: bool = True, model_type: str = "llama", has_chat_template: bool = False) -> ModelFacts:
    """Facts of a Llama-shaped model described by numbers (tests, what-if questions for large models)."""
    kv_heads = kv_heads or heads
    hd = hidden // heads
    kv = kv_heads * hd
    per_layer = [("q_proj", hidden, heads * hd), ("k_proj", hidden, kv), ("v_proj", hidden, kv), ("o_proj", heads * hd, hidden),
                 ("gate_proj", hidden, intermediate), ("up_proj", hidden, intermediate), ("down_proj", intermediate, hidden)]
    linears = [Linear(n, i, a, b) for i in range(layers) for n, a, b in per_layer]
    linears.append(Linear("lm_head", None, hidden, vocab))
    n_emb = vocab * hidden * (1 if tied else 2)
    n_lin = sum(x.in_features * x.out_features for x in linears if x.layer is not None)
    norms = layers * 2 * hidden + hidden
    return ModelFacts(model_type, layers, hidden, intermediate, heads, kv_heads, hd, vocab, n_emb + n_lin + norms, n_emb, tied,
                      None, tuple(linears), has_chat_template)
