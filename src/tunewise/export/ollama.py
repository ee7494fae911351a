"""Ollama Modelfile: the training template as a Go TEMPLATE, every end-of-turn token as a stop.

The TEMPLATE is the Ollama form kept in the run's registry template record (templates/registry/<name>.json,
named by template.json's `registry`). A template the run took from its tokenizer was matched, when training, to
the registry template that renders the same text; one that matches none cannot be exported to Ollama (we never
write a TEMPLATE we cannot show to be equivalent), and `check_equivalent` renders both forms before any export.

A run trained with tools gets the record's tools form (`ollama_tools`), which renders the hermes form
(templates/tools.py) from Ollama's own values: the tools block from .Tools, each call from .ToolCalls, each tool
result as a <tool_response> user turn. Besides rendering like training, such a TEMPLATE must be one Ollama treats
as tools-capable: it names .Tools (else Ollama refuses requests with tools), its first `{{ if .ToolCalls }}` block
starts with `<tool_call>` (the tag Ollama's parser looks for in the answer; another tag would leave the model's
calls as plain text), and it holds `tool_response` (what makes Ollama keep it over a GGUF chat template that also
renders tools, which would not render them as training did). A run whose tokenizer template rendered tools
itself (template.tools: native) has no such form: no Go TEMPLATE can be shown to render as its Jinja does.
"""

from __future__ import annotations

import json

from tunewise.errors import RunError
from tunewise.export.gotemplate import GoTemplateError, ollama_values, render, template_vars, tool_call_tag
from tunewise.templates import PROBES, ChatTemplate, registry_entry, registry_equivalent
from tunewise.templates.tools import CALL_OPEN, NATIVE, RESPONSE_OPEN, TOOLS_HEAD, TOOLS_TAIL

# Conversations with tools the equivalence check renders (besides PROBES): with and without a system prompt, a
# call to make, a call made and its result, parallel calls with text before them (two results, each its own turn),
# the answer after them and a follow-up; calls without tools offered; arguments and results that Go's JSON escapes
# (<, >, &), sorts (keys) or writes differently (1.0 as 1), non-ASCII text, and a schema with fields Ollama drops.
_WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city <as typed> & nothing else.",
    "parameters": {"type": "object", "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "city": {"type": "string", "description": "City name"}}, "required": ["city"]}}}
_CONVERT = {"type": "function", "function": {
    "name": "convert_units", "description": "Convert a value between units.",
    "parameters": {"type": "object", "properties": {
        "value": {"type": "number", "minimum": 0}, "to_unit": {"type": "string"}, "from_unit": {"type": "string"}},
        "required": ["value", "from_unit", "to_unit"]}}}
_NOW = {"type": "function", "function": {"name": "now", "description": "",
                                         "parameters": {"type": "object", "properties": {}}}}


def _call(name: str, args: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


TOOL_PROBES: list[tuple[list[dict], list[dict] | None]] = [
    ([{"role": "user", "content": "Weather in Paris?"}], [_WEATHER, _CONVERT]),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "巴黎天气怎么样？"}], [_WEATHER]),
    ([{"role": "user", "content": "What time is it?"},
      {"role": "assistant", "content": "", "tool_calls": [_call("now", {})]},
      {"role": "tool", "name": "now", "content": "{\"time\": \"09:30\"}"}], [_NOW, _WEATHER]),
    ([{"role": "system", "content": "You are a helpful assistant.\nAnswer in English."},
      {"role": "user", "content": "Weather in A&B <x>, and 1 km in mi?"},
      {"role": "assistant", "content": "Checking both.", "tool_calls": [
          _call("get_weather", {"unit": "celsius", "city": "A&B <x>"}),
          _call("convert_units", {"value": 1.0, "to_unit": "mi", "from_unit": "km"})]},
      {"role": "tool", "name": "get_weather", "content": "{\"temp\": 18, \"note\": \"<b>dry</b> & calm\"}"},
      {"role": "tool", "name": "convert_units", "content": "0.62"},
      {"role": "assistant", "content": "18 °C and dry; 1 km is 0.62 mi."},
      {"role": "user", "content": "And 2.5 kg?"}], [_WEATHER, _CONVERT]),
    ([{"role": "user", "content": "Tokyo?"}, {"role": "assistant", "content": "", "tool_calls": [
        _call("get_weather", {"city": "東京"}),
        _call("get_weather", {"city": "Tokyo", "unit": "fahrenheit", "extra": {"z": [2.5, 3.0], "a": None}})]},
      {"role": "tool", "content": "a"}, {"role": "tool", "content": "b"},
      {"role": "assistant", "content": "Both done."}, {"role": "user", "content": "Thanks"}], None),
]


# The tools block as a TEMPLATE writes it: templates/tools.tools_block with each tool from .Tools, printed by Go.
_TOOLS_GO = TOOLS_HEAD + "{{ range $.Tools }}\n{{ json . }}{{ end }}" + TOOLS_TAIL


def ollama_template(template: ChatTemplate, tools: bool = False) -> str:
    """The Ollama TEMPLATE of the run's chat template: the Ollama form its registry record holds (template.json
    names the record; a run trained before it did is matched by rendering, once); `tools`: the run trained with
    tools, so the record's tools form."""
    if tools and template.tool_format == NATIVE:
        raise RunError(
            f"the run rendered tools with its tokenizer's own chat template ('{template.name}', template.tools: "
            "native), and no Ollama TEMPLATE can be shown to render tools exactly as that Jinja template does",
            where="template.json (tools: native)",
            fix="train with template.tools: hermes, or export without --ollama (the GGUF embeds the tokenizer's "
                "template)")
    name = template.registry or registry_equivalent(template)
    if name is None:
        raise RunError(
            f"the run's chat template '{template.name}' has no Ollama equivalent that tunewise can verify",
            where="template.json",
            fix="train with a registry template (template.name: chatml, qwen, llama3, gemma, mistral, plain), "
                "or export without --ollama and use the GGUF's embedded chat template",
        )
    entry = registry_entry(name)
    if tools and not entry.get("ollama_tools"):
        raise RunError(f"the registry template '{name}' has no Ollama form that carries tools", where="template.json",
                       fix="train with a registry template that has one (template.name: chatml, qwen, llama3, gemma, "
                           "mistral, plain), or export without --ollama")
    form = entry["ollama_tools"].replace("{tools}", _TOOLS_GO) if tools else entry["ollama"]
    return form.replace("{eos}", template.eos_token or "")


def render_ollama(go_template: str, messages: list[dict], bos_token: str = "", tools: list[dict] | None = None) -> str:
    """The prompt text Ollama builds for `messages` (ending with a user or tool turn) and `tools`, with the BOS the
    tokenizer adds written out, so it is comparable with the training render."""
    return bos_token + render(go_template, ollama_values(messages, tools))


def training_bos(template: ChatTemplate) -> bool:
    """Whether the training render starts with the template's `bos_token` (then the GGUF must add it).

    Asked of the template's bos_token variable, not of the text: SmolLM2's BOS is `<|im_start|>`, which its
    ChatML template writes itself at the start of every turn; adding a BOS as well would double it."""
    if not template.bos_token:
        return False
    from dataclasses import replace

    marked = replace(template, bos_token="\x00BOS\x00")
    return all(marked.render(p, add_generation_prompt=True).startswith("\x00BOS\x00") for p in PROBES)


def tools_problems(go_template: str) -> list[str]:
    """Why Ollama would not run `go_template` as a tools model (empty: it would): see the module doc."""
    out = []
    if "tools" not in template_vars(go_template):
        out.append("it never reads .Tools, so Ollama would refuse requests with tools")
    tag = tool_call_tag(go_template)
    if tag != CALL_OPEN:
        out.append(f"Ollama's tool parser would look for {tag!r} in answers, not {CALL_OPEN!r} (the first "
                   "{{ if .ToolCalls }} block must start with it), so the model's calls would stay plain text")
    if RESPONSE_OPEN.strip("<>") not in go_template:
        out.append("it holds no 'tool_response', so Ollama may prefer a GGUF chat template that renders tools")
    return out


def check_equivalent(go_template: str, template: ChatTemplate, tools: bool = False) -> list[str]:
    """Probe conversations whose Ollama render differs from the training render (empty = equivalent); `tools`:
    also the tool probes (conversations with tools, calls and results) and what makes Ollama use the tools."""
    bos = template.bos_token if training_bos(template) else ""
    bad = tools_problems(go_template) if tools else []
    for p, offered in [(p, None) for p in PROBES] + (TOOL_PROBES if tools else []):
        want = template.render(p, add_generation_prompt=True, tools=offered)
        # Ollama gives the Modelfile's SYSTEM to a conversation without a system message, as training did.
        try:
            got = render_ollama(go_template, template.with_system(p), bos, tools=offered)
        except GoTemplateError as e:  # Ollama would fail on it (or do what we cannot check): not equivalent
            return bad + [f"the TEMPLATE cannot be rendered: {e}"]
        if got != want:
            shown = json.dumps({"messages": p, "tools": [t["function"]["name"] for t in offered]} if offered else p,
                               ensure_ascii=False)
            bad.append(f"{shown}: training {want!r} vs Ollama {got!r}")
    return bad


# ------------------------------------------------------------------------------------------- Modelfile
# A Modelfile is a list of commands (name, argument). We build the list we intend, render it, and parse the
# text back exactly as Ollama does (`parse_commands`, a port of ollama/parser/parser.go ParseFile): a value
# that would not come back unchanged (a system prompt holding '"""' and a newline, which would end its block
# and turn the following lines into FROM/PARAMETER directives) is refused, never written.

_COMMANDS = {"from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter", "message",
             "requires"}


def _unquote(s: str) -> tuple[str, bool]:
    if s.startswith('"""'):
        return (s[3:-3], True) if len(s) >= 6 and s.endswith('"""') else ("", False)
    if s.startswith('"'):
        return (s[1:-1], True) if len(s) >= 2 and s.endswith('"') else ("", False)
    return s, True


def _next_state(r: str, state: str) -> tuple[str, str | None]:
    """Ollama's parseRuneForState: (next state, the rune to keep or None); ValueError for a bad rune."""
    space, newline = r in " \t", r in "\r\n"
    if state == "nil":
        return ("comment", None) if r == "#" else ("nil", None) if space or newline else ("name", r)
    if state == "name":
        if r.isascii() and r.isalpha():
            return "name", r
        if space:
            return "value", None
        raise ValueError("command must be one of " + ", ".join(sorted(_COMMANDS)))
    if state == "value":
        return ("nil", r) if space or newline else ("value", r)
    if state in ("parameter", "message"):
        if r.isascii() and (r.isalpha() or (state == "parameter" and (r.isdigit() or r == "_"))):
            return state, r
        if space:
            return "value", None
        raise ValueError("unexpected character in a PARAMETER/MESSAGE name")
    return ("nil", None) if newline else ("comment", None)  # comment


def parse_commands(text: str) -> list[tuple[str, str]]:
    """The (command, argument) list Ollama reads from a Modelfile; ValueError where Ollama would fail."""
    cmds: list[tuple[str, str]] = []
    state, buf, name, role = "nil", [], "", ""
    for r in text.removeprefix("\ufeff"):
        nxt, keep = _next_state(r, state)
        if nxt != state:
            if state == "name":
                word = "".join(buf).lower()
                if word not in _COMMANDS:
                    raise ValueError(f"unknown command {word!r}")
                if word == "parameter":
                    nxt = "parameter"
                elif word == "message":
                    nxt, name = "message", word
                else:
                    name = "model" if word == "from" else word
            elif state == "parameter":
                name = "".join(buf)
            elif state == "message":
                role = "".join(buf)
            elif state == "value":
                value, ok = _unquote("".join(buf).strip())
                if not ok or r in " \t":
                    buf.append(r)
                    continue
                cmds.append((name, f"{role}: {value}" if role else value))
                role = ""
            buf, state = [], nxt
        if keep is not None and keep.isprintable():
            buf.append(keep)
    if state == "value":
        value, ok = _unquote("".join(buf).strip())
        if not ok:
            raise ValueError("unexpected end of file inside a quoted value")
        cmds.append((name, f"{role}: {value}" if role else value))
    elif state not in ("nil", "comment"):
        raise ValueError("unexpected end of file")
    if not any(n == "model" for n, _ in cmds):
        raise ValueError("no FROM line")
    return cmds


def _render_command(name: str, arg: str) -> str:
    head = {"model": "FROM", "template": "TEMPLATE", "system": "SYSTEM"}.get(name) or f"PARAMETER {name}"
    if name in ("template", "system"):
        forms = [f'"""{arg}"""']
    elif name == "model" or (name != "stop" and arg and not any(c.isspace() or c == '"' for c in arg)):
        forms = [arg]
    else:
        forms = [f'"{arg}"', f'"""{arg}"""']
    for form in forms:
        line = f"{head} {form}"
        try:
            if parse_commands("FROM x\n" + line + "\n")[1:] == [(name, arg)]:
                return line
        except ValueError:
            pass
    key = {"system": "template.system", "template": "template.json (its chat template)", "stop": "template.json (stop_strings)"}
    raise RunError(
        f"the Modelfile cannot hold this {name} value: Ollama would read it differently"
        + (" (it contains '\"\"\"', which ends the quoted block, so the lines after it would become Modelfile commands)"
           if '"""' in arg else " (a quote followed by a space or line break, or a character Ollama drops)"),
        where=key.get(name, name), fix="remove the triple quotes (or that character) from it and export again")


def modelfile_commands(*, gguf_name: str, go_template: str, stops: list[str], generation, num_ctx: int,
                       system: str | None = None) -> list[tuple[str, str]]:
    """The Modelfile tunewise means to write, as Ollama's (command, argument) list."""
    cmds = [("model", f"./{gguf_name}"), ("template", go_template)]
    if system:
        cmds.append(("system", system))
    cmds += [("stop", s) for s in stops]
    cmds += [("temperature", str(generation.temperature)), ("top_k", str(generation.top_k)),
             ("top_p", str(generation.top_p)), ("repeat_penalty", str(generation.repetition_penalty)),
             ("num_ctx", str(num_ctx)), ("num_predict", str(generation.max_new_tokens))]
    return cmds


def render_modelfile(cmds: list[tuple[str, str]]) -> str:
    text = "\n".join(_render_command(n, a) for n, a in cmds) + "\n"
    diff = modelfile_differences(text, cmds)
    if diff:  # each line round-trips on its own; this would be a bug in the rendering itself
        raise RunError("the Modelfile would not read back as written: " + diff[0], where="Modelfile",
                       fix="report this; export without --ollama meanwhile")
    return text


def modelfile_differences(text: str, intended: list[tuple[str, str]]) -> list[str]:
    """How the Modelfile `text`, parsed as Ollama parses it, differs from the intended command list."""
    try:
        got = parse_commands(text)
    except ValueError as e:
        return [f"Ollama cannot parse it ({e})"]
    out = []
    for i in range(max(len(got), len(intended))):
        a = intended[i] if i < len(intended) else None
        b = got[i] if i < len(got) else None
        if a != b:
            out.append(f"command {i + 1}: intended {a!r}, the file gives {b!r}")
    return out


def modelfile_text(*, gguf_name: str, go_template: str, stops: list[str], generation, num_ctx: int,
                   system: str | None = None) -> str:
    return render_modelfile(modelfile_commands(gguf_name=gguf_name, go_template=go_template, stops=stops,
                                               generation=generation, num_ctx=num_ctx, system=system))


def parse_modelfile(text: str) -> dict:
    """FROM, TEMPLATE, SYSTEM and PARAMETERs (stop may repeat), as Ollama reads them."""
    out: dict = {"parameters": {}, "stop": []}
    for name, arg in parse_commands(text):
        if name == "model":
            out["from"] = arg
        elif name in ("template", "system"):
            out[name] = arg
        elif name == "stop":
            out["stop"].append(arg)
        else:
            out["parameters"][name] = arg
    return out
