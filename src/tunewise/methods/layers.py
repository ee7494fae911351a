"""Finding the transformer blocks of a causal LM, whatever its family calls them (no registration here)."""

from __future__ import annotations

import torch

from tunewise.errors import ConfigError


def base_of(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_layers(model) -> tuple[str, torch.nn.ModuleList]:
    """(qualified name, ModuleList) of the transformer blocks, bottom to top."""
    model = base_of(model)
    conf = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(conf, "num_hidden_layers", None)
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) > 0 and (n is None or len(m) == n)]
    # prefer the list named like the usual families do (model.layers, transformer.h, ...)
    found.sort(key=lambda x: (x[0].rsplit(".", 1)[-1] not in ("layers", "h", "blocks", "layer"), x[0].count(".")))
    if not found:
        raise ConfigError(f"cannot find the transformer blocks of this {conf.model_type} model",
                          where="method.name", fix="use method.name: lora or full, which need no block structure")
    return found[0]


def find_modules(model, names: list[str], where: str) -> list[tuple[str, torch.nn.Module]]:
    """Modules whose qualified name is, or ends with, each given name ('norm' -> 'model.norm')."""
    model = base_of(model)
    out = []
    all_names = [n for n, _ in model.named_modules() if n]
    for want in names:
        hits = [(n, m) for n, m in model.named_modules() if n and (n == want or n.endswith("." + want))]
        if not hits:
            import difflib

            short = sorted({n.rsplit(".", 1)[-1] for n in all_names} | {n for n in all_names if n.count(".") <= 1})
            close = difflib.get_close_matches(want, short, n=3)
            raise ConfigError(f"no module named '{want}' in this model", where=where,
                              fix=f"did you mean: {', '.join(close)}?" if close else
                              f"module names here include: {', '.join(short[:20])}")
        out += hits
    return out
