"""Record formats: turn a raw row (dict from any reader) into a normalised record.

Formats register themselves with `@register(name)`. Each takes (row, columns, tags) and returns
`{"messages": [...]}` or `{"text": ...}`, raising `RecordError(field, reason)` for unusable rows.
Column and tag names follow LLaMA-Factory's dataset_info.json, so its users' data works unchanged.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from tunewise.errors import DataError

ROLES = {"system", "user", "assistant"}


class RecordError(Exception):
    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"field '{field}': {reason}")


Format = Callable[[dict, dict, dict], dict]
_FORMATS: dict[str, Format] = {}


def register(name: str):
    def deco(fn: Format) -> Format:
        _FORMATS[name] = fn
        return fn

    return deco


def get(name: str) -> Format:
    if name not in _FORMATS:
        raise DataError(f"unknown format '{name}'", fix=f"use one of: auto, {', '.join(sorted(_FORMATS))}")
    return _FORMATS[name]


def names() -> list[str]:
    return sorted(_FORMATS)


# Column names tried, in order, for each alpaca field when `columns:` does not name one. The first are
# LLaMA-Factory's; the rest are what spreadsheets, SQL tables and HTML selectors usually call them.
_ALPACA_DEFAULTS = {
    "prompt": ("instruction", "prompt", "question", "问题"),
    "query": ("input",),
    "response": ("output", "response", "answer", "答案", "回答"),
    "system": ("system",),
    "history": ("history",),
}


@lru_cache(maxsize=256)
def _alpaca_columns_for(keys: frozenset, columns: tuple) -> dict:
    cols = dict(columns)
    return {f: cols.get(f) or next((c for c in cands if c in keys), cands[0]) for f, cands in _ALPACA_DEFAULTS.items()}


def _alpaca_columns(row: dict, columns: dict) -> dict:
    # Cached per (row keys, mapping): a million-row CSV has one key set, so this is computed once.
    return _alpaca_columns_for(frozenset(row), tuple(sorted(columns.items())))


def detect(row: dict, columns: dict) -> str:
    """Guess the format from a row's keys (and the column mapping, if any)."""
    keys = set(row)
    mapped = {columns.get(k, k) for k in ("prompt", "response", "messages", "text")}
    if columns.get("messages") in keys or "conversations" in keys or "messages" in keys:
        col = columns.get("messages") or ("messages" if "messages" in keys else "conversations")
        turns = row.get(col)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict) and "from" in turns[0]:
            return "sharegpt"
        return "messages"
    if {"instruction", "output"} & keys or (columns.get("prompt") in keys and columns.get("response") in keys):
        return "alpaca"
    c = _alpaca_columns(row, columns)
    if c["prompt"] in keys and c["response"] in keys:
        return "alpaca"
    if (columns.get("text") or columns.get("prompt") or "text") in keys and len(mapped & keys) <= 1:
        return "text"
    raise DataError(
        f"cannot tell the record format from its fields {sorted(keys)}",
        fix="set `format:` (alpaca, sharegpt, messages, text) and `columns:` on the dataset, "
        "e.g. columns: {prompt: question, response: answer}",
    )


def _str(row: dict, col: str, field: str, required: bool) -> str:
    if col not in row and required:
        has = ", ".join(map(str, list(row)[:12])) + (", ..." if len(row) > 12 else "")
        raise RecordError(col, f"missing (needed as {field}; this row has: {has})")
    v = row.get(col)
    if v is None or (isinstance(v, float) and v != v):  # SQL NULL, pandas NaN: empty, left to the cleaning's `empty` step
        return ""
    if not isinstance(v, (str, int, float)):
        raise RecordError(col, f"expected text, got {type(v).__name__}")
    return str(v)


def text_content(value: Any, field: str) -> str:
    """A turn's content as text: a string (numbers as written), or OpenAI-style text parts. Anything else (an
    object, an image part) is an error: trained as its Python repr it would teach the model to write dicts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        out = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                out.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RecordError(f"{field}[{i}]", f"content part of type '{kind}' is not text (only text can be trained)")
        return "".join(out)
    raise RecordError(field, f"content must be text, got {'an object' if isinstance(value, dict) else type(value).__name__}"
                      f" ({str(value)[:60]})")


def check_messages(msgs: list[dict], *, where_field: str = "messages") -> list[dict]:
    """Validate roles and order: optional system first, then user/assistant alternating, ending with assistant."""
    if not msgs:
        raise RecordError(where_field, "no turns")
    body = msgs[1:] if msgs[0]["role"] == "system" else msgs
    for i, m in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise RecordError(where_field, f"turn {i + 1} is '{m['role']}' but '{want}' was expected (user and assistant must alternate)")
    if not body or body[-1]["role"] != "assistant":
        raise RecordError(where_field, "the conversation must end with an assistant answer")
    return msgs


@register("alpaca")
def alpaca(row: dict, columns: dict, tags: dict) -> dict:
    c = _alpaca_columns(row, columns)
    prompt = _str(row, c["prompt"], "prompt", required=True)
    query = _str(row, c["query"], "query", required=False)
    response = _str(row, c["response"], "response", required=True)
    user = f"{prompt}\n{query}" if query else prompt
    msgs: list[dict] = []
    system = _str(row, c["system"], "system", required=False)
    if system:
        msgs.append({"role": "system", "content": system})
    hist = row.get(c["history"]) or []
    if not isinstance(hist, list):
        raise RecordError(c["history"], "history must be a list of [question, answer] pairs")
    for i, pair in enumerate(hist):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise RecordError(c["history"], "each history item must be a [question, answer] pair")
        msgs += [{"role": "user", "content": text_content(pair[0], f"{c['history']}[{i}][0]")},
                 {"role": "assistant", "content": text_content(pair[1], f"{c['history']}[{i}][1]")}]
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    return {"messages": check_messages(msgs)}


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                   "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system"}


@register("sharegpt")
def sharegpt(row: dict, columns: dict, tags: dict) -> dict:
    col = columns.get("messages", "conversations")
    role_tag, content_tag = tags.get("role_tag", "from"), tags.get("content_tag", "value")
    mapping = dict(_SHAREGPT_ROLES)
    for ours, key in (("user", "user_tag"), ("assistant", "assistant_tag"), ("system", "system_tag")):
        if key in tags:
            mapping[tags[key]] = ours
    turns = row.get(col)
    if not isinstance(turns, list):
        raise RecordError(col, "missing or not a list of turns")
    msgs = []
    system = _str(row, columns.get("system", "system"), "system", required=False)
    if system:
        msgs.append({"role": "system", "content": system})
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or role_tag not in t or content_tag not in t:
            raise RecordError(f"{col}[{i}]", f"each turn needs '{role_tag}' and '{content_tag}'")
        role = mapping.get(str(t[role_tag]).lower(), mapping.get(t[role_tag]))
        if role is None:
            raise RecordError(f"{col}[{i}].{role_tag}", f"unknown role '{t[role_tag]}'; map it with tags: {{user_tag: ..., assistant_tag: ...}}")
        msgs.append({"role": role, "content": text_content(t[content_tag], f"{col}[{i}].{content_tag}")})
    return {"messages": check_messages(msgs, where_field=col)}


@register("messages")
def messages(row: dict, columns: dict, tags: dict) -> dict:
    col = columns.get("messages") or ("messages" if "messages" in row else "conversations")
    role_tag, content_tag = tags.get("role_tag", "role"), tags.get("content_tag", "content")
    turns = row.get(col)
    if not isinstance(turns, list):
        raise RecordError(col, "missing or not a list of {role, content} turns")
    msgs = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or role_tag not in t or content_tag not in t:
            raise RecordError(f"{col}[{i}]", f"each turn needs '{role_tag}' and '{content_tag}'")
        role = str(t[role_tag]).lower()
        role = {"human": "user", "gpt": "assistant", "model": "assistant"}.get(role, role)
        if role not in ROLES:
            raise RecordError(f"{col}[{i}].{role_tag}", f"role must be one of system, user, assistant (got '{t[role_tag]}')")
        msgs.append({"role": role, "content": text_content(t[content_tag], f"{col}[{i}].{content_tag}")})
    return {"messages": check_messages(msgs, where_field=col)}


@register("text")
def text(row: dict, columns: dict, tags: dict) -> dict:
    col = columns.get("text") or columns.get("prompt") or "text"
    return {"text": _str(row, col, "text", required=True)}


# Fields a record is made of: the column `columns:` names for one of them must exist (the others, such as
# query, system or history, are optional parts of a record).
_REQUIRED = {"prompt", "response", "messages", "text"}


def check_columns(row: dict, columns: dict) -> None:
    """Every column that `columns:` names for a required field must be a field of the data (checked on the
    first record): a misspelt one would otherwise change the format detected, or train on the wrong text."""
    for field, col in columns.items():
        if field in _REQUIRED and col not in row:
            has = ", ".join(map(str, list(row)[:12])) + (", ..." if len(row) > 12 else "")
            raise DataError(f"columns.{field} names the column '{col}', which this data does not have (its fields: {has})",
                            fix=f"set columns.{field} to one of the fields above, or remove it to use the default")


def convert(row: dict[str, Any], fmt: str, columns: dict, tags: dict) -> dict:
    return get(fmt)(row, columns, tags)
