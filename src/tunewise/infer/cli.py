"""`tunewise chat RUN`: one prompt, or an interactive session in the terminal."""

from __future__ import annotations

import sys

from tunewise.infer.chat import SAMPLING, ChatSession, read_tools_file


def chat_command(a) -> int:
    from tunewise.api import Run

    sampling = {k: getattr(a, k) for k in SAMPLING}
    tools = read_tools_file(a.tools) if getattr(a, "tools", None) else None
    if a.prompt and not tools:
        Run(a.run).chat(a.prompt, system=a.system, base=a.base, checkpoint=a.checkpoint, stream=True, seed=a.seed,
                        **sampling)
        return 0
    session = ChatSession(a.run, base=a.base, checkpoint=a.checkpoint, system=a.system, tools=tools, **sampling)
    if a.prompt:  # one-shot with tools: the answer and its calls, no tool results asked for
        res = session.ask(a.prompt, seed=a.seed)
        show_answer(res)
        return 0
    print(f"Chatting with {a.run} ({session.lm.label}, template {session.lm.template.name}"
          + (f", tools: {', '.join(t['function']['name'] for t in tools)}" if tools else "")
          + "). Empty line or /exit quits, /reset clears.", file=sys.stderr)
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
        if not tools:
            print("model> ", end="", flush=True)
            session.ask(text, stream=True, seed=a.seed)
            continue
        res = session.ask(text, seed=a.seed)
        while show_answer(res):  # the model called tools: ask for each result, then let it go on
            calls = res["calls"]
            for i, c in enumerate(calls):
                try:
                    result = input(f"result of {c['name']}> ")
                except EOFError:
                    return 0
                res = session.tool_result(result, name=c["name"], more=i < len(calls) - 1, seed=a.seed)
    return 0


def show_answer(res: dict) -> bool:
    """Print an answer with tools: its text and each call parsed (name and arguments), or why a call did not
    parse. True when the model made calls (their results are wanted)."""
    import json

    calls = res.get("calls") or []
    text = res["text"] if not calls else ""
    from tunewise.templates.tools import parse_answer

    if calls:
        text = parse_answer(res["text"]).content
    if text:
        print(f"model> {text}")
    for c in calls:
        print(f"call> {c['name']}({json.dumps(c['arguments'], ensure_ascii=False)})")
    for err in res.get("call_errors") or []:
        print(f"[tunewise] a call the model wrote is not valid and was not run: {err}", file=sys.stderr)
    return bool(calls)
