"""`tunewise inspect MODEL`: what a newcomer needs to choose LoRA targets and settings.

Counts come from a meta-device copy of the model (no weights loaded), so even large models inspect
in seconds once their config and tokenizer are local.
"""

from __future__ import annotations

from collections import defaultdict

# Linear layer name -> (kind, meaning, usual LoRA target?)
_KINDS = {
    "q_proj": ("attention", "query projection: what each token looks for", True),
    "k_proj": ("attention", "key projection: what each token offers to be found by", True),
    "v_proj": ("attention", "value projection: what a token passes on when attended to", True),
    "o_proj": ("attention", "output projection: mixes the attention heads back together", True),
    "qkv_proj": ("attention", "fused query/key/value projection", True),
    "c_attn": ("attention", "fused query/key/value projection (GPT-2 style)", True),
    "gate_proj": ("mlp", "MLP gate: decides which features pass (SwiGLU/GeGLU)", True),
    "up_proj": ("mlp", "MLP up-projection into the wide hidden layer", True),
    "down_proj": ("mlp", "MLP down-projection back to the model width", True),
    "fc1": ("mlp", "MLP first layer", True),
    "fc2": ("mlp", "MLP second layer", True),
    "lm_head": ("output", "turns hidden states into next-token scores (tied to embeddings in many models)", False),
    "embed_tokens": ("embedding", "token embedding table", False),
}


def model_summary(path, trust_remote_code: bool = False) -> dict:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunewise.models.load import load_tokenizer

    conf = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(conf, trust_remote_code=trust_remote_code)
    emb = model.get_input_embeddings()
    out_emb = model.get_output_embeddings()
    tied = out_emb is not None and emb is not None and out_emb.weight is emb.weight
    total = sum(p.numel() for p in model.parameters())
    n_emb = emb.weight.numel() if emb is not None else 0
    if out_emb is not None and not tied:
        n_emb += out_emb.weight.numel()
    groups: dict[str, dict] = defaultdict(lambda: {"count": 0, "shape": None})
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) or name.endswith("embed_tokens"):
            short = name.rsplit(".", 1)[-1]
            g = groups[short]
            g["count"] += 1
            w = getattr(mod, "weight", None)
            g["shape"] = list(w.shape) if w is not None else None
    modules = []
    for short, g in sorted(groups.items()):
        kind, meaning, target = _KINDS.get(short, ("other", "", False))
        modules.append({"name": short, "kind": kind, "count": g["count"], "shape": g["shape"], "meaning": meaning,
                        "usual_lora_target": target})
    tok = load_tokenizer(path, trust_remote_code)
    text_conf = conf.get_text_config() if hasattr(conf, "get_text_config") else conf
    return {
        "path": str(path),
        "architecture": (conf.architectures or [type(model).__name__])[0],
        "model_type": conf.model_type,
        "layers": getattr(text_conf, "num_hidden_layers", None),
        "hidden_size": getattr(text_conf, "hidden_size", None),
        "intermediate_size": getattr(text_conf, "intermediate_size", None),
        "attention_heads": getattr(text_conf, "num_attention_heads", None),
        "kv_heads": getattr(text_conf, "num_key_value_heads", None),
        "head_dim": getattr(text_conf, "head_dim", None),
        "vocab_size": getattr(text_conf, "vocab_size", None),
        "context_length": getattr(text_conf, "max_position_embeddings", None),
        "parameters": {"total": total, "embedding": n_emb, "non_embedding": total - n_emb, "tied_embeddings": tied},
        "linear_modules": modules,
        "lora_targets_hint": sorted(m["name"] for m in modules if m["usual_lora_target"]),
        "chat_template": bool(tok.chat_template),
        "builtin_system_prompt": _builtin_system(tok),
        "chat_template_note": "has its own chat template" if tok.chat_template else
                              "no chat template: a base model — tunewise picks one for its family (template.name: auto)",
        "special_tokens": {k: v for k, v in {"bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token,
                                             "unk": tok.unk_token}.items() if v},
        "additional_special_tokens": list(getattr(tok, "additional_special_tokens", []) or [])[:20],
    }


def _builtin_system(tok) -> str | None:
    if not tok.chat_template:
        return None
    from tunewise.templates import ChatTemplate

    try:
        return ChatTemplate.from_tokenizer(tok).builtin_system
    except Exception:  # an exotic template that cannot render a probe: nothing to report
        return None


def _fmt(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    c = Console()
    p = s["parameters"]
    c.print(f"[bold]{s['architecture']}[/bold] ({s['model_type']}) — {s['path']}")
    c.print(f"layers {s['layers']} · hidden {s['hidden_size']} · MLP {s['intermediate_size']} · heads {s['attention_heads']}"
            f" (KV {s['kv_heads']}) · vocab {s['vocab_size']:,} · context {s['context_length']:,}")
    c.print(f"parameters {_fmt(p['total'])}: embedding {_fmt(p['embedding'])}, non-embedding {_fmt(p['non_embedding'])}"
            + (" (input/output embeddings tied)" if p["tied_embeddings"] else ""))
    t = Table(title="Linear modules (use these names in method.target_modules)")
    for col in ("name", "kind", "count", "shape", "LoRA?", "meaning"):
        t.add_column(col)
    for m in s["linear_modules"]:
        t.add_row(m["name"], m["kind"], str(m["count"]), "x".join(map(str, m["shape"] or [])),
                  "usual" if m["usual_lora_target"] else "", m["meaning"])
    c.print(t)
    c.print(f"chat template: {s['chat_template_note']}")
    if s.get("builtin_system_prompt"):
        c.print(f"the template writes this system prompt into conversations without one: {s['builtin_system_prompt']!r}"
                " (tunewise replaces it when your data states another identity; template.system sets your own)")
    c.print(f"special tokens: {s['special_tokens']}" + (f"; extra: {s['additional_special_tokens']}" if s["additional_special_tokens"] else ""))
