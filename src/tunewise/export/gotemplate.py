"""A small renderer for the subset of Go's text/template that Ollama chat templates use.

Ollama renders a Modelfile TEMPLATE with Go's text/template. To check, without Ollama, that the
TEMPLATE we write turns a conversation into exactly the text the model was trained on, we render it
here. Supported: text, `{{ .Field }}`, `{{ $.Field }}`, `{{ $var }}`, `{{ $v := ... }}`, `{{ $v = ... }}`,
`if / else if / else / end`, `range [$i, $m :=] ... / end`, the functions eq, ne, and, or, not, len,
slice, string literals, parentheses and the `{{-` / `-}}` whitespace trims. Anything else is an error,
so a template that uses more than we can check is never silently "verified".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

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


def _truth(v: Any) -> bool:
    return bool(v) if v is not None else False


def _field(obj: Any, name: str) -> Any:
    for part in name.split("."):
        if not part:
            continue
        if isinstance(obj, dict):
            if part not in obj:
                return None
            obj = obj[part]
        else:
            obj = getattr(obj, part, None)
    return obj


_FUNCS = {
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "not": lambda a: not _truth(a),
    "len": lambda a: len(a),
    "slice": lambda a, *ix: a[ix[0]:ix[1]] if len(ix) > 1 else a[ix[0]:] if ix else a,
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
            v = _eval(n.expr, dot, scope)
            out.append("" if v is None else ("true" if v is True else "false" if v is False else str(v)))
        elif n.kind == "assign":
            scope.set(n.names[0], _eval(n.expr, dot, scope), n.declare)
        elif n.kind == "if":
            scope.frames.append({})
            _run(n.body if _truth(_eval(n.expr, dot, scope)) else n.orelse, dot, scope, out)
            scope.frames.pop()
        elif n.kind == "range":
            seq = _eval(n.expr, dot, scope) or []
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


def ollama_values(messages: list[dict]) -> dict:
    """What Ollama passes to a chat TEMPLATE (template.go `collate`): consecutive messages of one role
    merged with a blank line, system messages kept in .Messages and also joined into .System."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    collated: list[dict] = []
    for m in messages:
        if collated and collated[-1]["Role"] == m["role"]:
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    return {"System": "\n\n".join(system), "Messages": collated, "Prompt": "", "Response": "", "Tools": None}
