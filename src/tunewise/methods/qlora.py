"""QLoRA: the frozen base is loaded quantised by bitsandbytes (4-bit NF4, double quantised, or 8-bit), LoRA on top.

bitsandbytes 0.50 runs 4- and 8-bit layers on CPU as well as on CUDA, so QLoRA trains anywhere; the
result is an ordinary LoRA adapter. Export merges it into the full-precision base (see export/merge.py).
"""

from __future__ import annotations

from tunewise.errors import ModelError
from tunewise.methods import register, sizes
from tunewise.methods.lora import add_lora


def quantization_config(cfg, dtype=None):
    """The BitsAndBytesConfig for method.quant_bits; `dtype` is the compute dtype of the 4-bit matmuls."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelError("qlora needs the bitsandbytes package", where="method.name",
                         fix="pip install bitsandbytes (or use method.name: lora)") from None
    import torch
    from transformers import BitsAndBytesConfig

    if cfg.quant_bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype or torch.float32)


def load_kwargs(cfg, dtype=None) -> dict:
    return {"quantization_config": quantization_config(cfg, dtype)}


def keep_4bit_trainable(model):
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, a Linear4bit run in eval mode without gradients (the Trainer's evaluation,
    a generation) converts its weights in place to a packed inference layout; every later forward, in
    training too, then goes through `gemv_4bit`, which has no autograd kernel, so gradients to earlier
    layers are silently wrong, and absmax is rounded to bfloat16. The switch is the module's own flag.
    """
    for m in model.modules():
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = False
    return model


@register(
    "qlora",
    en="QLoRA: LoRA on a base quantised to 4-bit NF4 (double quantisation) or 8-bit (method.quant_bits); "
    "least memory, a little slower.",
    zh="QLoRA：把冻结的原模型量化成 4 位 NF4（双重量化）或 8 位（method.quant_bits），再在上面训练 LoRA；最省显存，稍慢。",
    load_kwargs=load_kwargs, after_load=keep_4bit_trainable, continues=("LORA",),
    trainable_params=sizes.lora,
)
def apply(model, cfg, ctx=None):
    from peft import prepare_model_for_kbit_training

    if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
        raise ModelError("qlora got a model that is not quantised", where="method.name",
                         fix="load the base with the qlora load_kwargs (tunewise train does this)")
    # Norms and other small float parameters go to float32 for stable training; gradient checkpointing
    # is switched on (or not) by the workflow from train.gradient_checkpointing, like every method.
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return add_lora(model, cfg, ctx)
