"""Tool calling: the one form tunewise keeps tools and calls in, how a template renders them, and how a model's
answer is parsed back into calls (the same parser for chat, eval, the generation check and export verification).

A record with tools (data/formats.py writes it) keeps them in OpenAI's form, which is also what transformers'
`apply_chat_template(messages, tools=...)` takes:

    {"messages": [{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": "", "tool_calls": [
                      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                  {"role": "tool", "name": "get_weather", "content": "{\"temp_c\": 18}"},
                  {"role": "assistant", "content": "It is 18 °C in Paris."}],
     "tools": [{"type": "function", "function": {"name": "get_weather", "description": "...", "parameters": {...}}}]}

Two ways to render it (`ChatTemplate.tools`, recorded in template.json):

- `native`: the tokenizer's own chat template reads `tools` (Qwen2.5, Llama 3.1, ...): rendered by it, exactly as
  apply_chat_template(messages, tools=...) renders.
- `hermes`: every other template (registry templates, templates without tools). The conversation is rewritten into
  plain turns before the template renders it, in the Hermes / Qwen2.5 form: the tools block at the end of the system
  prompt, each call as `<tool_call>\\n{"name": NAME, "arguments": ARGS}\\n</tool_call>` in the assistant's turn, each
  tool result as a user turn `<tool_response>\\nRESULT\\n</tool_response>`. JSON is written the way Ollama writes it
  into a TEMPLATE (Go's encoding/json: compact, HTML characters escaped, object keys sorted, a tool's schema reduced
  to the fields Ollama keeps, in its order), so the exported Modelfile reproduces the training text exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

NATIVE, HERMES = "native", "hermes"
FORMATS = (NATIVE, HERMES)

# OpenAI's rule for function names (letters, digits, underscores, dashes; up to 64), plus dots (LLaMA-Factory data
# uses module-style names). A name is written into JSON between quotes, so nothing else may appear in it.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


class ToolError(ValueError):
    """Unusable tool data: `field` names where in the record, `reason` what is wrong (data turns it into a
    RecordError with the file and line)."""

    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"field '{field}': {reason}")


# ------------------------------------------------------------------------------------------- normalising
def json_field(value: Any, at: str, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise ToolError(at, f"{what} is not valid JSON ({e.msg} at character {e.pos}): {value[:80]!r}") from None
    return value


def check_name(name: Any, at: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ToolError(at, f"a function name must be letters, digits, '_', '-' or '.' (up to 64), got {name!r}")
    return name


def normalize_tool(raw: Any, at: str) -> dict:
    """One tool in OpenAI's form {"type": "function", "function": {name, description, parameters}}, from that form
    or from LLaMA-Factory's bare {name, description, parameters}. The schema is kept whole (native templates
    print it whole); the hermes rendering reduces it as Ollama does (`ollama_tool`)."""
    raw = json_field(raw, at, "a tool")
    if not isinstance(raw, dict):
        raise ToolError(at, f"a tool must be an object with a name, got {type(raw).__name__}")
    fn = raw["function"] if isinstance(raw.get("function"), dict) else raw
    if raw.get("type", "function") != "function":
        raise ToolError(f"{at}.type", f"only function tools can be trained, got type {raw.get('type')!r}")
    name = check_name(fn.get("name"), f"{at}.name")
    desc = fn.get("description") or ""
    if not isinstance(desc, str):
        raise ToolError(f"{at}.description", "must be text")
    params = json_field(fn.get("parameters") or {"type": "object", "properties": {}}, f"{at}.parameters", "parameters")
    if not isinstance(params, dict):
        raise ToolError(f"{at}.parameters", "must be a JSON schema object")
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}


def normalize_tools(value: Any, at: str) -> list[dict]:
    """A record's tools: a list (or a JSON string of one, LLaMA-Factory's `tools` column) of tools; None or an
    empty string is no tools. Names must be unique."""
    if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and value != value):
        return []
    value = json_field(value, at, "tools")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ToolError(at, f"tools must be a list of function descriptions, got {type(value).__name__}")
    tools = [normalize_tool(t, f"{at}[{i}]") for i, t in enumerate(value)]
    seen: set[str] = set()
    for i, t in enumerate(tools):
        name = t["function"]["name"]
        if name in seen:
            raise ToolError(f"{at}[{i}].name", f"the function '{name}' is described twice")
        seen.add(name)
    return tools


def normalize_call(raw: Any, at: str) -> dict:
    """One call in OpenAI's form with the arguments as an object: {"type": "function", "function": {"name",
    "arguments": {...}}} (an `id` is kept). Accepts OpenAI's form (arguments as a JSON string or an object) and
    LLaMA-Factory's {"name", "arguments"} (or "parameters")."""
    raw = json_field(raw, at, "a function call")
    if not isinstance(raw, dict):
        raise ToolError(at, f"a function call must be an object with a name and arguments, got {type(raw).__name__}")
    fn = raw["function"] if isinstance(raw.get("function"), dict) else raw
    name = check_name(fn.get("name"), f"{at}.name")
    key = "arguments" if "arguments" in fn else "parameters" if "parameters" in fn else None
    args = json_field(fn[key], f"{at}.{key}", f"'{key}'") if key else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ToolError(f"{at}.{key}", f"the arguments must be a JSON object, got {type(args).__name__}")
    out: dict = {"type": "function", "function": {"name": name, "arguments": args}}
    if isinstance(raw.get("id"), str):
        out["id"] = raw["id"]
    return out


def call_name_args(call: dict) -> tuple[str, dict]:
    fn = call.get("function", call)
    return fn["name"], fn.get("arguments") or {}


def tool_names(tools: list[dict]) -> list[str]:
    return [t["function"]["name"] for t in tools]


# ------------------------------------------------------------------------------------------- Go's JSON
def _go_numbers(v: Any) -> Any:
    """Numbers as Go writes a float64: an integral value without a decimal point (1.0 -> 1)."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return int(v)
    if isinstance(v, dict):
        return {k: _go_numbers(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_go_numbers(x) for x in v]
    return v


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE = re.compile("[<>&\u2028\u2029]")


def go_json(value: Any, *, sort_keys: bool = True) -> str:
    """`value` as Go's json.Marshal writes it (what Ollama prints into a template): compact, UTF-8, <, > and &
    escaped, map keys sorted (sort_keys=False keeps the order for Go structs and Ollama's ordered maps)."""
    text = json.dumps(_go_numbers(value), ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    return _GO_ESCAPE_RE.sub(lambda m: _GO_ESCAPES[m.group(0)], text)


def _ollama_property(p: Any) -> dict:
    """A parameter's schema as Ollama's api.ToolProperty keeps it (anyOf, type, items, description, enum,
    properties, required; in that order; empty ones left out; other keys dropped)."""
    if not isinstance(p, dict):
        return {}
    out: dict = {}
    if p.get("anyOf"):
        out["anyOf"] = [_ollama_property(x) for x in p["anyOf"]]
    t = p.get("type")
    if t:
        out["type"] = t[0] if isinstance(t, list) and len(t) == 1 else t
    if p.get("items") is not None:
        out["items"] = _sorted(p["items"])
    if p.get("description"):
        out["description"] = p["description"]
    if p.get("enum"):
        out["enum"] = _sorted(p["enum"])
    if isinstance(p.get("properties"), dict):
        out["properties"] = {k: _ollama_property(v) for k, v in p["properties"].items()}  # an ordered map in Ollama
    if p.get("required"):
        out["required"] = p["required"]
    return out


def _sorted(v: Any) -> Any:
    """A value of Go type `any`: maps are written with sorted keys."""
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


def ollama_tool(tool: dict) -> dict:
    """The tool as Ollama hands it to a TEMPLATE (template.go templateTool): type, function {name, description,
    parameters {type, $defs, items, required, properties (sorted by name)}}; fields Ollama does not know (a
    parameter's `default`, `format`, `minimum`, ...) are not there, so training does not show them either."""
    fn = tool["function"]
    params = fn.get("parameters") or {}
    p: dict = {"type": params.get("type") or ""}
    if params.get("$defs") is not None:
        p["$defs"] = _sorted(params["$defs"])
    if params.get("items") is not None:
        p["items"] = _sorted(params["items"])
    if params.get("required"):
        p["required"] = params["required"]
    props = params.get("properties")
    p["properties"] = None if props is None else {k: _ollama_property(props[k]) for k in sorted(props)}
    return {"type": tool.get("type", "function"),
            "function": {"name": fn["name"], "description": fn.get("description") or "", "parameters": p}}


# ------------------------------------------------------------------------------------------- hermes rendering
TOOLS_HEAD = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
              "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_TAIL = ("\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
              "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
              "<args-json-object>}\n</tool_call>")
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESPONSE_OPEN, RESPONSE_CLOSE = "<tool_response>", "</tool_response>"


def tools_block(tools: list[dict]) -> str:
    return TOOLS_HEAD + "".join("\n" + go_json(ollama_tool(t), sort_keys=False) for t in tools) + TOOLS_TAIL


def call_text(call: dict) -> str:
    name, args = call_name_args(call)
    return f'{CALL_OPEN}\n{{"name": "{name}", "arguments": {go_json(args)}}}\n{CALL_CLOSE}'


def assistant_text(message: dict) -> str:
    """An assistant turn's text in the hermes form: its content, then each call on its own lines."""
    calls = [call_text(c) for c in message.get("tool_calls") or []]
    content = message.get("content") or ""
    return "\n".join(([content] if content else []) + calls)


def has_tool_content(messages: list[dict]) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def to_hermes(messages: list[dict], tools: list[dict] | None, default_system: str | None = None) -> list[dict]:
    """Plain system/user/assistant turns that say what `messages` and `tools` say, in the hermes form. One turn
    out for each turn in (a system turn is added first when there are tools and none), so positions map."""
    out: list[dict] = []
    if tools and (not messages or messages[0]["role"] != "system"):
        out.append({"role": "system", "content": (default_system + "\n\n" if default_system else "") + tools_block(tools)})
    for i, m in enumerate(messages):
        if m["role"] == "system" and i == 0 and tools:
            out.append({"role": "system", "content": (m["content"] + "\n\n" if m["content"] else "") + tools_block(tools)})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": f"{RESPONSE_OPEN}\n{m.get('content') or ''}\n{RESPONSE_CLOSE}"})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            out.append({"role": "assistant", "content": assistant_text(m)})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def supports_tools(chat_template: str | None) -> bool:
    """Whether a tokenizer's Jinja chat template renders tools itself (it reads the `tools` variable and the calls
    of assistant turns)."""
    return bool(chat_template) and re.search(r"\btools\b", chat_template) is not None and "tool_call" in chat_template


# ------------------------------------------------------------------------------------------- parsing answers
@dataclass
class ParsedAnswer:
    """A model's answer read back: its calls ({"name", "arguments"}), the text outside them, and how many call
    blocks were there but did not parse (not JSON, no name, arguments not an object)."""

    calls: list[dict] = field(default_factory=list)
    content: str = ""
    invalid: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return len(self.calls) + self.invalid


_BLOCK = re.compile(re.escape(CALL_OPEN) + r"(.*?)(?:" + re.escape(CALL_CLOSE) + r"|$)", re.S)


def _read_call(text: str) -> dict:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("no function name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        args = json.loads(args)
    if not isinstance(args, dict):
        raise ValueError("arguments are not an object")
    return {"name": name, "arguments": args}


def parse_answer(text: str) -> ParsedAnswer:
    """Calls in a model's answer: each `<tool_call>...</tool_call>` block (the last may lack its closing tag when
    the answer was cut off) holding {"name", "arguments"}; without any block, an answer that is itself a JSON
    object with a name and arguments (the Llama 3.1 form) is one call."""
    out = ParsedAnswer()
    blocks = list(_BLOCK.finditer(text))
    if not blocks:
        stripped = text.strip()
        if stripped.startswith("{") and '"name"' in stripped:
            try:
                out.calls.append(_read_call(stripped))
                return out
            except (ValueError, json.JSONDecodeError):
                pass
        out.content = stripped
        return out
    for m in blocks:
        try:
            out.calls.append(_read_call(m.group(1).strip()))
        except (ValueError, json.JSONDecodeError) as e:
            out.invalid += 1
            out.errors.append(f"{m.group(1).strip()[:80]!r}: {e}")
    out.content = _BLOCK.sub("", text).strip()
    return out
