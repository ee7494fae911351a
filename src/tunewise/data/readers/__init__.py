"""Reader registry: a reader turns one file into raw rows (dicts), each with its location.

A new reader is a new module here that decorates its function with
`@register("name", ".ext", ..., options={"key": "what it does"})`. Options a reader does not declare
are errors (a misspelt `tabel:` must not silently read the wrong table).
Readers never interpret fields; turning rows into conversations is the job of `tunewise.data.formats`.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tunewise.errors import DataError, TunewiseError


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
    fix: str | None = None  # what to do, when "fix the syntax of this row" would mislead


Reader = Callable[[Path, dict], Iterator["RawRow | BadRow"]]


@dataclass
class _Entry:
    name: str
    func: Reader
    extensions: tuple[str, ...] = field(default_factory=tuple)
    options: dict[str, str] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, *extensions: str, options: dict[str, str] | None = None):
    """Register a reader under `name` for the given file extensions (lower case, with dot).

    `options` maps each accepted `options:` key to a one-line description (shown in errors).
    """

    def deco(func: Reader) -> Reader:
        _REGISTRY[name] = _Entry(name, func, tuple(e.lower() for e in extensions), dict(options or {}))
        return func

    return deco


def _load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def options_of(name: str) -> dict[str, str]:
    _load_all()
    return dict(_REGISTRY[name].options)


def get(name: str) -> Reader:
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(f"unknown reader '{name}'", where="data.datasets[].reader",
                        fix=f"{hint}use one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name].func


def _by_extension(path: Path) -> _Entry | None:
    lower = path.name.lower()
    best: _Entry | None = None
    best_len = 0
    for entry in _REGISTRY.values():
        for ext in entry.extensions:
            if lower.endswith(ext) and len(ext) > best_len:
                best, best_len = entry, len(ext)
    return best


def for_path(path: Path, explicit: str | None = None) -> tuple[str, Reader]:
    """Pick the reader named by `explicit`, else by the file's extension (longest match wins)."""
    _load_all()
    if explicit:
        return explicit, get(explicit)
    best = _by_extension(path)
    if best is None:
        known = sorted({e for en in _REGISTRY.values() for e in en.extensions})
        raise DataError(
            "no reader for this file type",
            where=str(path),
            fix=f"use one of the known extensions ({', '.join(known)}) or set `reader:` on the dataset "
            f"to one of: {', '.join(sorted(_REGISTRY))}",
        )
    return best.name, best.func


def check_options(name: str, options: dict) -> None:
    """Unknown option keys are errors that name the closest valid key."""
    accepted = _REGISTRY[name].options
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(str(key), list(accepted), n=1)
            listing = "; ".join(f"{k}: {v}" for k, v in accepted.items()) or "none"
            raise DataError(
                f"reader '{name}' has no option '{key}'",
                where="data.datasets[].options",
                fix=(f"did you mean '{close[0]}'? " if close else "") + f"options of '{name}': {listing}",
            )


def files_of(path: Path, explicit: str | None = None) -> list[Path]:
    """A dataset path is a file, or a folder whose readable files (by extension, or all with `reader:`) are read in name order."""
    if not path.is_dir():
        return [path]
    _load_all()
    found = sorted(p for p in path.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                   and (explicit or _by_extension(p) is not None))
    if not found:
        raise DataError("the folder holds no file that a reader knows", where=str(path),
                        fix="put .jsonl/.csv/.html/... files in it, or set `reader:` to read every file with one reader")
    return found


def read(path: str | Path, explicit: str | None = None, options: dict | None = None) -> Iterator[RawRow | BadRow]:
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", where=str(path), fix="check the path: a relative path is looked up next to the config file first, then in the current folder")
    options = options or {}
    for file in files_of(path, explicit):
        name, reader = for_path(file, explicit)
        check_options(name, options)
        try:
            yield from reader(file, options)
        except TunewiseError:
            raise
        except (MemoryError, RecursionError):
            raise
        except Exception as e:  # a library's own error (bad zip, not a database, ...) still gets file + fix
            raise DataError(
                f"cannot read this file with the '{name}' reader ({type(e).__name__}: {e})",
                where=str(file),
                fix=f"check that the file really is {name} data and is not damaged, or set `reader:` to the right one "
                f"({', '.join(sorted(_REGISTRY))})",
            ) from e
