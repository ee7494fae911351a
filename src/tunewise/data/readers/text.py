"""Plain text reader: one record per document (default), per paragraph or per line."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register


@register("text", ".txt", ".md")
def read_text(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    split = options.get("split", "paragraph")  # document | paragraph | line
    text = path.read_text(encoding=options.get("encoding", "utf-8-sig"), errors="replace")
    if split == "document":
        if text.strip():
            yield RawRow({"text": text.strip()}, f"{path}:1")
        return
    line_no = 1
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
    del line_no
