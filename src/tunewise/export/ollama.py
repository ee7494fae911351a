"""Ollama Modelfile: the training template as a Go TEMPLATE, every end-of-turn token as a stop.

The TEMPLATE comes from `ollama_templates/<registry name>.json`. A template the run took from its
tokenizer is matched to the registry template that renders the same text; one that matches none
cannot be exported to Ollama (we never write a TEMPLATE we cannot show to be equivalent).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunewise.errors import RunError
from tunewise.export.gotemplate import ollama_values, render
from tunewise.templates import ChatTemplate, registry_names

_DIR = Path(__file__).parent / "ollama_templates"

# Conversations the equivalence check renders: with and without a system prompt, one and two turns.
PROBES: list[list[dict]] = [
    [{"role": "user", "content": "Hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}],
    [{"role": "user", "content": "Question one?"}, {"role": "assistant", "content": "Answer one."},
     {"role": "user", "content": "Question two?"}],
    [{"role": "system", "content": "You are a helpful assistant.\nAnswer in English."},
     {"role": "user", "content": "你好，今天怎么样？"}, {"role": "assistant", "content": "很好。"},
     {"role": "user", "content": "Classify: great coffee"}],
]


def _registry_template(name: str, like: ChatTemplate) -> ChatTemplate:
    from tunewise.templates import _registry_entry  # the registry's data, read only

    entry = _registry_entry(name)
    return ChatTemplate(name=name, chat_template=entry["chat_template"], bos_token=like.bos_token,
                        eos_token=like.eos_token, system=like.system)


def registry_equivalent(template: ChatTemplate) -> str | None:
    """The registry template name that renders exactly like `template` (None when none does)."""
    names = [template.name] if template.name in registry_names() else []
    names += [n for n in registry_names() if n not in names]
    for name in names:
        if not (_DIR / f"{name}.json").exists():
            continue
        cand = _registry_template(name, template)
        try:
            if all(cand.render(p, add_generation_prompt=True) == template.render(p, add_generation_prompt=True)
                   for p in PROBES):
                return name
        except Exception:  # a template that cannot render a probe is not equivalent
            continue
    return None


def ollama_template(template: ChatTemplate) -> str:
    name = registry_equivalent(template)
    if name is None:
        raise RunError(
            f"the run's chat template '{template.name}' has no Ollama equivalent that tunewise can verify",
            where="template.json",
            fix="train with a registry template (template.name: chatml, qwen, llama3, gemma, mistral, plain), "
                "or export without --ollama and use the GGUF's embedded chat template",
        )
    src = json.loads((_DIR / f"{name}.json").read_text(encoding="utf-8"))["template"]
    return src.replace("{eos}", template.eos_token or "")


def render_ollama(go_template: str, messages: list[dict], bos_token: str = "") -> str:
    """The prompt text Ollama builds for `messages` (ending with a user turn), with the BOS the
    tokenizer adds written out, so it is comparable with the training render."""
    return bos_token + render(go_template, ollama_values(messages))


def training_bos(template: ChatTemplate) -> bool:
    """Whether the training render starts with the BOS token (then the GGUF must add it)."""
    if not template.bos_token:
        return False
    return all(template.render(p, add_generation_prompt=True).startswith(template.bos_token) for p in PROBES)


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


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def modelfile_text(*, gguf_name: str, go_template: str, stops: list[str], generation, num_ctx: int,
                   system: str | None = None) -> str:
    if '"""' in go_template:
        raise RunError("the Ollama template contains triple quotes, which a Modelfile cannot hold", where="template.json")
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{go_template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER stop {_quote(s)}" for s in stops]
    lines += [
        f"PARAMETER temperature {generation.temperature}",
        f"PARAMETER top_k {generation.top_k}",
        f"PARAMETER top_p {generation.top_p}",
        f"PARAMETER repeat_penalty {generation.repetition_penalty}",
        f"PARAMETER num_ctx {num_ctx}",
        f"PARAMETER num_predict {generation.max_new_tokens}",
    ]
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> dict:
    """Read back what we write: FROM, TEMPLATE, SYSTEM and PARAMETERs (stop may repeat)."""
    out: dict = {"parameters": {}, "stop": []}
    i = 0
    while i < len(text):
        line_end = text.find("\n", i)
        line_end = len(text) if line_end < 0 else line_end
        line = text[i:line_end]
        word, _, rest = line.partition(" ")
        if word in ("TEMPLATE", "SYSTEM") and rest.startswith('"""'):
            close = text.index('"""', i + len(word) + 4)
            out[word.lower()] = text[i + len(word) + 4:close]
            i = close + 3
            continue
        if word == "FROM":
            out["from"] = rest.strip()
        elif word == "PARAMETER":
            key, _, val = rest.partition(" ")
            val = val.strip()
            if key == "stop":
                out["stop"].append(json.loads(val) if val.startswith('"') else val)
            else:
                out["parameters"][key] = val
        i = line_end + 1
    return out
