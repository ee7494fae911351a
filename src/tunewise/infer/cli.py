"""`tunewise chat RUN`: one prompt, or an interactive session in the terminal."""

from __future__ import annotations

import sys

from tunewise.infer.chat import SAMPLING, ChatSession


def chat_command(a) -> int:
    from tunewise.api import Run

    sampling = {k: getattr(a, k) for k in SAMPLING}
    if a.prompt:
        Run(a.run).chat(a.prompt, system=a.system, base=a.base, checkpoint=a.checkpoint, stream=True, seed=a.seed,
                        **sampling)
        return 0
    session = ChatSession(a.run, base=a.base, checkpoint=a.checkpoint, system=a.system, **sampling)
    print(f"Chatting with {a.run} ({session.lm.label}, template {session.lm.template.name}). Empty line or /exit quits, "
          "/reset clears.", file=sys.stderr)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if text in ("", "/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            continue
        print("model> ", end="", flush=True)
        session.ask(text, stream=True, seed=a.seed)
    return 0
