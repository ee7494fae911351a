"""Record formats: turn a raw row (dict from any reader) into a normalised record.

Formats register themselves with `@register(name)`. Each takes (row, columns, tags) and returns
`{"messages": [...]}` or `{"text": ...}`, raising `RecordError(field, reason)` for unusable rows.
Column and tag names follow LLaMA-Factory's dataset_info.json, so its users' data works unchanged.

Preference data comes in the same formats. A row with `chosen` and `rejected` answers is a pair:
`{"messages": [prompt turns..., {"role": "assistant", "content": CHOSEN}], "rejected": REJECTED}`, so the
chosen conversation is an ordinary record and `rejected` the other answer to its last turn. A row with a
boolean `label` (LLaMA-Factory's `kto_tag` column) is a KTO example: `{"messages": [...], "label": true}`.
The answers may be text (alpaca, TRL's standard form), one turn (LLaMA-Factory's sharegpt ranking form) or a
list of turns (TRL's conversational form; with no separate prompt, both lists hold the whole conversation and
must share everything before the answer).

Tool calling (#25): a record with tools is `{"messages": [...], "tools": [...]}` in templates/tools.py's form,
read from OpenAI's messages form or LLaMA-Factory's sharegpt form (function_call / observation turns, a `tools`
column); `tunewise.data.tools` reads the calls and checks the order. Records without tools are read as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from tunewise.data import tools as tooldata
from tunewise.errors import DataError
from tunewise.templates.tools import ToolError, has_tool_content, normalize_tools

ROLES = {"system", "user", "assistant", "tool"}


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
    "response": ("output", "response", "answer", "答案", "回答", "completion"),  # completion: TRL's prompt-completion
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


def _pair_columns(columns: dict) -> tuple[str, str]:
    return columns.get("chosen", "chosen"), columns.get("rejected", "rejected")


def is_pair_row(row: dict, columns: dict) -> bool:
    return any(c in row for c in _pair_columns(columns))


def _turn_style(value: Any) -> str | None:
    """'sharegpt' or 'messages' when `value` is a turn or a list of turns (told by its role key), else None."""
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, dict):
        return "sharegpt" if "from" in first else "messages" if "role" in first else None
    return None


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
    # Preference rows without a conversation column (TRL: prompt + chosen/rejected, prompt + completion + label):
    # turns in any of them make it a conversation format, text makes it alpaca.
    chosen, rejected = _pair_columns(columns)
    answers = (columns.get("prompt", "prompt"), chosen, rejected, columns.get("response", "completion"))
    style = next((st for c in answers if c in keys and (st := _turn_style(row[c]))), None)
    if style:
        return style
    if chosen in keys or rejected in keys:
        return "alpaca"
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


def check_messages(msgs: list[dict], *, where_field: str = "messages", tools: list[dict] | None = None,
                   tools_field: str = "tools") -> list[dict]:
    """Validate roles and order: optional system first, then user/assistant alternating, ending with assistant.
    With tools, or calls and results in the turns, `tunewise.data.tools.check_turns` checks the order instead."""
    if not msgs:
        raise RecordError(where_field, "no turns")
    body = msgs[1:] if msgs[0]["role"] == "system" else msgs
    if tools or has_tool_content(body):
        tooldata.check_turns(body, where_field, tools or [], tools_field)
        return msgs
    for i, m in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if m["role"] != want:
            raise RecordError(where_field, f"turn {i + 1} is '{m['role']}' but '{want}' was expected (user and assistant must alternate)")
    if not body or body[-1]["role"] != "assistant":
        raise RecordError(where_field, "the conversation must end with an assistant answer")
    return msgs


@dataclass(frozen=True)
class _Turns:
    """How a format's turns are written: the role and content keys, and role names -> ours."""

    role_tag: str
    content_tag: str
    roles: dict
    unknown: str = "role must be one of system, user, assistant, tool (got '{role}')"

    def one(self, t: Any, at: str) -> dict:
        need = f"each turn needs '{self.role_tag}' and '{self.content_tag}'"
        if not isinstance(t, dict) or self.role_tag not in t:
            raise RecordError(at, need)
        raw = t[self.role_tag]
        role = self.roles.get(str(raw).lower(), self.roles.get(raw))
        if role is None:
            raise RecordError(f"{at}.{self.role_tag}", self.unknown.format(role=raw))
        calls = role == "assistant" and tooldata.has_calls(t)  # OpenAI: content may be missing beside calls
        if self.content_tag not in t and not calls:
            raise RecordError(at, need)
        value, where = t.get(self.content_tag), f"{at}.{self.content_tag}"
        if role == tooldata.CALL:
            return tooldata.call_turn(value, where)
        if role == "tool":
            as_json = tooldata.json_result(value)
            return tooldata.result_turn(t, text_content(value, where) if as_json is None else as_json)
        out = {"role": role, "content": text_content(value, where)}
        if calls:
            out["tool_calls"] = tooldata.openai_calls(t, at)
        return out

    def many(self, turns: Any, col: str, missing: str) -> list[dict]:
        if not isinstance(turns, list):
            raise RecordError(col, missing)
        return [self.one(t, f"{col}[{i}]") for i, t in enumerate(turns)]


def _tagged(roles: dict, tags: dict) -> dict:
    out = dict(roles)
    for ours, key in (("user", "user_tag"), ("assistant", "assistant_tag"), ("system", "system_tag"),
                      ("tool", "observation_tag"), (tooldata.CALL, "function_tag")):
        if key in tags:
            out[tags[key]] = ours
    return out


# Tool roles: LLaMA-Factory's function_call and observation (its default function_tag and observation_tag), OpenAI's
# tool and legacy function (a result).
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                   "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system",
                   "function_call": tooldata.CALL, "observation": "tool", "tool": "tool"}
_MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant",
                  "model": "assistant", "tool": "tool", "function": "tool", "function_call": tooldata.CALL,
                  "observation": "tool"}
_SHAREGPT_UNKNOWN = ("unknown role '{role}'; map it with tags: {{user_tag: ..., assistant_tag: ..., function_tag: ..., "
                     "observation_tag: ...}}")


def _sharegpt_turns(tags: dict) -> _Turns:
    return _Turns(tags.get("role_tag", "from"), tags.get("content_tag", "value"), _tagged(_SHAREGPT_ROLES, tags),
                  _SHAREGPT_UNKNOWN)


def _message_turns(tags: dict) -> _Turns:
    return _Turns(tags.get("role_tag", "role"), tags.get("content_tag", "content"), _tagged(_MESSAGE_ROLES, tags))


def _answer(value: Any, col: str, turns: _Turns) -> tuple[list[dict], dict]:
    """An answer given as text, as one turn, or as turns ending with it: (the turns before it, its turn)."""
    is_turns = isinstance(value, list) and value and isinstance(value[0], dict) and "type" not in value[0]
    if not (isinstance(value, dict) or is_turns):
        return [], {"role": "assistant", "content": text_content(value, col)}
    msgs = [turns.one(value, col)] if isinstance(value, dict) else turns.many(value, col, "")
    if msgs[-1]["role"] != "assistant":
        raise RecordError(col, f"ends with a '{msgs[-1]['role']}' turn, but an answer must be the assistant's")
    return msgs[:-1], msgs[-1]


def _as_bool(v: Any, lenient: bool) -> bool | None:
    if isinstance(v, bool):
        return v
    if lenient and isinstance(v, int) and v in (0, 1):  # SQLite and spreadsheets have no booleans
        return bool(v)
    words = ("true", "false", "1", "0") if lenient else ("true", "false")
    if isinstance(v, str) and v.strip().lower() in words:
        return v.strip().lower() in ("true", "1")
    return None


def _label(row: dict, columns: dict) -> bool | None:
    """A KTO example's label (true = desirable): the column `columns.kto_tag` names (LLaMA-Factory), else a
    `label` or `kto_tag` field holding true or false (TRL's unpaired form); None when the row has none."""
    col = columns.get("kto_tag")
    if col is None:
        col = next((c for c in ("label", "kto_tag") if c in row and _as_bool(row[c], False) is not None), None)
        return None if col is None else _as_bool(row[col], False)
    if col not in row:
        raise RecordError(col, "missing (needed as the KTO label: true for a desirable answer, false for an undesirable one)")
    label = _as_bool(row[col], True)
    if label is None:
        raise RecordError(col, f"a KTO label must be true (desirable) or false (undesirable), got {row[col]!r}")
    return label


def _tools(row: dict, columns: dict, default: str | None = "tools") -> tuple[list[dict], str]:
    """The row's tools (`columns.tools`, else the `default` column; alpaca has none unless named) and the column."""
    col = columns.get("tools", default)
    if col is None or col not in row:
        return [], col or "tools"
    return normalize_tools(row[col], col), col


def _single(msgs: list[dict], row: dict, columns: dict, where_field: str, tools: tuple = ([], "tools")) -> dict:
    label = _label(row, columns)
    if label is not None:
        tooldata.refuse_in_preference(msgs, tools[0], columns.get("kto_tag", where_field))
    rec: dict = {"messages": check_messages(msgs, where_field=where_field, tools=tools[0], tools_field=tools[1])}
    if tools[0]:
        rec["tools"] = tools[0]
    if label is not None:
        rec["label"] = label
    return rec


def _pair(prompt: list[dict], row: dict, columns: dict, turns: _Turns, prompt_col: str) -> dict:
    """The pair record: the prompt turns, the chosen answer as the last assistant turn, the rejected one's text."""
    chosen_col, rejected_col = _pair_columns(columns)
    for col in (chosen_col, rejected_col):
        if col not in row:
            raise RecordError(col, f"missing: a preference pair needs both '{chosen_col}' and '{rejected_col}'")
    if columns.get("kto_tag"):
        raise RecordError(columns["kto_tag"], "a record is either a pair (chosen and rejected answers) or one answer "
                          "with a KTO label, not both")
    before_c, chosen = _answer(row[chosen_col], chosen_col, turns)
    before_r, rejected = _answer(row[rejected_col], rejected_col, turns)
    tooldata.refuse_in_preference(prompt + before_c + before_r + [chosen, rejected], _tools(row, columns)[0], chosen_col)
    chosen, rejected = chosen["content"], rejected["content"]
    if before_c != before_r:  # two whole conversations (TRL's implicit prompt) that do not share their prompt
        at = next((i for i, (x, y) in enumerate(zip(before_c, before_r)) if x != y), min(len(before_c), len(before_r)))
        raise RecordError(rejected_col, f"its conversation differs from the chosen one's at turn {at + 1}, before the "
                          "answer: both answers of a pair must reply to the same prompt")
    msgs = prompt + before_c
    if not msgs or msgs[-1]["role"] != "user":
        raise RecordError(prompt_col, "a pair's prompt must end with the user turn that both answers reply to")
    msgs.append({"role": "assistant", "content": chosen})
    return {"messages": check_messages(msgs, where_field=prompt_col), "rejected": rejected}


@register("alpaca")
def alpaca(row: dict, columns: dict, tags: dict) -> dict:
    c = _alpaca_columns(row, columns)
    prompt = _str(row, c["prompt"], "prompt", required=True)
    query = _str(row, c["query"], "query", required=False)
    pair = is_pair_row(row, columns)
    response = "" if pair else _str(row, c["response"], "response", required=True)
    user = f"{prompt}\n{query}" if query else prompt
    msgs: list[dict] = []
    system = _str(row, c["system"], "system", required=False)
    if system:
        msgs.append({"role": "system", "content": system})
    hist = row.get(c["history"]) or []
    if not isinstance(hist, list):
        raise RecordError(c["history"], "history must be a list of [question, answer] pairs")
    for i, pair_ in enumerate(hist):
        if not (isinstance(pair_, (list, tuple)) and len(pair_) == 2):
            raise RecordError(c["history"], "each history item must be a [question, answer] pair")
        msgs += [{"role": "user", "content": text_content(pair_[0], f"{c['history']}[{i}][0]")},
                 {"role": "assistant", "content": text_content(pair_[1], f"{c['history']}[{i}][1]")}]
    msgs.append({"role": "user", "content": user})
    if pair:
        style = _turn_style(row.get(_pair_columns(columns)[0]))
        return _pair(msgs, row, columns, _sharegpt_turns({}) if style == "sharegpt" else _message_turns({}), c["prompt"])
    answer = {"role": "assistant", "content": response}
    return _single(msgs + [answer], row, columns, "messages", _tools(row, columns, None))


@register("sharegpt")
def sharegpt(row: dict, columns: dict, tags: dict) -> dict:
    col = columns.get("messages", "conversations")
    turns = _sharegpt_turns(tags)
    pair = is_pair_row(row, columns)
    msgs = []
    system = _str(row, columns.get("system", "system"), "system", required=False)
    if system:
        msgs.append({"role": "system", "content": system})
    if col in row or not pair:  # a pair may carry its prompt in the answers' conversations instead
        msgs += tooldata.split_parallel_results(turns.many(row.get(col), col, "missing or not a list of turns"))
    if pair:
        return _pair(msgs, row, columns, turns, col)
    return _single(msgs, row, columns, col, _tools(row, columns))


@register("messages")
def messages(row: dict, columns: dict, tags: dict) -> dict:
    col = columns.get("messages") or ("messages" if "messages" in row else "conversations")
    prompt_col = columns.get("prompt", "prompt")
    turns = _message_turns(tags)
    pair = is_pair_row(row, columns)
    msgs: list[dict] = []
    if col in row or not (pair or prompt_col in row):
        msgs = turns.many(row.get(col), col, "missing or not a list of {role, content} turns")
    elif prompt_col in row:  # TRL: the prompt as text or turns, the answers in chosen/rejected or completion
        v = row[prompt_col]
        msgs = turns.many(v, prompt_col, "") if isinstance(v, list) else [{"role": "user", "content": text_content(v, prompt_col)}]
        col = prompt_col
    if pair:
        return _pair(msgs, row, columns, turns, col)
    completion_col = columns.get("response", "completion")
    if col == prompt_col and completion_col in row:
        before, answer = _answer(row[completion_col], completion_col, turns)
        msgs = msgs + before + [answer]
    return _single(msgs, row, columns, col, _tools(row, columns))


@register("text")
def text(row: dict, columns: dict, tags: dict) -> dict:
    col = columns.get("text") or columns.get("prompt") or "text"
    return {"text": _str(row, col, "text", required=True)}


# Fields a record is made of: the column `columns:` names for one of them must exist (the others, such as
# query, system or history, are optional parts of a record).
_REQUIRED = {"prompt", "response", "messages", "text", "chosen", "rejected", "kto_tag"}


def check_columns(row: dict, columns: dict) -> None:
    """Every column that `columns:` names for a required field must be a field of the data (checked on the
    first record): a misspelt one would otherwise change the format detected, or train on the wrong text."""
    for field, col in columns.items():
        if field in _REQUIRED and col not in row:
            has = ", ".join(map(str, list(row)[:12])) + (", ..." if len(row) > 12 else "")
            raise DataError(f"columns.{field} names the column '{col}', which this data does not have (its fields: {has})",
                            fix=f"set columns.{field} to one of the fields above, or remove it to use the default")


def convert(row: dict[str, Any], fmt: str, columns: dict, tags: dict) -> dict:
    try:
        return get(fmt)(row, columns, tags)
    except ToolError as e:  # unusable tool data is a bad record like any other: dropped with its file and line
        raise RecordError(e.field, e.reason) from None
