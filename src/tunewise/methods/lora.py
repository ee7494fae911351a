"""LoRA (with DoRA and rsLoRA switches) via peft."""

from __future__ import annotations

from tunewise.methods import register, sizes


def lora_config(cfg, token_ids: list[int] | None = None):
    """peft LoraConfig; token_ids: embedding rows (tied output rows too) that train with the adapter."""
    from peft import LoraConfig, TaskType

    target = cfg.target_modules
    return LoraConfig(
        trainable_token_indices=list(token_ids) if token_ids else None,
        task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=target if target == "all-linear" else list(target),
        modules_to_save=list(cfg.modules_to_save) or None, use_dora=cfg.use_dora, use_rslora=cfg.use_rslora,
    )


def add_lora(model, cfg, ctx=None):
    """A fresh LoRA adapter, or the previous run's one loaded trainable (incremental training)."""
    from peft import PeftModel, get_peft_model

    if ctx is not None and ctx.get("previous_adapter"):
        return PeftModel.from_pretrained(model, ctx["previous_adapter"], is_trainable=True)
    token_ids = (ctx or {}).get("token_ids")
    if token_ids and embedding_in_modules_to_save(model, cfg.modules_to_save):
        token_ids = None  # the whole embedding trains already (and peft cannot wrap a wrapped module twice)
    return get_peft_model(model, lora_config(cfg, token_ids))


def embedding_in_modules_to_save(model, modules_to_save) -> bool:
    """Whether method.modules_to_save names the model's input embedding (embed_tokens, wte, ...)."""
    emb = model.get_input_embeddings()
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is emb}
    return bool(names & set(modules_to_save))


@register(
    "lora",
    en="LoRA: freeze the model, train small low-rank updates on linear layers (fast, little memory; the usual start). "
    "method.use_dora / use_rslora switch on DoRA and rsLoRA.",
    zh="LoRA：冻结原模型，只训练线性层上的低秩增量（快、省显存，最常用的起点）。method.use_dora / use_rslora 开启 DoRA、rsLoRA。",
    continues=("LORA",),
    trainable_params=sizes.lora,
)
def apply(model, cfg, ctx=None):
    return add_lora(model, cfg, ctx)
