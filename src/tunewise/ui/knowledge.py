"""What the board says about each parameter: explanations, the advisor's recommendations and lint.

The source of truth is the advise stage (`tunewise explain --json`, `tunewise advise CONFIG --json`).
When that stage is not installed, explanations fall back to the schema's own Field descriptions (the
same text `--help` shows) and advice is reported as unavailable, never invented.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel


def schema_entries() -> dict[str, dict]:
    """Every leaf key of the config schema: dotted key -> {description, default, type/allowed}."""
    from tunewise.config.schema import Config

    out: dict[str, dict] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            key = f"{prefix}{name}"
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, key + ".")
                continue
            default = f.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            entry: dict[str, Any] = {"description": f.description or "", "default": default}
            literal = _literal_values(ann)
            if literal:
                entry["allowed"] = literal
            else:
                entry["type"] = _type_name(ann)
            out[key] = entry

    walk(Config, "")
    return out


def _literal_values(ann) -> list | None:
    from typing import Literal

    if get_origin(ann) is Literal:
        return list(get_args(ann))
    for a in get_args(ann):
        vals = _literal_values(a)
        if vals:
            return vals
    return None


def _type_name(ann) -> str:
    if isinstance(ann, type):
        return ann.__name__
    return str(ann).replace("typing.", "")


def advise_available() -> bool:
    """True when the advise stage's commands (explain / advise / lint) are installed."""
    try:
        return importlib.util.find_spec("tunewise.advise.cli") is not None
    except ModuleNotFoundError:
        return False


def _cli_json(args: list[str], timeout: float = 120) -> Any | None:
    """Run `python -m tunewise ARGS` and parse its stdout as JSON; None when the command fails."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    try:
        p = subprocess.run([sys.executable, "-m", "tunewise", *args], capture_output=True, text=True,
                           timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError:
        return None


@lru_cache(maxsize=4)
def explanations(lang: str = "en") -> tuple[dict[str, dict], str]:
    """(key -> explanation entry, source). Source is 'advisor' or 'schema'."""
    base = schema_entries()
    got = None
    try:  # the advise stage's own function, in-process (fast); else its CLI
        from tunewise.advise.explain import explain_json

        got = explain_json()
    except Exception:  # absent or half-written: fall back, never break the board
        if advise_available():
            got = _cli_json(["explain", "--json"] + (["--lang", "zh"] if lang == "zh" else []))
    if isinstance(got, dict) and got:
        merged = {k: {**base.get(k, {}), **v} for k, v in got.items() if isinstance(v, dict)}
        for k, v in base.items():
            merged.setdefault(k, v)
        return merged, "advisor"
    return base, "schema"


def describe(entry: dict, lang: str) -> str:
    """One explanation line for a parameter in the board's language."""
    text = entry.get("description_zh") if lang == "zh" else None
    text = text or entry.get("description") or ""
    extras = []
    for k, label_en, label_zh in (("typical", "typical", "常用"), ("too_high", "too high", "过高"),
                                  ("too_low", "too low", "过低")):
        v = entry.get(k)
        if isinstance(v, dict):
            v = v.get(lang) or v.get("en")
        if v not in (None, ""):
            extras.append(f"{label_zh if lang == 'zh' else label_en}: {v}")
    return " | ".join([text.strip()] + [e.rstrip(".。") for e in extras])


def advise(config_path: str | Path, cfg=None) -> dict | None:
    """The advisor's JSON for a config in both languages, {"en": {...}, "zh": {...}}.

    In-process through tunewise.advise when it is installed, else through `tunewise advise --json`;
    None when there is no advisor, {"error": text} when the advisor could not judge this config.
    """
    try:
        from tunewise.advise.advise import advise_config, to_json
        from tunewise.hardware import detect_hardware
    except ImportError:
        if not advise_available():
            return None
        out = {lang: _cli_json(["advise", str(config_path), "--json", "--lang", lang], timeout=300) for lang in ("en", "zh")}
        return out if all(isinstance(v, dict) for v in out.values()) else {"error": "`tunewise advise` failed on this config"}
    try:
        if cfg is None:
            from tunewise.config import load_config

            cfg = load_config(config_path)
        result = advise_config(cfg, detect_hardware())
        return {"en": to_json(result, "en"), "zh": to_json(result, "zh")}
    except Exception as e:  # shown to the person, the board keeps working
        from tunewise.errors import TunewiseError

        return {"error": e.render() if isinstance(e, TunewiseError) else f"{type(e).__name__}: {e}"}


def pick(advice: dict | None, lang: str) -> dict | None:
    """The advisor's JSON in one language (None without usable advice)."""
    if not advice or "error" in advice:
        return None
    return advice.get(lang) or advice.get("en")


def lint_items(advice: dict | None) -> list[dict]:
    """Lint warnings as [{code, message, fix, severity}] (empty without an advisor)."""
    if not advice:
        return []
    items = advice.get("lint") or []
    return [i for i in items if isinstance(i, dict)]


def recommendation(advice: dict | None, key: str, lang: str = "en") -> tuple[Any, str] | None:
    """(recommended value, reason) for a dotted key, or None."""
    if not advice:
        return None
    recs = advice.get("recommendations") or {}
    if key not in recs:
        return None
    reason = (advice.get("reasons") or {}).get(key, "")
    if isinstance(reason, dict):
        reason = reason.get(lang) or reason.get("en", "")
    return recs[key], str(reason)
