"""`tunewise explain [KEY]`: every config key, from the schema's own descriptions plus a knowledge base.

The English "what it does" is the pydantic Field description (the single source, STYLE rule 2).
params.yaml adds, per key and per language: what too high and too low look like, a typical start,
the Chinese description, and which keys it interacts with. Fields of list items (data.datasets[],
data.val_datasets[], data.general[]) share one entry under their class name (DatasetSpec.path).
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel

from tunewise.config.schema import Config
from tunewise.errors import ConfigError

_KB = Path(__file__).parent / "params.yaml"
LANGS = ("en", "zh")


@dataclass(frozen=True)
class Key:
    key: str               # dotted path a user writes, e.g. train.learning_rate, data.datasets[].path
    section: str           # top-level section
    kb_key: str            # entry in params.yaml
    field: object          # pydantic FieldInfo
    annotation: object

    @property
    def description(self) -> str:
        return self.field.description or ""


def _model_in(ann) -> tuple[type[BaseModel] | None, bool]:
    """(model class, is_list) when the annotation is a section or a list of sections."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    origin = typing.get_origin(ann)
    for a in typing.get_args(ann):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a, origin is list
    return None, False


@lru_cache(maxsize=1)
def schema_keys() -> tuple[Key, ...]:
    """Every config key, walking nested sections; list-of-section fields also give their item fields."""
    out: list[Key] = []

    def walk(model: type[BaseModel], prefix: str, section: str, shared: str | None):
        for name, f in model.model_fields.items():
            dotted = f"{prefix}.{name}" if prefix else name
            sub, is_list = _model_in(f.annotation)
            kb = f"{shared}.{name}" if shared else dotted
            if sub is not None and not is_list and prefix:
                walk(sub, dotted, section, None)  # a nested section (data.clean, data.augment)
            elif sub is not None and not prefix:
                walk(sub, name, name, None)       # a top-level section
            else:
                out.append(Key(dotted, section, kb, f, f.annotation))
                if sub is not None and is_list:
                    walk(sub, dotted + "[]", section, sub.__name__)

    walk(Config, "", "", None)
    return tuple(out)


@lru_cache(maxsize=1)
def knowledge() -> dict:
    return yaml.safe_load(_KB.read_text(encoding="utf-8")) or {}


def find_key(query: str) -> Key:
    """A key by its dotted path, or by a short name when that names one key only; typos get a suggestion.

    A short name matches a key whose last part is that name or ends with it as whole words: `batch_size`
    is both eval.batch_size and train.per_device_batch_size, so it lists both instead of picking one.
    """
    keys = schema_keys()
    q = query.strip().replace("[]", "").lower()
    by_path = {k.key.replace("[]", "").lower(): k for k in keys}
    if q in by_path:
        return by_path[q]
    prefix, _, name = q.rpartition(".")

    def matches(k: Key) -> bool:
        path = k.key.replace("[]", "").lower()
        parent, _, last = path.rpartition(".")
        in_section = not prefix or parent == prefix or parent.endswith("." + prefix)
        return in_section and (last == name or last.endswith("_" + name))

    leaf = [k for k in keys if matches(k)]
    exact = [k for k in leaf if k.key.rsplit(".", 1)[-1].lower() == name]
    if len(leaf) == 1 or (prefix and len(exact) == 1):  # with a section given, its own key of that name wins
        return leaf[0] if len(leaf) == 1 else exact[0]
    if len(leaf) > 1:
        raise ConfigError(f"'{query}' is ambiguous: it names {len(leaf)} keys", where="tunewise explain",
                          fix="choose one: " + ", ".join(k.key for k in leaf))
    names = list(by_path) + sorted({k.key.rsplit(".", 1)[-1] for k in keys})
    close = difflib.get_close_matches(q, names, n=3, cutoff=0.6)
    raise ConfigError(f"no config key '{query}'", where="tunewise explain",
                      fix=(f"did you mean '{close[0]}'?" if close else "run `tunewise explain` to list every key"))


def type_info(k: Key) -> dict:
    """Type, allowed values and bounds of a field, for help and for the web UI."""
    ann = k.annotation
    info: dict = {}
    lits = [a for a in _flatten(ann) if typing.get_origin(a) is typing.Literal]
    if lits:
        info["allowed"] = [v for lit in lits for v in typing.get_args(lit)]
        if bool in _flatten(ann):  # e.g. "auto" | bool: the booleans are choices too
            info["allowed"] += [True, False]
    info["type"] = _type_name(ann)
    for m in k.field.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            v = getattr(m, attr, None)
            if v is not None:
                info[attr] = v
    return info


def _flatten(ann) -> list:
    args = typing.get_args(ann)
    if typing.get_origin(ann) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [x for a in args for x in _flatten(a)]
    return [ann]


def _type_name(ann) -> str:
    if typing.get_origin(ann) is typing.Literal:
        return "choice"
    s = str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "")
    for mod in ("tunewise.config.schema.", "tunewise.data.clean."):
        s = s.replace(mod, "")
    return s


def _default(k: Key):
    f = k.field
    if f.default_factory is not None:
        v = f.default_factory()
        return v.model_dump(mode="json") if isinstance(v, BaseModel) else v
    return f.default


def entry(k: Key) -> dict:
    """The machine-readable explanation of one key (the web UI consumes this shape)."""
    kb = knowledge().get(k.kb_key, {})
    en, zh = kb.get("en", {}), kb.get("zh", {})
    ti = type_info(k)
    out = {"description": k.description, "description_zh": zh.get("description"), "default": _default(k), "type": ti["type"]}
    if "allowed" in ti:
        out["allowed"] = ti["allowed"]
    for b in ("ge", "gt", "le", "lt"):
        if b in ti:
            out[b] = ti[b]
    for part in ("too_high", "too_low", "typical"):
        out[part] = {"en": en.get(part), "zh": zh.get(part)}
    out["interacts"] = list(kb.get("interacts", []))
    return out


def explain_json(key: str | None = None) -> dict:
    keys = [find_key(key)] if key else list(schema_keys())
    return {k.key: entry(k) for k in keys}


_L = {"en": {"does": "What it does", "default": "Default", "allowed": "Allowed", "range": "Range", "high": "Too high",
             "low": "Too low", "typical": "Typical start", "interacts": "Interacts with", "more": "`tunewise explain KEY` for details"},
      "zh": {"does": "作用", "default": "默认值", "allowed": "可选值", "range": "范围", "high": "过大时", "low": "过小时",
             "typical": "常用起点", "interacts": "相互影响", "more": "用 `tunewise explain 键名` 查看详细说明"}}


def format_key(key: str, lang: str = "en") -> str:
    k = find_key(key)
    e = entry(k)
    L = _L[lang]
    desc = e["description"] if lang == "en" else (e["description_zh"] or e["description"])
    lines = [k.key, f"  {L['does']}: {desc}", f"  {L['default']}: {e['default']!r}"]
    if "allowed" in e:
        lines.append(f"  {L['allowed']}: {', '.join(str(v).lower() if isinstance(v, bool) else str(v) for v in e['allowed'])}")
    bounds = [f"{sym} {e[b]}" for b, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if b in e]
    if bounds:
        lines.append(f"  {L['range']}: {', '.join(bounds)}")
    for part, label in (("too_high", "high"), ("too_low", "low"), ("typical", "typical")):
        text = e[part][lang] or e[part]["en"]
        if text:
            lines.append(f"  {L[label]}: {text}")
    if e["interacts"]:
        lines.append(f"  {L['interacts']}: {', '.join(e['interacts'])}")
    return "\n".join(lines)


def format_overview(lang: str = "en") -> str:
    """Section by section, one line per key."""
    lines, section = [], None
    for k in schema_keys():
        if k.section != section:
            section = k.section
            f = Config.model_fields.get(section)
            lines.append(f"\n[{section}] {f.description if f else ''}")
        kb = knowledge().get(k.kb_key, {})
        desc = k.description if lang == "en" else (kb.get("zh", {}).get("description") or k.description)
        lines.append(f"  {k.key:<38} {desc}")
    lines.append("\n" + _L[lang]["more"])
    return "\n".join(lines).lstrip("\n")
