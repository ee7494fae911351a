"""Stamp every run with what produced it: versions, config hash, data fingerprint (STYLE.md #10)."""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path

from tunewise import __version__
from tunewise.fileio import write_json

_PACKAGES = ["torch", "transformers", "peft", "accelerate", "bitsandbytes", "tokenizers", "safetensors"]


def versions() -> dict:
    out = {"tunewise": __version__, "python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def fingerprint(path: Path) -> str | None:
    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stamp(run: Path) -> None:
    write_json(run / "stamp.json", {
        "versions": versions(),
        "config_sha256": fingerprint(run / "config.yaml"),
        "train_data_sha256": fingerprint(run / "data" / "train.jsonl"),
        "val_data_sha256": fingerprint(run / "data" / "val.jsonl"),
    })
