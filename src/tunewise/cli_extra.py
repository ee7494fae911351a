"""Commands of the later stages (curves, eval, export, explain, advise, lint, inspect, ui).

Each stage registers its subcommands here so cli.py stays one screen long.
"""

from __future__ import annotations

import importlib

# module path -> function `register(subparsers)`; a stage that is absent is simply not offered.
_STAGES = [
    "tunewise.curves.cli",
    "tunewise.evaluate.cli",
    "tunewise.export.cli",
    "tunewise.advise.cli",
    "tunewise.models.cli",
    "tunewise.ui.cli",
]


def register(sub) -> None:
    for mod in _STAGES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and mod.startswith(e.name):
                continue
            raise
        m.register(sub)
