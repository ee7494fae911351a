"""`tunewise chat RUN`: interactive or one-shot chat with the run's template and sampling settings."""

from __future__ import annotations

import sys

from tunewise.infer.generate import generate, load_run_model
from tunewise.runs import read_run_config


def chat_command(a) -> int:
    from transformers import TextStreamer

    cfg = read_run_config(a.run)
    g = cfg.generation
    params = dict(
        temperature=g.temperature if a.temperature is None else a.temperature,
        top_k=g.top_k if a.top_k is None else a.top_k,
        top_p=g.top_p if a.top_p is None else a.top_p,
        repetition_penalty=g.repetition_penalty if a.repetition_penalty is None else a.repetition_penalty,
        max_new_tokens=g.max_new_tokens if a.max_new_tokens is None else a.max_new_tokens,
    )
    lm = load_run_model(a.run, tuned=not a.base, checkpoint=a.checkpoint)
    streamer = TextStreamer(lm.tokenizer, skip_prompt=True, skip_special_tokens=True)
    history: list[dict] = [{"role": "system", "content": a.system}] if a.system else []

    def answer(text: str) -> str:
        history.append({"role": "user", "content": text})
        res = generate(lm, [history], streamer=streamer, batch_size=1, seed=a.seed, **params)[0]
        history.append({"role": "assistant", "content": res["text"]})
        if res["hit_max_new_tokens"]:
            print(f"[tunewise] the answer hit max_new_tokens={params['max_new_tokens']} without stopping", file=sys.stderr)
        return res["text"]

    if a.prompt:
        answer(a.prompt)
        return 0
    print(f"Chatting with {a.run} ({lm.label}, template {lm.template.name}). Empty line or /exit quits, /reset clears.",
          file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if text in ("", "/exit", "/quit"):
            break
        if text == "/reset":
            del history[1 if a.system else 0:]
            continue
        print("model> ", end="", flush=True)
        answer(text)
    return 0
