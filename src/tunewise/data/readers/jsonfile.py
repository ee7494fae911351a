"""JSON (a list of objects, or an object holding one list) and JSONL readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.errors import DataError


@register("jsonl", ".jsonl", ".ndjson", options={})
def read_jsonl(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield BadRow(where, f"malformed JSON ({e.msg} at column {e.colno})", line[:200])
                continue
            if not isinstance(obj, dict):
                yield BadRow(where, f"expected a JSON object, got {type(obj).__name__}", line[:200])
                continue
            yield RawRow(obj, where)


def _line_of(text: str, needle_index: int) -> int:
    return text.count("\n", 0, needle_index) + 1


@register("json", ".json", options={"field": "name of the key that holds the list of records"})
def read_json(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    text = path.read_text(encoding="utf-8-sig")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        # A .json file that is really JSONL is a common mix-up: try it line by line.
        if text.lstrip().startswith("{") and "\n{" in text:
            yield from read_jsonl(path, options)
            return
        raise DataError(
            f"malformed JSON ({e.msg})",
            where=f"{path}:{e.lineno}:{e.colno}",
            fix="fix the JSON syntax there (a trailing comma or a missing quote is the usual cause)",
        ) from None
    key = options.get("field")
    if isinstance(obj, dict):
        # {"data": [...]} style containers are unwrapped; any other object is one record.
        containers = [k for k in ("data", "records", "items", "examples", "rows", "instances", "train") if isinstance(obj.get(k), list)]
        if key:
            obj = obj.get(key)
        elif len(obj) == 1 and containers:
            obj = obj[containers[0]]
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise DataError(
            "expected a list of records",
            where=str(path),
            fix="make the file a JSON list of objects, or name the list with `field:` on the dataset",
        )
    # Record positions: find each top-level object's line cheaply with the decoder.
    dec = json.JSONDecoder()
    starts: list[int] = []
    i = text.find("[")
    if i >= 0:
        pos = i + 1
        n = len(text)
        while pos < n and len(starts) < len(obj):
            while pos < n and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= n or text[pos] == "]":
                break
            try:
                _, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError:
                break
            starts.append(pos)
            pos = end
    for idx, item in enumerate(obj):
        line = _line_of(text, starts[idx]) if idx < len(starts) else None
        where = f"{path}:{line}" if line else f"{path}[{idx}]"
        where += f" (record {idx})"
        if not isinstance(item, dict):
            yield BadRow(where, f"expected a JSON object, got {type(item).__name__}", json.dumps(item, ensure_ascii=False)[:200])
            continue
        yield RawRow(item, where)
