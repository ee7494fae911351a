"""Chat with a run: `tunewise chat RUN` (interactive or one-shot) and `Run.chat`, both through `ChatSession`."""

from __future__ import annotations

import sys
from pathlib import Path

from tunewise.infer.generate import LoadedModel, generate, load_run_model
from tunewise.runs import read_run_config

SAMPLING = ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens")


class ChatSession:
    """A conversation with a run's model, in its template with its stop tokens; sampling defaults to the run's
    generation section. `lm`: an already loaded model of this run to reuse."""

    def __init__(self, run: str | Path, *, base: bool = False, checkpoint: str | Path | None = None,
                 system: str | None = None, lm: LoadedModel | None = None, **sampling):
        from tunewise.errors import ConfigError

        unknown = set(sampling) - set(SAMPLING)
        if unknown:
            raise ConfigError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}", where="chat",
                              fix=f"use {', '.join(SAMPLING)}")
        g = read_run_config(run).generation
        self.params = {k: getattr(g, k) if sampling.get(k) is None else sampling[k] for k in SAMPLING}
        self.lm = lm or load_run_model(run, tuned=not base, checkpoint=checkpoint)
        self.system = system
        self.history: list[dict] = []

    def reset(self) -> None:
        self.history = []

    def ask(self, text: str, *, stream: bool = False, seed: int | None = None) -> dict:
        """Answer `text` after the history so far; returns generate()'s result (text, stopped, ...)."""
        streamer = None
        if stream:
            from transformers import TextStreamer

            streamer = TextStreamer(self.lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
        system = [{"role": "system", "content": self.system}] if self.system else []
        self.history.append({"role": "user", "content": text})
        res = generate(self.lm, [system + self.history], streamer=streamer, batch_size=1, seed=seed, **self.params)[0]
        self.history.append({"role": "assistant", "content": res["text"]})
        if res["hit_max_new_tokens"]:
            print(f"[tunewise] the answer hit max_new_tokens={self.params['max_new_tokens']} without stopping",
                  file=sys.stderr)
        return res
