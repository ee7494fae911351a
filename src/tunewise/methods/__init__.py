"""Tuning methods. Each module registers `apply(model, cfg: MethodConfig, ctx) -> model` under a name.

A method decides which parameters train; the trainer never needs to know which method ran.
`tunewise methods` lists them with a one-line explanation in English and Chinese.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from tunewise.errors import ConfigError


@dataclass
class MethodInfo:
    name: str
    apply: Callable[..., Any]
    summary_en: str
    summary_zh: str
    peft: bool = True          # result saved as an adapter (adapter/) rather than full weights (model/)
    mergeable: bool = True     # can be merged into the base for export
    load_kwargs: Callable[..., dict] | None = None  # extra from_pretrained kwargs (e.g. quantization)


_METHODS: dict[str, MethodInfo] = {}


def register(name: str, *, en: str, zh: str, peft: bool = True, mergeable: bool = True, load_kwargs=None):
    def deco(fn):
        _METHODS[name] = MethodInfo(name, fn, en, zh, peft, mergeable, load_kwargs)
        return fn

    return deco


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def get(name: str) -> MethodInfo:
    _load_all()
    if name not in _METHODS:
        import difflib

        close = difflib.get_close_matches(name, list(_METHODS), n=1)
        raise ConfigError(
            f"unknown method '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
            where="method.name",
            fix=f"use one of: {', '.join(sorted(_METHODS))} (`tunewise methods` explains each)",
        )
    return _METHODS[name]


def all_methods() -> list[MethodInfo]:
    _load_all()
    return [_METHODS[k] for k in sorted(_METHODS)]


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if hasattr(p, "quant_state") or p.__class__.__name__ == "Params4bit":
            n *= 2  # 4-bit packs two values per byte element
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
