"""JSON (a list of objects, or an object holding one list) and JSONL readers."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.data.readers._encoding import decode_error, detect_encoding
from tunewise.errors import DataError

NUL = b"\x00"
_ENCODING = "text encoding; default utf-8 (JSON's own), e.g. gb18030 for files saved by older Chinese Windows tools"


def _encoding(path: Path, options: dict) -> str:
    """The option (validated), else UTF-8, with a BOM honoured (UTF-8 or UTF-16)."""
    if options.get("encoding"):
        return detect_encoding(path, options["encoding"])
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def _binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return NUL in f.read(8192)


def _shown(encoding: str) -> str:
    return "UTF-8" if encoding in ("utf-8", "utf-8-sig") else encoding


def _not_text(where: str) -> DataError:
    return DataError("this is not a text file (it holds NUL bytes): a binary file, or text saved as UTF-16 without a BOM",
                     where=where, fix="point the dataset at the JSON Lines file itself, or set options: {encoding: utf-16}")


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, text); bytes that do not decode are an error that names the line and the encoding option."""
    if encoding.startswith("utf-16") or encoding.startswith("utf-32"):
        with open(path, encoding=encoding) as f:  # wide encodings: a line is not a run of bytes up to b"\n"
            try:
                yield from enumerate(f, start=1)
            except UnicodeDecodeError as e:
                raise decode_error(path, encoding, e) from None
        return
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if b"\x00" in raw:
                raise _not_text(f"{path}:{lineno}")
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                if _binary(path):
                    raise _not_text(f"{path}:{lineno}") from None
                raise decode_error(path, _shown(encoding), e, f"{path}:{lineno}:{e.start + 1}") from None
            yield lineno, line.removeprefix("\ufeff") if lineno == 1 else line


@register("jsonl", ".jsonl", ".ndjson", options={"encoding": _ENCODING})
def read_jsonl(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    for lineno, line in _lines(path, _encoding(path, options)):
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


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _line_of(text: str, needle_index: int) -> int:
    return text.count("\n", 0, needle_index) + 1


@register("json", ".json", options={"field": "name of the key that holds the list of records", "encoding": _ENCODING})
def read_json(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    data, encoding = path.read_bytes(), _encoding(path, options)
    if NUL in data and not encoding.startswith(("utf-16", "utf-32")):
        raise _not_text(f"{path}:{_line_at(data, data.index(NUL))}")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        encoding = _shown(encoding)
        raise decode_error(path, encoding, e, f"{path}:{_line_at(data, e.start)}") from None
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
