"""Freeze tuning: train only the top N transformer blocks (and any named extra modules); the rest stays frozen.

The lower blocks hold general features and the upper ones task-specific ones, so training only the top
adapts the model with a fraction of full fine-tuning's memory for gradients and optimizer states.
The result is a complete model folder (model/), like full fine-tuning.
"""

from __future__ import annotations

import sys

from tunewise.errors import ConfigError
from tunewise.methods import register, sizes
from tunewise.methods.layers import decoder_layers, find_modules


def trainable_modules(model, cfg) -> list[str]:
    """Qualified names of the modules freeze tuning trains for this config."""
    name, layers = decoder_layers(model)
    n = cfg.freeze_trainable_layers
    if n > len(layers):
        raise ConfigError(f"method.freeze_trainable_layers is {n} but the model has only {len(layers)} layers",
                          where="method.freeze_trainable_layers",
                          fix=f"use at most {len(layers)} (or method.name: full to train everything)")
    top = [f"{name}.{i}" for i in range(len(layers) - n, len(layers))]
    extra = [n_ for n_, _ in find_modules(model, list(cfg.freeze_extra_modules), "method.freeze_extra_modules")]
    return top + extra


@register(
    "freeze",
    en="Freeze tuning: train only the top N transformer layers (method.freeze_trainable_layers) plus named modules "
    "(method.freeze_extra_modules); the rest stays frozen.",
    zh="冻结微调：只训练最上面 N 层（method.freeze_trainable_layers）和指定模块（method.freeze_extra_modules），其余参数冻结。",
    trainable_params=sizes.freeze,
)
def apply(model, cfg, ctx=None):
    names = trainable_modules(model, cfg)
    model.requires_grad_(False)
    modules = dict(model.named_modules())
    for n in names:
        modules[n].requires_grad_(True)
    _, layers = decoder_layers(model)
    first = len(layers) - cfg.freeze_trainable_layers
    extra = f" + {', '.join(cfg.freeze_extra_modules)}" if cfg.freeze_extra_modules else ""
    print(f"[tunewise] freeze: training layers {first}-{len(layers) - 1} of 0-{len(layers) - 1}{extra}",
          file=sys.stderr, flush=True)
    return model
