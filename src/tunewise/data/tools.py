"""Tool-calling data (#25): calls and tool results read from the forms people write them in, the conversation's
order checked against the record's tools, and the counts stats.json reports.

Records keep templates/tools.py's form (OpenAI's): `tools` beside `messages`, an assistant turn's calls in
`tool_calls` (arguments as an object; content may be ""), each result a `{"role": "tool", "content": str}` turn
(its `name` and `tool_call_id` kept when the data gives them). They come from:

- OpenAI's messages form: `tool_calls` (arguments as a JSON string or an object; several = parallel calls),
  `tool` turns, a top-level `tools` list; the legacy `function_call` field and `function` role too.
- LLaMA-Factory's sharegpt form: a `function_call` turn holding JSON of one call {"name", "arguments"} or of a
  list of calls, an `observation` turn holding the result, `tools` as a JSON string. LLaMA-Factory alternates
  strictly, so the results of parallel calls share one observation turn; when it holds a JSON list with one item
  per call, it becomes one tool turn per call, as the same conversation written in OpenAI's form has, so both
  forms render and train alike.

Everything here raises templates/tools.py's ToolError(field, reason); `formats.convert` turns it into a
RecordError, so a bad record is dropped (or refused in strict mode) with its file, line and reason like any other.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tunewise.templates.tools import ToolError, call_name_args, has_tool_content, normalize_call, tool_names
from tunewise.templates.tools import json_field as _json  # the same "not valid JSON" message as the core's

CALL = "function_call"  # the role, while reading, of LLaMA-Factory's turn that holds calls: it becomes an assistant turn


def has_calls(turn: dict) -> bool:
    """An OpenAI-style turn that carries calls (`tool_calls`, or the legacy `function_call`)."""
    return bool(turn.get("tool_calls")) or bool(turn.get("function_call"))


def openai_calls(turn: dict, at: str) -> list[dict]:
    """An assistant turn's calls: `tool_calls` (a list, or a JSON string of one, as table exports write it), or
    the legacy `function_call` {"name", "arguments"}."""
    raw = turn.get("tool_calls")
    if not raw:
        return [normalize_call(turn["function_call"], f"{at}.function_call")]
    raw = _json(raw, f"{at}.tool_calls", "tool_calls")
    if not isinstance(raw, list):
        raise ToolError(f"{at}.tool_calls", f"must be a list of calls, got {type(raw).__name__}")
    return [normalize_call(c, f"{at}.tool_calls[{i}]") for i, c in enumerate(raw)]


def call_turn(value: Any, at: str) -> dict:
    """A sharegpt function_call turn: JSON of one call or of a list of calls -> an assistant turn with its calls."""
    value = _json(value, at, "a function_call turn")
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ToolError(at, "a function_call turn holds no call (an empty list)")
    calls = [normalize_call(c, f"{at}[{i}]" if isinstance(value, list) else at) for i, c in enumerate(items)]
    return {"role": "assistant", "content": "", "tool_calls": calls}


def json_result(value: Any) -> str | None:
    """A tool result given as an object or a list (not OpenAI text parts) as JSON text, how results reach a model,
    rather than refused as content that is not text; None for text, left to the caller's text rules."""
    parts = isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value)
    if isinstance(value, dict) or (isinstance(value, list) and not parts):
        return json.dumps(value, ensure_ascii=False)
    return None


def result_turn(turn: dict, content: str) -> dict:
    out = {"role": "tool", "content": content}
    for key in ("name", "tool_call_id"):
        if isinstance(turn.get(key), str) and turn[key]:
            out[key] = turn[key]
    return out


def split_parallel_results(msgs: list[dict]) -> list[dict]:
    """LLaMA-Factory's one observation turn answering N parallel calls, when it holds a JSON list of N results,
    as N tool turns (see the module docstring). Anything else is left as it is."""
    out: list[dict] = []
    for i, m in enumerate(msgs):
        prev = out[-1] if out else None
        n = len(prev.get("tool_calls") or ()) if prev and prev["role"] == "assistant" else 0
        alone = i + 1 == len(msgs) or msgs[i + 1]["role"] != "tool"
        if m["role"] == "tool" and n > 1 and alone and m["content"].lstrip().startswith("["):
            try:
                items = json.loads(m["content"])
            except json.JSONDecodeError:
                items = None
            if isinstance(items, list) and len(items) == n:
                out += [{"role": "tool", "content": x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)}
                        for x in items]
                continue
        out.append(m)
    return out


def check_turns(body: list[dict], field: str, tools: list[dict], tools_field: str) -> None:
    """The order of a conversation with tools (after its optional system turn): the user opens; an assistant turn
    with calls is followed by one or more tool results (at most one per call), then by the assistant again (an
    answer or more calls); a result answers the calls just before it; the conversation ends with the assistant
    (an answer, or calls). Every call names one of `tools`."""
    names = tool_names(tools)
    calls: list[dict] = []  # the calls the current results answer
    results = 0
    prev = None  # "user", "assistant", "calls" or "tool"
    for i, m in enumerate(body, 1):
        role = m["role"]
        if role == "tool":
            if prev not in ("calls", "tool"):
                raise ToolError(field, f"turn {i} is a tool result with no call before it (a 'tool' turn must follow "
                                "an assistant turn with tool_calls, or another tool result)")
            results += 1
            if results > len(calls):
                raise ToolError(field, f"turn {i} is a tool result with no call before it: the assistant made "
                                f"{len(calls)} call(s) and this is result {results}")
            _check_answers(m, calls, field, i)
        elif prev == "calls":
            raise ToolError(field, f"turn {i} is '{role}', but the assistant's call(s) before it need their results "
                            "first: give each result as a 'tool' turn (sharegpt: 'observation') after the call")
        else:
            want = "user" if prev in (None, "assistant") else "assistant"
            if role != want:
                why = ("after tool results the assistant answers or calls again" if prev == "tool" else
                       "a conversation opens with the user" if prev is None else "user and assistant must alternate")
                raise ToolError(field, f"turn {i} is '{role}' but '{want}' was expected ({why})")
            if role == "assistant" and m.get("tool_calls"):
                calls, results = m["tool_calls"], 0
                _check_names(calls, names, field, tools_field, i)
                role = "calls"
        prev = role
    if prev not in ("assistant", "calls"):
        raise ToolError(field, "the conversation must end with an assistant answer (or an assistant's calls)")


def _check_names(calls: list[dict], names: list[str], field: str, tools_field: str, turn: int) -> None:
    for c in calls:
        name = call_name_args(c)[0]
        if not names:
            raise ToolError(tools_field, f"turn {turn} calls '{name}', but the record describes no tools: give the "
                            f"functions it may call in a '{tools_field}' list (name your column with columns: "
                            "{tools: ...})")
        if name not in names:
            raise ToolError(field, f"turn {turn} calls '{name}', which is not one of the record's tools "
                            f"({', '.join(names)})")


def _check_answers(result: dict, calls: list[dict], field: str, turn: int) -> None:
    """A result that names its call (by id or function name) must name one of the calls it follows."""
    ids = [c["id"] for c in calls if c.get("id")]
    if result.get("tool_call_id") and ids and result["tool_call_id"] not in ids:
        raise ToolError(field, f"turn {turn} answers the call id '{result['tool_call_id']}', but the calls before it "
                        f"have the ids {', '.join(ids)}")
    called = [call_name_args(c)[0] for c in calls]
    if result.get("name") and result["name"] not in called:
        raise ToolError(field, f"turn {turn} is the result of '{result['name']}', but the calls before it are to "
                        f"{', '.join(dict.fromkeys(called))}")


def refuse_in_preference(msgs: list[dict], tools: list[dict], field: str) -> None:
    """Preference pairs and KTO examples are scored on one text answer; with tools they are not supported yet."""
    if tools or has_tool_content(msgs):
        raise ToolError(field, "preference data (a pair or a KTO label) with tools or function calls is not "
                        "supported yet: train such records with train.stage: sft, or leave their tools out")


def canonical(value: Any) -> str:
    """`value` as compact JSON with sorted keys: one text for equal calls and schemas, for the duplicate keys."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def calls_text(turn: dict) -> list[str]:
    """An assistant turn's calls as `name({arguments})` lines: what duplicate keys and length measures read."""
    out = []
    for c in turn.get("tool_calls") or ():
        name, args = call_name_args(c)
        out.append(f"{name}({canonical(args)})")
    return out


# ------------------------------------------------------------------------------------------- counts
def counts_of(rec: dict) -> tuple[int, int, int]:
    """(has tools, calls, assistant turns with parallel calls) of one record, as the spill file keeps them."""
    calls = [len(m.get("tool_calls") or ()) for m in rec.get("messages") or ()]
    return int(bool(rec.get("tools"))), sum(calls), sum(1 for n in calls if n > 1)


def counts(has_tools: np.ndarray, calls: np.ndarray, parallel: np.ndarray, train: np.ndarray,
           val: np.ndarray) -> dict | None:
    """stats.json's `tools`: per split, the records with tools, their calls, the assistant turns with parallel
    calls and the records with tools but no call (they teach answering without one). None without tools."""
    def per(values: np.ndarray) -> dict:
        return {split: int(values[idx].sum()) if len(idx) else 0 for split, idx in (("train", train), ("val", val))}

    out = {"records_with_tools": per(has_tools), "tool_calls": per(calls), "parallel_call_turns": per(parallel),
           "tools_but_no_call": per((has_tools > 0) & (calls == 0))}
    return out if any(out["records_with_tools"].values()) or any(out["tool_calls"].values()) else None
