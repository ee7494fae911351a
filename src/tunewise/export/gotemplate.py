"""A small renderer for the subset of Go's text/template that Ollama chat templates use.

Ollama renders a Modelfile TEMPLATE with Go's text/template. To check, without Ollama, that the
TEMPLATE we write turns a conversation into exactly the text the model was trained on, we render it
here. Supported: text, `{{ .Field }}`, `{{ $.Field }}`, `{{ $var }}`, `{{ $v := ... }}`, `{{ $v = ... }}`,
`if / else if / else / end`, `range [$i, $m :=] ... / end` over lists, the functions eq, ne, and, or, not,
len, slice and json, string literals, parentheses and the `{{-` / `-}}` whitespace trims. Anything else is
an error, so a template that uses more than we can check is never silently "verified".

Tools (`ollama_values(messages, tools)`): the values are the Go types Ollama's Execute hands a template
(template.go: templateMessage, templateTool, templateToolCall, templateArgs), with what Go does when one is
printed (`{{ . }}` calls its String method: JSON for a tool and for a call's arguments) or passed to `json`
(json.Marshal: compact, HTML-escaped, struct fields in declaration order, map keys sorted). A value Go would
print in fmt's `{...}` / `map[...]` form, or a field the Go type lacks, is an error here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tunewise.templates.tools import go_json, normalize_call, ollama_tool

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(\()|(\))|("(?:[^"\\]|\\.)*")|(:=|=)|([^\s()]+))')


class GoTemplateError(ValueError):
    pass


@dataclass
class _Node:
    kind: str                     # text | expr | if | range | assign
    text: str = ""
    expr: list = field(default_factory=list)
    body: list = field(default_factory=list)
    orelse: list = field(default_factory=list)
    names: list = field(default_factory=list)  # range vars or assigned var
    declare: bool = False


def _lex(src: str) -> list[tuple[str, str]]:
    """Split into ("text", s) and ("action", s) pieces, applying the trim markers."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if out and out[-1][0] == "trim_next":
            out.pop()
            text = text.lstrip(" \t\r\n")
        if text:
            out.append(("text", text))
        out.append(("action", m.group(2)))
        if m.group(3):
            out.append(("trim_next", ""))
        pos = m.end()
    text = src[pos:]
    if out and out[-1][0] == "trim_next":
        out.pop()
        text = text.lstrip(" \t\r\n")
    if text:
        out.append(("text", text))
    return out


def _tokens(expr: str) -> list[str]:
    toks, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise GoTemplateError(f"cannot read {expr!r}")
        toks.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return toks


def parse(src: str) -> list[_Node]:
    pieces = _lex(src)
    pos = 0

    def block(stop: tuple[str, ...]) -> tuple[list[_Node], str]:
        nonlocal pos
        nodes: list[_Node] = []
        while pos < len(pieces):
            kind, s = pieces[pos]
            pos += 1
            if kind == "text":
                nodes.append(_Node("text", text=s))
                continue
            if s.startswith("/*"):
                continue
            word = s.split(None, 1)[0] if s else ""
            rest = s[len(word):].strip()
            if word in stop:
                return nodes, s
            if word == "if":
                nodes.append(_if(rest))
            elif word == "range":
                toks = _tokens(rest)
                names: list[str] = []
                if ":=" in toks:
                    i = toks.index(":=")
                    names = [t.rstrip(",") for t in toks[:i] if t != ","]
                    toks = toks[i + 1:]
                body, end = block(("end", "else"))
                orelse = []
                if end.startswith("else"):
                    orelse, _ = block(("end",))
                nodes.append(_Node("range", expr=toks, body=body, orelse=orelse, names=names))
            elif word.startswith("$") and len(_tokens(s)) > 1 and _tokens(s)[1] in (":=", "="):
                toks = _tokens(s)
                nodes.append(_Node("assign", names=[toks[0]], expr=toks[2:], declare=toks[1] == ":="))
            elif word in ("end", "else"):
                raise GoTemplateError(f"unexpected {{{{ {s} }}}}")
            elif word in ("with", "define", "template", "block", "break", "continue"):
                raise GoTemplateError(f"'{word}' is not supported by this checker")
            else:
                nodes.append(_Node("expr", expr=_tokens(s)))
        if stop:
            raise GoTemplateError("missing {{ end }}")
        return nodes, ""

    def _if(cond: str) -> _Node:
        body, end = block(("end", "else"))
        orelse: list[_Node] = []
        if end.startswith("else"):
            tail = end[4:].strip()
            if tail.startswith("if "):
                orelse = [_if(tail[3:])]
            else:
                orelse, _ = block(("end",))
        return _Node("if", expr=_tokens(cond), body=body, orelse=orelse)

    nodes, _ = block(())
    return nodes


class GoStruct(dict):
    """A Go struct value: its fields by name (a dict, so tests can read them), the Go type's name, how `{{ . }}`
    prints it (its String method; None: Go would print fmt's `{...}` form, which no template wants) and how `json`
    marshals it (None: not needed by any TEMPLATE we check, so refused), and whether `if` holds it true (a struct
    always is; a map such as templateArgs only when it is not empty)."""

    def __init__(self, type_name: str, fields: dict, *, printed: str | None = None, marshalled: str | None = None,
                 truth: bool = True):
        super().__init__(fields)
        self.type_name, self.printed, self.marshalled, self.truth = type_name, printed, marshalled, truth


def _field(obj: Any, name: str) -> Any:
    for part in name.split("."):
        if not part:
            continue
        if isinstance(obj, GoStruct):
            if part not in obj:  # Go: "can't evaluate field X in type Y"
                raise GoTemplateError(f"can't evaluate field {part} in type {obj.type_name}")
            obj = obj[part]
        elif isinstance(obj, dict):  # the values map: a missing key is the zero value (missingkey=zero)
            obj = obj.get(part)
        elif obj is None:
            return None
        else:
            raise GoTemplateError(f"can't evaluate field {part} in a {type(obj).__name__}")
    return obj


def _truth(v: Any) -> bool:
    if isinstance(v, GoStruct):
        return v.truth
    return bool(v) if v is not None else False


def _json(v: Any) -> str:
    """Ollama's `json` function: Go's json.Marshal of the value."""
    if isinstance(v, GoStruct):
        if v.marshalled is None:
            raise GoTemplateError(f"json of a {v.type_name} is not supported by this checker")
        return v.marshalled
    if isinstance(v, list):
        return "[" + ",".join(_json(x) for x in v) + "]"
    if v is None or isinstance(v, (str, int, float, bool)):
        return go_json(v)
    raise GoTemplateError(f"json of a {type(v).__name__} is not supported by this checker")


def _print(v: Any) -> str:
    """What `{{ value }}` writes: strings and numbers as they are, a Stringer's String(); Go's fmt form of a struct,
    slice or map is refused (a template that prints one is broken, not something to reproduce)."""
    if v is None:
        return ""
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    if isinstance(v, GoStruct) and v.printed is not None:
        return v.printed
    kind = v.type_name if isinstance(v, GoStruct) else type(v).__name__
    raise GoTemplateError(f"printing a {kind} would write Go's fmt form of it; print its fields or use json")


def _len(a: Any) -> int:
    if isinstance(a, GoStruct) or not hasattr(a, "__len__"):
        raise GoTemplateError(f"len of a {getattr(a, 'type_name', type(a).__name__)} is not supported by this checker")
    return len(a)


_FUNCS = {
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truth(a),
    "len": lambda a: _len(a),
    "slice": lambda a, *ix: a[ix[0]:ix[1]] if len(ix) > 1 else a[ix[0]:] if ix else a,
    "json": _json,
}


class _Scope:
    def __init__(self, root: Any):
        self.root = root
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def get(self, name: str) -> Any:
        for f in reversed(self.frames):
            if name in f:
                return f[name]
        raise GoTemplateError(f"undefined variable {name}")

    def set(self, name: str, value: Any, declare: bool) -> None:
        if declare:
            self.frames[-1][name] = value
            return
        for f in reversed(self.frames):
            if name in f:
                f[name] = value
                return
        raise GoTemplateError(f"undefined variable {name}")


def _eval(toks: list[str], dot: Any, scope: _Scope) -> Any:
    args, pos = [], 0

    def operand() -> Any:
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t == "(":
            depth, start = 1, pos
            while depth:
                if pos >= len(toks):
                    raise GoTemplateError("unbalanced parentheses")
                depth += {"(": 1, ")": -1}.get(toks[pos], 0)
                pos += 1
            return _eval(toks[start:pos - 1], dot, scope)
        if t.startswith('"'):
            return bytes(t[1:-1], "utf-8").decode("unicode_escape")
        if t.lstrip("-").isdigit():
            return int(t)
        if t in ("true", "false"):
            return t == "true"
        if t == ".":
            return dot
        if t.startswith("."):
            return _field(dot, t[1:])
        if t.startswith("$"):
            name, _, rest = t.partition(".")
            return _field(scope.get(name), rest) if rest else scope.get(name)
        if t in _FUNCS or t in ("and", "or"):
            return t
        raise GoTemplateError(f"unknown word {t!r}")

    while pos < len(toks):
        args.append(operand())
    if not args:
        raise GoTemplateError("empty action")
    head = args[0]
    if isinstance(head, str) and head in ("and", "or") and toks[0] == head:
        vals = args[1:]
        if head == "and":
            for v in vals:
                if not _truth(v):
                    return v
            return vals[-1]
        for v in vals:
            if _truth(v):
                return v
        return vals[-1]
    if isinstance(head, str) and head in _FUNCS and toks[0] == head:
        return _FUNCS[head](*args[1:])
    if len(args) != 1:
        raise GoTemplateError(f"cannot evaluate {' '.join(toks)!r}")
    return head


def _run(nodes: list[_Node], dot: Any, scope: _Scope, out: list[str]) -> None:
    for n in nodes:
        if n.kind == "text":
            out.append(n.text)
        elif n.kind == "expr":
            out.append(_print(_eval(n.expr, dot, scope)))
        elif n.kind == "assign":
            scope.set(n.names[0], _eval(n.expr, dot, scope), n.declare)
        elif n.kind == "if":
            scope.frames.append({})
            _run(n.body if _truth(_eval(n.expr, dot, scope)) else n.orelse, dot, scope, out)
            scope.frames.pop()
        elif n.kind == "range":
            seq = _eval(n.expr, dot, scope)
            if seq is None:
                seq = []
            if not isinstance(seq, list):  # Go also ranges over maps (sorted keys) and ints: not needed, so refused
                kind = seq.type_name if isinstance(seq, GoStruct) else type(seq).__name__
                raise GoTemplateError(f"range over a {kind} is not supported by this checker")
            if not seq:
                _run(n.orelse, dot, scope, out)
            for i, item in enumerate(seq):
                frame: dict[str, Any] = {}
                if len(n.names) == 1:
                    frame[n.names[0]] = item
                elif len(n.names) == 2:
                    frame[n.names[0]], frame[n.names[1]] = i, item
                scope.frames.append(frame)
                _run(n.body, item, scope, out)
                scope.frames.pop()


def render(src: str, data: dict) -> str:
    """Render the Go template `src` with `data` (e.g. {"System": ..., "Messages": [...]})."""
    out: list[str] = []
    _run(parse(src), data, _Scope(data), out)
    return "".join(out)


def ollama_values(messages: list[dict], tools: list[dict] | None = None) -> dict:
    """What Ollama's Execute passes to a chat TEMPLATE (template.go): `collate` merges consecutive messages of one
    role with a blank line, except tool messages, each of which keeps its own turn (and only the first message of a
    merged run keeps its tool calls, as Go's merge into the first message does); system messages stay in .Messages
    and are also joined into .System. Messages, calls and tools are the template types Ollama converts them to."""
    system = [m.get("content") or "" for m in messages if m["role"] == "system"]
    collated: list[GoStruct] = []
    for i, m in enumerate(messages):
        if collated and collated[-1]["Role"] == m["role"] and m["role"] != "tool":
            collated[-1]["Content"] += "\n\n" + (m.get("content") or "")
        else:
            collated.append(_message(m, f"messages[{i}]"))
    return {"System": "\n\n".join(system), "Messages": collated, "Tools": [_tool(t) for t in tools] if tools else None,
            "Response": "", "Think": False, "ThinkLevel": "", "IsThinkSet": False}


def _message(m: dict, at: str) -> GoStruct:
    calls = [_call(normalize_call(c, f"{at}.tool_calls[{j}]")) for j, c in enumerate(m.get("tool_calls") or [])]
    return GoStruct("templateMessage", {
        "Role": m["role"], "Content": m.get("content") or "", "Thinking": "", "Images": None,
        "ToolCalls": calls or None, "ToolName": m.get("tool_name") or m.get("name") or "",
        "ToolCallID": m.get("tool_call_id") or ""})


def _call(call: dict) -> GoStruct:
    """templateToolCall {ID, Function {Name, Arguments}}: Arguments is templateArgs, whose String() and json are
    Go's json.Marshal of a map (keys sorted). The call itself has no String method and is not needed as JSON."""
    fn = call["function"]
    args = fn.get("arguments") or {}
    arguments = GoStruct("templateArgs", {}, printed=go_json(args), marshalled=go_json(args), truth=bool(args))
    return GoStruct("templateToolCall", {
        "ID": call.get("id") or "",
        "Function": GoStruct("templateToolCallFunction", {"Name": fn["name"], "Arguments": arguments})})


def _tool(tool: dict) -> GoStruct:
    """templateTool as Ollama builds it from the request's tool (tools.ollama_tool: the fields Ollama keeps, in its
    struct order): printed (its String method) and marshalled alike; its parts can be read field by field."""
    t = ollama_tool(tool)
    fn, params = t["function"], t["function"]["parameters"]
    props = params["properties"]
    properties = GoStruct("templateProperties", {}, printed="{}" if props is None else go_json(props, sort_keys=False),
                          marshalled=go_json(props, sort_keys=False), truth=bool(props))
    parameters = GoStruct("templateToolFunctionParameters", {
        "Type": params["type"], "Defs": params.get("$defs"), "Items": params.get("items"),
        "Required": params.get("required"), "Properties": properties}, marshalled=go_json(params, sort_keys=False))
    function = GoStruct("templateToolFunction", {"Name": fn["name"], "Description": fn["description"],
                                                 "Parameters": parameters}, marshalled=go_json(fn, sort_keys=False))
    text = go_json(t, sort_keys=False)
    return GoStruct("templateTool", {"Type": t["type"], "Items": None, "Function": function}, printed=text,
                    marshalled=text)


# ------------------------------------------------------------------------------------------- what Ollama reads
def _top_fields(toks: list[str]) -> list[str]:
    """The field words (`.A.B`) of an action outside parentheses: Go's FieldNode arguments of its command."""
    out, depth = [], 0
    for t in toks:
        depth += {"(": 1, ")": -1}.get(t, 0)
        if depth == 0 and t.startswith(".") and t != ".":
            out.append(t)
    return out


def tool_call_tag(src: str) -> str:
    """The tag Ollama's tool parser looks for in a model's answer, found in the TEMPLATE as tools/template.go
    parseTag finds it: the first `{{ if }}` whose condition names .ToolCalls as a field, then the first text in it
    that is not blank (looking into a first nested if/range, stopping at any action), cut at '{' and stripped.
    '{' (parse bare JSON objects) when there is none."""
    def find_if(nodes: list[_Node]) -> _Node | None:
        for n in nodes:
            if n.kind == "if" and any("ToolCalls" in f.split(".") for f in _top_fields(n.expr)):
                return n
            if n.kind in ("if", "range"):
                found = find_if(n.body) or find_if(n.orelse)
                if found:
                    return found
        return None

    def first_text(nodes: list[_Node]) -> str | None:
        for n in nodes:
            if n.kind == "text":
                if n.text.strip():
                    return n.text
                continue
            if n.kind in ("if", "range"):
                return first_text(n.body) or first_text(n.orelse)
            return None  # an action: Go stops looking
        return None

    block = find_if(parse(src))
    text = first_text(block.body) if block else None
    tag = (text or "").replace("\r\n", "\n").split("{", 1)[0].strip()
    return tag or "{"


def template_vars(src: str) -> set[str]:
    """The identifiers a TEMPLATE names, lower-cased, as Ollama's Template.Vars lists them: `tools` among them is
    what gives the model Ollama's tools capability (without it, a request with tools is refused)."""
    out: set[str] = set()

    def walk(nodes: list[_Node]) -> None:
        for n in nodes:
            for t in n.expr:  # Go's Identifiers: field and variable words of commands (not declared names)
                if t.startswith((".", "$")) and t != ".":
                    out.update(p.lower() for p in t.split(".") if p)
            walk(n.body)
            walk(n.orelse)

    walk(parse(src))
    return out
