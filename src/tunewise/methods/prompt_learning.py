"""Prefix tuning and prompt tuning via peft: learned virtual tokens, the model itself stays frozen.

- prompt: num_virtual_tokens learned input embeddings put before every example (the smallest method).
- prefix: learned key/value vectors put before every example in every attention layer (more capacity).

Both need the virtual tokens in front of each example, so they cannot pack several examples into one
row; prefix tuning feeds its vectors as a KV cache, which peft cannot combine with gradient checkpointing.
Verified on Llama, Qwen2 and Gemma 3 with transformers 5 + peft 0.21 (Gemma 3 gets a DynamicCache from
peft; on its sliding-window layers the prefix, like any early token, is seen only within the window).
"""

from __future__ import annotations

from tunewise.errors import ConfigError
from tunewise.methods import register


def check(cfg) -> None:
    name = cfg.method.name
    if cfg.train.packing:
        raise ConfigError(f"{name} tuning puts virtual tokens before every example, so examples cannot be packed",
                          where="train.packing", fix="set train.packing: false (or use method.name: lora)")
    if name == "prefix" and cfg.train.gradient_checkpointing:
        raise ConfigError("prefix tuning feeds its vectors as a key/value cache, which cannot be recomputed "
                          "by gradient checkpointing", where="train.gradient_checkpointing",
                          fix="set train.gradient_checkpointing: false, or use method.name: prompt or lora")


def _continue(model, ctx):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, ctx["previous_adapter"], is_trainable=True)


def _smoke(model, method: str):
    """One tiny forward: turn an architecture peft cannot handle into a clear error before training starts."""
    import torch

    base = model.get_base_model()
    if getattr(base, "_is_stateful", False):
        raise ConfigError(f"{method} tuning needs attention layers; {base.config.model_type} is a recurrent/"
                          "state-space model", where="method.name", fix="use method.name: lora or full")
    try:
        with torch.no_grad():
            ids = torch.tensor([[base.config.bos_token_id or 1] * 2], device=base.device)
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except Exception as e:  # noqa: BLE001 — report which architecture fails and why, for people
        import peft
        import transformers

        raise ConfigError(
            f"{method} tuning does not work with {base.config.model_type} models in transformers "
            f"{transformers.__version__} + peft {peft.__version__}: {type(e).__name__}: {e}",
            where="method.name", fix="use method.name: prompt, lora or adapter for this model") from None
    return model


@register(
    "prefix",
    en="Prefix tuning: learn key/value vectors (method.num_virtual_tokens) put in front of every attention layer; "
    "the model stays frozen.",
    zh="前缀微调（Prefix tuning）：学习放在每个注意力层前面的键/值向量（method.num_virtual_tokens 个），原模型不动。",
    mergeable=False, check=check, continues=("PREFIX_TUNING",),
)
def apply_prefix(model, cfg, ctx=None):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    if ctx and ctx.get("previous_adapter"):
        return _smoke(_continue(model, ctx), "prefix")
    conf = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens,
                              prefix_projection=cfg.prefix_projection)
    return _smoke(get_peft_model(model, conf), "prefix")


@register(
    "prompt",
    en="Prompt tuning: learn method.num_virtual_tokens input embeddings put before every example "
    "(the fewest parameters; optional start from text: method.prompt_init_text).",
    zh="提示微调（Prompt tuning）：学习放在每条样本前面的 method.num_virtual_tokens 个输入向量（参数最少；可用 method.prompt_init_text 的文字初始化）。",
    mergeable=False, check=check, continues=("PROMPT_TUNING",),
)
def apply_prompt(model, cfg, ctx=None):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    if ctx and ctx.get("previous_adapter"):
        return _smoke(_continue(model, ctx), "prompt")
    model = get_peft_model(model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens))
    if cfg.prompt_init_text:
        init_from_text(model, cfg.prompt_init_text, (ctx or {}).get("tokenizer"))
    return _smoke(model, "prompt")


def init_from_text(model, text: str, tokenizer) -> None:
    """Start the virtual tokens at the embeddings of `text` (repeated to fill), as the prompt-tuning paper does.

    Done here rather than with peft's PromptTuningInit.TEXT, which stores a tokenizer path in the adapter
    config and reloads the tokenizer every time the adapter is loaded.
    """
    import torch

    if tokenizer is None:
        raise ConfigError("method.prompt_init_text needs the tokenizer", where="method.prompt_init_text")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError("method.prompt_init_text encodes to no tokens", where="method.prompt_init_text",
                          fix="give a short description of the task, e.g. 'Classify the sentiment:'")
    emb = model.prompt_encoder[model.active_adapter].embedding
    n = emb.weight.shape[0]
    ids = (ids * (n // len(ids) + 1))[:n]
    words = model.get_base_model().get_input_embeddings()
    with torch.no_grad():
        emb.weight.copy_(words(torch.tensor(ids, device=words.weight.device)).to(emb.weight.dtype))
