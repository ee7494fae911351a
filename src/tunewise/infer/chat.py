"""Chat with a run: `tunewise chat RUN` (interactive or one-shot) and `Run.chat`, both through `ChatSession`."""

from __future__ import annotations

import sys
from pathlib import Path

from tunewise.infer.generate import LoadedModel, generate, load_run_model
from tunewise.runs import read_run_config

SAMPLING = ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens")


def read_tools_file(path: str | Path) -> list[dict]:
    """`--tools FILE`: a JSON list of tools (OpenAI's {"type": "function", "function": {...}} or bare
    {"name", "description", "parameters"}), or a JSON object with a "tools" list."""
    import json

    from tunewise.errors import DataError
    from tunewise.templates.tools import ToolError, normalize_tools

    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"no tools file at {p}", fix="pass --tools with a JSON file listing the functions") from None
    except json.JSONDecodeError as e:
        raise DataError(f"the tools file is not valid JSON: {e.msg}", where=f"{p}:{e.lineno}",
                        fix='write a JSON list such as [{"name": "get_weather", "description": "...", '
                        '"parameters": {"type": "object", "properties": {...}}}]') from None
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    try:
        tools = normalize_tools(data, "tools")
    except ToolError as e:
        raise DataError(f"the tools file has an unusable tool: {e.reason}", where=f"{p}: {e.field}",
                        fix="each tool needs a name (letters, digits, _ - .) and a JSON-schema `parameters` object") from None
    if not tools:
        raise DataError("the tools file lists no tools", where=str(p), fix="list at least one function")
    return tools


class ChatSession:
    """A conversation with a run's model, in its template with its stop tokens; sampling defaults to the run's
    generation section. `lm`: an already loaded model of this run to reuse."""

    def __init__(self, run: str | Path, *, base: bool = False, checkpoint: str | Path | None = None,
                 system: str | None = None, lm: LoadedModel | None = None, tools: list[dict] | None = None, **sampling):
        from tunewise.errors import ConfigError

        unknown = set(sampling) - set(SAMPLING)
        if unknown:
            raise ConfigError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}", where="chat",
                              fix=f"use {', '.join(SAMPLING)}")
        g = read_run_config(run).generation
        self.params = {k: getattr(g, k) if sampling.get(k) is None else sampling[k] for k in SAMPLING}
        self.lm = lm or load_run_model(run, tuned=not base, checkpoint=checkpoint)
        self.system = system
        self.tools = tools or None
        self.history: list[dict] = []

    def reset(self) -> None:
        self.history = []

    def ask(self, text: str, *, stream: bool = False, seed: int | None = None) -> dict:
        """Answer `text` after the history so far; returns generate()'s result (text, stopped, ...)."""
        streamer = None
        if stream:
            from transformers import TextStreamer

            streamer = TextStreamer(self.lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.history.append({"role": "user", "content": text})
        return self._answer(streamer, seed)

    def tool_result(self, content: str, *, name: str | None = None, stream: bool = False, seed: int | None = None,
                    more: bool = False) -> dict | None:
        """Give the model a tool's result for its last call(s); with more=False (the last result of a turn's calls)
        the model answers it: generate()'s result, like ask()."""
        msg = {"role": "tool", "content": content}
        if name:
            msg["name"] = name
        self.history.append(msg)
        if more:
            return None
        streamer = None
        if stream:
            from transformers import TextStreamer

            streamer = TextStreamer(self.lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
        return self._answer(streamer, seed)

    def _answer(self, streamer, seed) -> dict:
        from tunewise.templates.tools import parse_answer

        system = [{"role": "system", "content": self.system}] if self.system else []
        res = generate(self.lm, [system + self.history], streamer=streamer, batch_size=1, seed=seed,
                       tools=[self.tools], **self.params)[0]
        turn = {"role": "assistant", "content": res["text"]}
        if self.tools:
            # the model's calls, read by the parser eval and export verification use; kept as calls in the history
            # so the next turn renders them exactly as training did
            parsed = parse_answer(res["text"])
            res["calls"], res["invalid_calls"], res["call_errors"] = parsed.calls, parsed.invalid, parsed.errors
            if parsed.calls:
                turn = {"role": "assistant", "content": parsed.content, "tool_calls": [
                    {"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in parsed.calls]}
        self.history.append(turn)
        if res["hit_max_new_tokens"]:
            print(f"[tunewise] the answer hit max_new_tokens={self.params['max_new_tokens']} without stopping",
                  file=sys.stderr)
        return res
