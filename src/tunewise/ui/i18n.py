"""Board labels in English and Chinese (the strings live in labels.json, not in code)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

LANGS = {"English": "en", "中文": "zh"}


@lru_cache(maxsize=1)
def _labels() -> dict:
    return json.loads((Path(__file__).parent / "labels.json").read_text(encoding="utf-8"))


def t(key: str, lang: str) -> str:
    entry = _labels()[key]
    return entry.get(lang) or entry["en"]


def param_label(key: str, lang: str) -> str:
    names = _labels()["param_names"].get(key)
    if not names:
        return key
    return f"{names[1] if lang == 'zh' else names[0]} · {key}"


def lang_code(choice: str | None) -> str:
    return LANGS.get(choice or "", choice if choice in ("en", "zh") else "en")
