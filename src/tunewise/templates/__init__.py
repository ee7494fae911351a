"""Chat templates: a registry of named Jinja templates, sandboxed rendering, and label masking.

One `ChatTemplate` is chosen when training starts, written to `template.json` in the run directory,
and read back by chat, eval and export: the template is never re-guessed after training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tunewise.errors import ConfigError, DataError
from tunewise.templates.tools import HERMES, NATIVE, has_tool_content, supports_tools, to_hermes

_REGISTRY_DIR = Path(__file__).parent / "registry"

# Which registry template a base model (no template of its own) gets, by config.model_type.
# `requires` names a token that must exist in the vocabulary for the choice to make sense.
_FAMILY_DEFAULTS = [
    ("gemma", "gemma", "<end_of_turn>"),
    ("qwen", "chatml", "<|im_end|>"),
    ("llama", "llama3", "<|eot_id|>"),
    ("mistral", "mistral", None),
    ("mixtral", "mistral", None),
]


def registry_names() -> list[str]:
    return sorted(p.stem for p in _REGISTRY_DIR.glob("*.json"))


@lru_cache(maxsize=None)
def registry_entry(name: str) -> dict:
    path = _REGISTRY_DIR / f"{name}.json"
    if not path.exists():
        raise ConfigError(
            f"unknown chat template '{name}'",
            where="template.name",
            fix=f"use 'auto' (the model's own, else one for its family) or one of: {', '.join(registry_names())}",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _raise(message: str):
    raise TemplateError(message)


@lru_cache(maxsize=64)
def _compile(source: str):
    # The same environment transformers uses for apply_chat_template: sandboxed, immutable,
    # trim_blocks/lstrip_blocks, loop controls. A template can read data but never touch Python objects.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, ensure_ascii=False, indent=indent)
    return env.from_string(source)


@dataclass
class ChatTemplate:
    name: str
    chat_template: str
    source: str = "registry"  # "registry" | "tokenizer"
    bos_token: str = ""
    eos_token: str = ""
    pad_token: str | None = None
    stop_strings: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    # The system prompt the template itself writes into a conversation that has none (SmolLM2's "You are a
    # helpful AI assistant named SmolLM...", Qwen's "You are a helpful assistant."); None when it writes none.
    builtin_system: str | None = None
    # The registry template (templates/registry/) that renders exactly like this one, whose record also holds
    # its Ollama form: the template's own name for a registry template, the one found equivalent when training
    # took the tokenizer's (None: none is; older runs' template.json lacks it and export looks it up).
    registry: str | None = None
    # The system prompt this run gives every conversation without one, in training, chat, eval and export
    # alike (template.system, or a replacement for a built-in one that contradicts the data); None: as rendered.
    system: str | None = None
    # How conversations with tools are rendered (templates/tools.py): "native" (the tokenizer's template renders
    # tools itself) or "hermes" (rewritten into plain turns first); None: decided from the template (older runs).
    tools: str | None = None

    @property
    def tool_format(self) -> str:
        return self.tools or (NATIVE if self.source == "tokenizer" and supports_tools(self.chat_template) else HERMES)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_registry(cls, name: str, tokenizer) -> "ChatTemplate":
        entry = registry_entry(name)
        eos = tokenizer.eos_token or ""
        stops = [eos if s == "{eos}" else s for s in entry["stop"]]
        return cls._finish(cls(name=name, chat_template=entry["chat_template"], source="registry", registry=name),
                           tokenizer, stops)

    @classmethod
    def from_tokenizer(cls, tokenizer, name: str = "tokenizer") -> "ChatTemplate":
        tpl = tokenizer.chat_template
        if isinstance(tpl, dict):  # multiple named templates: take the default one
            tpl = tpl.get("default") or next(iter(tpl.values()))
        stops = _stops_from_template(tpl, tokenizer)
        return cls._finish(cls(name=name, chat_template=tpl, source="tokenizer"), tokenizer, stops)

    @classmethod
    def _finish(cls, t: "ChatTemplate", tokenizer, stops: list[str]) -> "ChatTemplate":
        t.bos_token = tokenizer.bos_token or ""
        t.eos_token = tokenizer.eos_token or ""
        t.pad_token = tokenizer.pad_token
        if t.eos_token and t.eos_token not in stops:
            stops = stops + [t.eos_token]  # EOS always stops generation, whatever the template
        t.stop_strings = list(dict.fromkeys(s for s in stops if s))
        ids = []
        vocab = tokenizer.get_vocab()
        for s in t.stop_strings:
            if s in vocab:
                ids.append(vocab[s])
        t.stop_token_ids = list(dict.fromkeys(ids))
        t.builtin_system = find_builtin_system(t)
        return t

    @classmethod
    def from_json(cls, src: str | Path | dict) -> "ChatTemplate":
        data = src if isinstance(src, dict) else json.loads(Path(src).read_text(encoding="utf-8"))
        data = {("builtin_system" if k == "default_system" else k): v for k, v in data.items()}  # older runs
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ---- rendering ----------------------------------------------------------------------
    def with_system(self, messages: list[dict]) -> list[dict]:
        """`messages` with this run's system prompt first when they have none (and the run sets one)."""
        if self.system is None or (messages and messages[0]["role"] == "system"):
            return messages
        return [{"role": "system", "content": self.system}, *messages]

    def standalone_jinja(self) -> str:
        """The Jinja template for an exported model: renders like this run, system prompt included, on its own
        (apply_chat_template on the merged model, the GGUF's embedded template)."""
        if self.system is None:
            return self.chat_template
        prelude = ("{%- if not messages or messages[0]['role'] != 'system' -%}"
                   "{%- set messages = [{'role': 'system', 'content': " + json.dumps(self.system, ensure_ascii=False)
                   + "}] + messages -%}{%- endif -%}")
        return prelude + self.chat_template

    def prepare(self, messages: list[dict], tools: list[dict] | None = None) -> tuple[list[dict], dict]:
        """The turns the Jinja template is given, and its extra variables: this run's system prompt added; with
        tools (or calls and results in the turns), either `tools=` for a native template or the hermes rewrite
        into plain turns (one out for each in, after a system turn it may add first)."""
        messages = self.with_system(messages)
        if not tools and not has_tool_content(messages):
            return messages, {}
        if self.tool_format == NATIVE:
            return messages, ({"tools": tools} if tools else {})
        return to_hermes(messages, tools, self.builtin_system), {}

    def render(self, messages: list[dict], add_generation_prompt: bool = False, tools: list[dict] | None = None,
               **extra) -> str:
        messages, more = self.prepare(messages, tools)
        return self._render(messages, add_generation_prompt, **more, **extra)

    def _render(self, messages: list[dict], add_generation_prompt: bool = False, **extra) -> str:
        try:
            return _compile(self.chat_template).render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token, eos_token=self.eos_token, **extra,
            )
        except TemplateError as e:
            raise DataError(
                f"chat template '{self.name}' could not render a conversation: {e}",
                fix="check the roles (system/user/assistant) and their order, or choose another template with template.name",
            ) from None
        except Exception as e:  # the template's own code failed (1/0, adding text to a number, ...)
            raise DataError(
                f"chat template '{self.name}' failed while rendering ({type(e).__name__}: {e})",
                where="its chat_template (template.json of a run, or the model's tokenizer_config.json)",
                fix="the template itself is broken: use a registry template (template.name: chatml, llama3, gemma, "
                "mistral, plain) or fix the template's Jinja",
            ) from None

    def assistant_spans(self, messages: list[dict], tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
        """Render `messages` and return the text and the character spans of each assistant turn.

        A span runs from the first character of the assistant's content to the end of its turn,
        so it includes the end-of-turn token: supervising it is what teaches the model to stop.
        Tool results and the tools schema are never in a span; an assistant turn's calls are (templates/tools.py).
        It relies on the template being prefix-stable (rendering a shorter conversation with a
        generation prompt gives a prefix of the longer one), which every sane template is.
        """
        messages, more = self.prepare(messages, tools)
        full = self._render(messages, **more)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self._render(messages[:i], add_generation_prompt=True, **more)
            upto = full if i == len(messages) - 1 else self._render(messages[: i + 1], **more)  # the last: full
            if not upto.startswith(before) or not full.startswith(upto):
                raise DataError(
                    f"chat template '{self.name}' is not prefix-stable, so the answer tokens cannot be located",
                    fix="use a registry template (template.name: chatml, llama3, gemma, mistral, plain)",
                )
            spans.append((len(before), len(upto)))
        return full, spans


_PROBE_SYSTEM = "TUNEWISE-PROBE-SYSTEM-PROMPT"


def find_builtin_system(template: ChatTemplate) -> str | None:
    """The system prompt a template writes into a conversation without one, found by rendering: the text
    that stands where a given system prompt would stand. None when the template writes none."""
    bare = ChatTemplate(name=template.name, chat_template=template.chat_template, bos_token=template.bos_token,
                        eos_token=template.eos_token)
    try:
        given = bare.render([{"role": "system", "content": _PROBE_SYSTEM}, {"role": "user", "content": "Hi"}])
        plain = bare.render([{"role": "user", "content": "Hi"}])
    except (DataError, TemplateError):
        return None
    if _PROBE_SYSTEM not in given:
        return None
    pre, post = given.split(_PROBE_SYSTEM, 1)
    if len(plain) > len(pre) + len(post) and plain.startswith(pre) and plain.endswith(post):
        return plain[len(pre):len(plain) - len(post)]
    return None


def control_token_ids(template: ChatTemplate, tokenizer) -> list[int]:
    """Ids of the special tokens the template writes around turns (start and end of turn), BOS excluded.

    These are the tokens a base model has barely seen: their embedding rows can be trained along with an
    adapter so the model learns to predict the end of its turn (method.train_stop_tokens).
    """
    sample = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    ids = tokenizer(template.render(sample), add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | set((getattr(tokenizer, "added_tokens_encoder", None) or {}).values())
    skip = {tokenizer.bos_token_id, tokenizer.pad_token_id} - set(template.stop_token_ids)
    found = [i for i in dict.fromkeys(ids) if i in special and i not in skip]
    return sorted(set(found) | set(template.stop_token_ids))


def _stops_from_template(tpl: str, tokenizer) -> list[str]:
    """Stop strings of a tokenizer's own template: special tokens that close a turn in it."""
    candidates = ["<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>", "<|end_of_text|>"]
    specials = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}) or {})
    return [c for c in candidates if c in tpl and (c in specials or c in tokenizer.get_vocab())]


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


def registry_equivalent(template: ChatTemplate) -> str | None:
    """The registry template that renders exactly like `template` on PROBES (its own name first; None when none
    does). Training records it in template.json (`registry`), so export reads its Ollama form from there."""
    names = [template.name] if template.name in registry_names() else []
    names += [n for n in registry_names() if n not in names]
    for name in names:
        cand = ChatTemplate(name=name, chat_template=registry_entry(name)["chat_template"], bos_token=template.bos_token,
                            eos_token=template.eos_token, system=template.system)
        try:
            if all(cand.render(p, add_generation_prompt=True) == template.render(p, add_generation_prompt=True)
                   for p in PROBES):
                return name
        except DataError:  # a template that cannot render a probe is not equivalent
            continue
    return None


def choose_template(name: str, tokenizer, model_type: str | None, tools: str = "auto") -> ChatTemplate:
    """`auto`: the tokenizer's own template if it has one, else the registry template for the family. `tools`
    (template.tools): how conversations with tools are rendered, fixed here and recorded in template.json."""
    t = _choose(name, tokenizer, model_type)
    native_ok = t.source == "tokenizer" and supports_tools(t.chat_template)
    if tools == NATIVE and not native_ok:
        raise ConfigError(f"the chat template '{t.name}' does not render tools itself", where="template.tools",
                          fix="use template.tools: auto or hermes (tunewise then writes tools and calls in the "
                          "<tool_call> form, which every template and Ollama can carry)")
    t.tools = NATIVE if tools in ("auto", NATIVE) and native_ok else HERMES
    return t


def _choose(name: str, tokenizer, model_type: str | None) -> ChatTemplate:
    if name == "auto":
        if getattr(tokenizer, "chat_template", None):
            return ChatTemplate.from_tokenizer(tokenizer)
        vocab = tokenizer.get_vocab()
        mt = (model_type or "").lower()
        for prefix, tpl, requires in _FAMILY_DEFAULTS:
            if mt.startswith(prefix) and (requires is None or requires in vocab):
                return ChatTemplate.from_registry(tpl, tokenizer)
        return ChatTemplate.from_registry("plain", tokenizer)
    if name == "tokenizer":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "the tokenizer has no chat template of its own (this is a base model)",
                where="template.name",
                fix=f"use 'auto' or a registry template: {', '.join(registry_names())}",
            )
        return ChatTemplate.from_tokenizer(tokenizer)
    return ChatTemplate.from_registry(name, tokenizer)
