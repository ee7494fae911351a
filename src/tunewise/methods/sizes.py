"""How many parameters a method trains, from a model's shape alone (no weights): the part of the memory
estimate that each method owns (registered as `trainable_params`, read by train/memory.py).

`facts` is a model's shape (models/facts.py's ModelFacts: params, layers, hidden, vocab, kv_heads, head_dim,
embedding_params and its linear layers), `mp` the method's settings (train/memory.py's MethodParams).
"""

from __future__ import annotations

EMBEDDING_NAMES = ("embed_tokens", "lm_head", "wte", "embed_out")


def targets(facts, target_modules) -> list:
    """The linear layers `target_modules` names (peft's all-linear: every one inside the blocks)."""
    inside = [x for x in facts.linears if x.layer is not None]
    if target_modules == "all-linear":
        return inside  # peft's all-linear skips the output head
    names = {target_modules} if isinstance(target_modules, str) else set(target_modules)
    return [x for x in facts.linears if x.name in names]


def layer_params(facts) -> int:
    return max(0, facts.params - facts.embedding_params) // max(facts.layers, 1)


def module_params(facts, names) -> int:
    n = 0
    for name in names:
        if name in EMBEDDING_NAMES:
            n += facts.vocab * facts.hidden
        elif "norm" in name:
            n += facts.hidden
        else:
            n += sum(x.in_features * x.out_features for x in facts.linears if x.name == name)
    return n


def lora(facts, mp) -> int:
    n = sum(mp.lora_r * (x.in_features + x.out_features) + (x.out_features if mp.use_dora else 0)
            for x in targets(facts, mp.target_modules))
    return n + module_params(facts, mp.modules_to_save)


def full(facts, mp) -> int:
    return facts.params


def freeze(facts, mp) -> int:
    k = min(mp.freeze_trainable_layers, facts.layers)
    return k * layer_params(facts) + module_params(facts, mp.freeze_extra_modules)


def prefix(facts, mp) -> int:
    kv = facts.layers * 2 * facts.kv_heads * facts.head_dim
    if mp.prefix_projection:  # peft: embedding -> Linear(hidden, size) -> tanh -> Linear(size, layers x 2 x kv)
        p = mp.prefix_projection_size
        return mp.num_virtual_tokens * facts.hidden + facts.hidden * p + p + p * kv + kv
    return mp.num_virtual_tokens * kv


def prompt(facts, mp) -> int:
    return mp.num_virtual_tokens * facts.hidden


def bottleneck(facts, mp) -> int:
    per_block = 2 if mp.adapter_placement == "houlsby" else 1  # after attention too, or after the MLP only
    return facts.layers * per_block * (2 * facts.hidden * mp.adapter_size + mp.adapter_size + facts.hidden)
