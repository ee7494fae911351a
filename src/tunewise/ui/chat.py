"""Chat on the board: the run's model with its training template (infer.generate), cached per run."""

from __future__ import annotations

import threading
from pathlib import Path

_CACHE: dict[tuple, object] = {}
_LOCK = threading.Lock()


def _result_stamp(run: Path) -> float:
    """Changes when the run's result is rewritten (retrained), so a stale model is never reused."""
    for name in ("adapter", "model"):
        p = run / name
        if p.exists():
            return p.stat().st_mtime
    return 0.0


def loaded(run: str | Path, tuned: bool):
    from tunewise.infer.generate import load_run_model

    run = Path(run).resolve()
    key = (str(run), tuned, _result_stamp(run))
    with _LOCK:
        if key not in _CACHE:
            _CACHE.clear()  # one model at a time: the board runs on small machines
            _CACHE[key] = load_run_model(run, tuned=tuned)
        return _CACHE[key]


def text_of(content) -> str:
    """A chat message's text, whether gradio hands it over as a string or as a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return "".join(text_of(c) for c in content)
    return "" if content is None else str(content)


def reply(run: str | Path, history: list[dict], message: str, *, tuned: bool = True, system: str = "",
          temperature: float = 0.7, top_k: int = 50, top_p: float = 0.9, repetition_penalty: float = 1.1,
          max_new_tokens: int = 128, seed: int | None = None) -> dict:
    """One answer to `message` after `history` (role/content dicts), as `tunewise chat` would give it."""
    from tunewise.infer.generate import generate

    lm = loaded(run, tuned)
    conv = [{"role": "system", "content": system}] if system.strip() else []
    conv += [{"role": m["role"], "content": text_of(m.get("content"))} for m in history
             if m.get("role") in ("user", "assistant")]
    conv.append({"role": "user", "content": message})
    return generate(lm, [conv], max_new_tokens=int(max_new_tokens), temperature=float(temperature), top_k=int(top_k),
                    top_p=float(top_p), repetition_penalty=float(repetition_penalty), batch_size=1, seed=seed)[0]
