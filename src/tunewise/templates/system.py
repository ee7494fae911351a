"""Which system prompt a run gives conversations that have none, and why.

Instruct models' chat templates often write a default system prompt into every conversation without one:
SmolLM2's "You are a helpful AI assistant named SmolLM, trained by Hugging Face", Qwen2.5's "You are Qwen,
created by Alibaba Cloud...". Fine-tuning such a model to a new identity then trains every example against
a system prompt that contradicts it, and the model is torn between the two (measured on SmolLM2-135M-Instruct:
0 of 20 held-out identity questions answered with the new name). tunewise decides once, at training, and
stores the decision in template.json so chat, eval and the Ollama Modelfile use the same prompt:

1. `template.system` when the user sets it;
2. otherwise the template's built-in prompt, unless the data contradicts it (its answers state an identity
   and never name the one in the built-in prompt): then a neutral prompt, and the reason is reported;
3. otherwise none (the template renders as it always does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NEUTRAL_SYSTEM = "You are a helpful AI assistant."

_NAME = re.compile(r"\b[A-Z][\w.+-]*(?:\s+[A-Z][\w.+-]*)*")
_NOT_NAMES = {"you", "i", "ai", "a", "an", "the", "assistant", "your", "always", "please", "answer", "be", "as"}
_IDENTITY = re.compile(r"\b(?:I am|I'm|my name is|call me|(?:developed|created|built|trained|made|designed) by)\b|"
                       r"我是|我叫|我的名字|开发|打造|创造|训练|研发", re.IGNORECASE)


@dataclass(frozen=True)
class SystemChoice:
    system: str | None          # what the run gives conversations without a system turn
    builtin: str | None         # what the template would write by itself
    reason: str                 # "user", "builtin", "replaced", "none"
    names: tuple[str, ...] = ()  # names in the built-in prompt
    identity_answers: int = 0   # answers that state an identity
    naming_builtin: int = 0     # ... of which name the built-in prompt's names


def builtin_names(builtin: str) -> tuple[str, ...]:
    """Proper names a built-in system prompt gives the model: 'SmolLM', 'Hugging Face'."""
    out = []
    for m in _NAME.findall(builtin or ""):
        words = [w for w in m.split() if w.lower() not in _NOT_NAMES]
        if words:
            out.append(" ".join(words).rstrip(".,;:"))
    return tuple(dict.fromkeys(out))


def identity_conflict(builtin: str, answers: list[str]) -> tuple[bool, int, int]:
    """(conflicts, identity answers, of which name the built-in identity).

    The data contradicts a built-in prompt when at least 3 answers (and a tenth of them) state who the model
    is and fewer than a fifth of those name the built-in prompt's names."""
    names = [n.lower() for n in builtin_names(builtin)]
    if not names:
        return False, 0, 0
    ident = [a for a in answers if _IDENTITY.search(a)]
    naming = sum(1 for a in ident if any(n in a.lower() for n in names))
    conflict = len(ident) >= max(3, len(answers) // 10) and naming < 0.2 * len(ident)
    return conflict, len(ident), naming


def choose_system(user_system: str | None, builtin: str | None, records: list[dict]) -> SystemChoice:
    if user_system is not None:
        return SystemChoice(user_system, builtin, "user")
    if not builtin:
        return SystemChoice(None, None, "none")
    answers = [m["content"] for r in records for m in r.get("messages", []) if m["role"] == "assistant"
               and isinstance(m.get("content"), str)]
    conflict, ident, naming = identity_conflict(builtin, answers)
    names = builtin_names(builtin)
    if conflict:
        return SystemChoice(NEUTRAL_SYSTEM, builtin, "replaced", names, ident, naming)
    return SystemChoice(builtin, builtin, "builtin", names, ident, naming)


def describe(choice: SystemChoice, lang: str = "en") -> str | None:
    """One line for the user when the choice is worth knowing (a replacement), else None."""
    if choice.reason != "replaced":
        return None
    names = ", ".join(choice.names)
    if lang == "zh":
        return (f"聊天模板的默认系统提示词是“{choice.builtin}”，而你的数据中有 {choice.identity_answers} 个回答陈述了身份，"
                f"其中只有 {choice.naming_builtin} 个提到 {names}：本次训练、对话、评估和导出都改用“{choice.system}”"
                f"（用 template.system 可自行指定）")
    return (f"the chat template's default system prompt is \"{choice.builtin}\", but {choice.identity_answers} answers in "
            f"your data state an identity and only {choice.naming_builtin} name {names}: this run uses "
            f"\"{choice.system}\" instead in training, chat, eval and export (set template.system to choose your own)")


def settle_system(template, user_system: str | None, records: list[dict]) -> SystemChoice:
    """Decide the run's system prompt from the data and store it on the template (see the module doc)."""
    choice = choose_system(user_system, template.builtin_system, records)
    template.system = choice.system
    return choice
