"""Ollama Modelfile: the training template as a Go TEMPLATE, every end-of-turn token as a stop.

The TEMPLATE is the Ollama form kept in the run's registry template record (templates/registry/<name>.json,
named by template.json's `registry`). A template the run took from its tokenizer was matched, when training, to
the registry template that renders the same text; one that matches none cannot be exported to Ollama (we never
write a TEMPLATE we cannot show to be equivalent), and `check_equivalent` renders both forms before any export.
"""

from __future__ import annotations

import json

from tunewise.errors import RunError
from tunewise.export.gotemplate import ollama_values, render
from tunewise.templates import PROBES, ChatTemplate, registry_entry, registry_equivalent


def ollama_template(template: ChatTemplate) -> str:
    """The Ollama TEMPLATE of the run's chat template: the Ollama form its registry record holds (template.json
    names the record; a run trained before it did is matched by rendering, once)."""
    name = template.registry or registry_equivalent(template)
    if name is None:
        raise RunError(
            f"the run's chat template '{template.name}' has no Ollama equivalent that tunewise can verify",
            where="template.json",
            fix="train with a registry template (template.name: chatml, qwen, llama3, gemma, mistral, plain), "
                "or export without --ollama and use the GGUF's embedded chat template",
        )
    return registry_entry(name)["ollama"].replace("{eos}", template.eos_token or "")


def render_ollama(go_template: str, messages: list[dict], bos_token: str = "") -> str:
    """The prompt text Ollama builds for `messages` (ending with a user turn), with the BOS the
    tokenizer adds written out, so it is comparable with the training render."""
    return bos_token + render(go_template, ollama_values(messages))


def training_bos(template: ChatTemplate) -> bool:
    """Whether the training render starts with the template's `bos_token` (then the GGUF must add it).

    Asked of the template's bos_token variable, not of the text: SmolLM2's BOS is `<|im_start|>`, which its
    ChatML template writes itself at the start of every turn; adding a BOS as well would double it."""
    if not template.bos_token:
        return False
    from dataclasses import replace

    marked = replace(template, bos_token="\x00BOS\x00")
    return all(marked.render(p, add_generation_prompt=True).startswith("\x00BOS\x00") for p in PROBES)


def check_equivalent(go_template: str, template: ChatTemplate) -> list[str]:
    """Probe conversations whose Ollama render differs from the training render (empty = equivalent)."""
    bos = template.bos_token if training_bos(template) else ""
    bad = []
    for p in PROBES:
        want = template.render(p, add_generation_prompt=True)
        # Ollama gives the Modelfile's SYSTEM to a conversation without a system message, as training did.
        got = render_ollama(go_template, template.with_system(p), bos)
        if got != want:
            bad.append(f"{json.dumps(p, ensure_ascii=False)}: training {want!r} vs Ollama {got!r}")
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
