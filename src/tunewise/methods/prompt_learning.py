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
from tunewise.methods import register, sizes


def check(cfg) -> None:
    name = cfg.method.name
    if cfg.train.packing is True:  # 'auto' leaves packing off for virtual tokens (config.plan.packs)
        raise ConfigError(f"{name} tuning puts virtual tokens before every example, so examples cannot be packed",
                          where="train.packing", fix="set train.packing: false (or use method.name: lora)")
    if name == "prefix" and cfg.train.gradient_checkpointing is True:  # auto stays off for prefix
        raise ConfigError("prefix tuning feeds its vectors as a key/value cache, which cannot be recomputed "
                          "by gradient checkpointing", where="train.gradient_checkpointing",
                          fix="set train.gradient_checkpointing: false, or use method.name: prompt or lora")


def load_weights(model, path) -> None:
    """Load saved virtual-token weights (an adapter folder or a trainer checkpoint) into a live peft model.

    peft refuses `is_trainable=True` for prompt-learning adapters in `from_pretrained`/`load_adapter`,
    so continuing a run and resuming a checkpoint load the weights into a freshly built trainable model.
    """
    from pathlib import Path

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(Path(path) / "adapter_model.safetensors")))


def is_prompt_learning(model) -> bool:
    conf = getattr(model, "peft_config", {}).get(getattr(model, "active_adapter", None))
    return bool(getattr(conf, "is_prompt_learning", False))


def load_checkpoint(model, path, *, for_training: bool) -> None:
    """Trainer checkpoint -> live model (what Trainer's resume and best-model loading would do).

    With prefix_projection the checkpoint holds only the projected prefix: resuming training exactly
    is impossible, but the best checkpoint can become the final result: the encoder is switched to its
    inference form (the projected prefix as a plain table), which is also what gets saved.
    """
    from tunewise.errors import RunError

    name = model.active_adapter
    conf = model.peft_config[name]
    if getattr(conf, "prefix_projection", False) and not conf.inference_mode:
        if for_training:
            raise RunError("cannot resume prefix tuning with method.prefix_projection: checkpoints hold only the "
                           "projected prefix, not the projection MLP", where=str(path),
                           fix="start the run again (--overwrite), or train without method.prefix_projection")
        import copy

        from peft.tuners.prefix_tuning import PrefixEncoder

        conf = copy.copy(conf)
        conf.inference_mode = True
        old = model.prompt_encoder[name]
        model.prompt_encoder[name] = PrefixEncoder(conf).to(old.embedding.weight.device, old.embedding.weight.dtype)
        model.peft_config[name] = conf
    load_weights(model, path)


def _continue(model, ctx):
    from peft import PeftConfig, get_peft_model

    conf = PeftConfig.from_pretrained(str(ctx["previous_adapter"]))
    conf.inference_mode = False
    # A saved prefix is the projection's output (the MLP is not saved): keep training that output directly.
    if getattr(conf, "prefix_projection", False):
        conf.prefix_projection = False
    model = get_peft_model(model, conf)
    load_weights(model, ctx["previous_adapter"])
    return model


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
    trainable_params=sizes.prefix,
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
    trainable_params=sizes.prompt,
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
