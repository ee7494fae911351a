"""Plain text reader: one record per paragraph (default), per document or per line."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.data.readers._encoding import detect_encoding
from tunewise.errors import DataError


@register("text", ".txt", ".md", options={
    "split": "one record per document, paragraph (default) or line",
    "encoding": "text encoding; detected when not set (utf-8, utf-8 with BOM, gb18030, ...)"})
def read_text(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    split = options.get("split", "paragraph")
    if split not in ("document", "paragraph", "line"):
        raise DataError(f"unknown text split '{split}'", where="data.datasets[].options.split",
                        fix="use split: document, paragraph or line")
    text = path.read_text(encoding=detect_encoding(path, options.get("encoding")), errors="replace")
    if split == "document":
        if text.strip():
            yield RawRow({"text": text.strip()}, f"{path}:1")
        return
    if split == "line":
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield RawRow({"text": line.strip()}, f"{path}:{i}")
        return
    block: list[str] = []
    start = 1
    for i, line in enumerate(text.splitlines() + [""], start=1):
        if line.strip():
            if not block:
                start = i
            block.append(line.rstrip())
        elif block:
            yield RawRow({"text": "\n".join(block).strip()}, f"{path}:{start}")
            block = []
