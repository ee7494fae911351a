"""Reader registry: a reader turns one file into raw rows (dicts), each with its location.

A new reader is a new module here that decorates its function with `@register("name", ".ext", ...)`.
Readers never interpret fields; turning rows into conversations is the job of `tunewise.data.formats`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tunewise.errors import DataError


@dataclass
class RawRow:
    """One row from a file. `where` is 'file:line N' / 'file:row N' for reports and errors."""

    data: dict[str, Any]
    where: str


@dataclass
class BadRow:
    """A row the reader could not parse. Kept (not raised) so non-strict runs can report it."""

    where: str
    reason: str
    raw: str = ""


Reader = Callable[[Path, dict], Iterator["RawRow | BadRow"]]


@dataclass
class _Entry:
    name: str
    func: Reader
    extensions: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, *extensions: str):
    """Register a reader under `name` for the given file extensions (lower case, with dot)."""

    def deco(func: Reader) -> Reader:
        _REGISTRY[name] = _Entry(name, func, tuple(e.lower() for e in extensions))
        return func

    return deco


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get(name: str) -> Reader:
    _load_all()
    if name not in _REGISTRY:
        raise DataError(f"unknown reader '{name}'", fix=f"use one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name].func


def for_path(path: Path, explicit: str | None = None) -> tuple[str, Reader]:
    """Pick the reader named by `explicit`, else by the file's extension (longest match wins)."""
    _load_all()
    if explicit:
        return explicit, get(explicit)
    lower = path.name.lower()
    best: _Entry | None = None
    best_len = 0
    for entry in _REGISTRY.values():
        for ext in entry.extensions:
            if lower.endswith(ext) and len(ext) > best_len:
                best, best_len = entry, len(ext)
    if best is None:
        known = sorted({e for en in _REGISTRY.values() for e in en.extensions})
        raise DataError(
            f"no reader for this file type",
            where=str(path),
            fix=f"use one of the known extensions ({', '.join(known)}) or set `reader:` on the dataset "
            f"to one of: {', '.join(sorted(_REGISTRY))}",
        )
    return best.name, best.func


def read(path: str | Path, explicit: str | None = None, options: dict | None = None) -> Iterator[RawRow | BadRow]:
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", where=str(path), fix="check the path (relative paths are resolved from the config file's folder)")
    _, reader = for_path(path, explicit)
    yield from reader(path, options or {})
