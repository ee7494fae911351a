"""Tool-calling scores: does the model call the right function with the right arguments, and only when it should?

Every assistant turn of a held-out record with tools is a test: its prompt is the conversation before it (tool
results included), its reference either calls (a call turn) or text (a turn that needs no call, such as a greeting
or the answer after a tool's result). Answers are read by the same parser chat and export verification use
(templates/tools.parse_answer), never by text overlap:

- tool_call_json_valid: of the call blocks the model wrote, the share that parse (JSON object, name, arguments);
- tool_call_rate: call turns where the model made at least one valid call;
- tool_name_accuracy: call turns whose called names (a multiset) equal the reference's;
- tool_call_exact_match: call turns whose calls (names and arguments, in any order) equal the reference's;
- tool_argument_match: of the reference's arguments, the share the model gave the same value (numbers compared
  as numbers), matched call by call on the function name;
- tool_no_call_accuracy: turns that need no call where the model made none;
- tool_no_stop_rate: tool turns whose answer ran to max_new_tokens.
"""

from __future__ import annotations

from collections import Counter

from tunewise.templates.tools import call_name_args, parse_answer

ROWS = ["tool_call_json_valid", "tool_call_rate", "tool_name_accuracy", "tool_call_exact_match", "tool_argument_match",
        "tool_no_call_accuracy", "tool_no_stop_rate"]


def tool_turns(records: list[dict]) -> list[dict]:
    """One test per assistant turn of each record with tools: {"messages" (the prompt), "tools", "reference"
    (the assistant turn), "record" (its position in `records`), "last" (the record's last turn)}."""
    out = []
    for pos, r in enumerate(records):
        tools = r.get("tools")
        if not tools:
            continue
        msgs = r["messages"]
        for i, m in enumerate(msgs):
            if m["role"] == "assistant" and any(x["role"] in ("user", "tool") for x in msgs[:i]):
                out.append({"messages": msgs[:i], "tools": tools, "reference": m, "record": pos,
                            "last": i == len(msgs) - 1})
    return out


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _calls_equal(pred: list[dict], ref: list[dict]) -> bool:
    left = list(pred)
    for r in ref:
        hit = next((p for p in left if p["name"] == r["name"] and _same(p["arguments"], r["arguments"])), None)
        if hit is None:
            return False
        left.remove(hit)
    return not left


def _argument_hits(pred: list[dict], ref: list[dict]) -> tuple[int, int]:
    left = list(pred)
    hits = total = 0
    for r in ref:
        total += len(r["arguments"])
        cands = [p for p in left if p["name"] == r["name"]]
        if not cands:
            continue
        best = max(cands, key=lambda p: sum(_same(p["arguments"].get(k), v) for k, v in r["arguments"].items()))
        hits += sum(_same(best["arguments"].get(k), v) for k, v in r["arguments"].items() if k in best["arguments"])
        left.remove(best)
    return hits, total


def reference_calls(turn: dict) -> list[dict]:
    out = []
    for c in turn.get("tool_calls") or []:
        name, args = call_name_args(c)
        out.append({"name": name, "arguments": args})
    return out


def score_tool_answers(items: list[dict]) -> dict:
    """items: {"reference_calls": [{"name", "arguments"}], "prediction": text, "hit_max_new_tokens": bool}.
    Returns the rates above (None where no turn of that kind was tested) and the counts behind them."""
    calls = [it for it in items if it["reference_calls"]]
    none = [it for it in items if not it["reference_calls"]]
    attempted = valid = named = exact = with_call = arg_hits = arg_total = no_call_ok = 0
    for it in items:
        p = parse_answer(it["prediction"])
        it["parsed_calls"], it["invalid_calls"] = p.calls, p.invalid
        attempted += p.attempted
        valid += len(p.calls)
        ref = it["reference_calls"]
        if ref:
            with_call += bool(p.calls)
            named += Counter(c["name"] for c in p.calls) == Counter(c["name"] for c in ref)
            ok = _calls_equal(p.calls, ref)
            exact += ok
            h, t = _argument_hits(p.calls, ref)
            arg_hits, arg_total = arg_hits + h, arg_total + t
            it["call_correct"] = ok
        else:
            no_call_ok += p.attempted == 0
            it["call_correct"] = p.attempted == 0

    def rate(n, d):
        return n / d if d else None

    return {"tool_call_json_valid": rate(valid, attempted), "tool_call_rate": rate(with_call, len(calls)),
            "tool_name_accuracy": rate(named, len(calls)), "tool_call_exact_match": rate(exact, len(calls)),
            "tool_argument_match": rate(arg_hits, arg_total), "tool_no_call_accuracy": rate(no_call_ok, len(none)),
            "tool_no_stop_rate": rate(sum(bool(it["hit_max_new_tokens"]) for it in items), len(items)),
            "tool_call_turns": len(calls), "tool_no_call_turns": len(none)}


def evaluate_tools(lm, records: list[dict], *, max_new_tokens: int, batch_size: int) -> tuple[dict, list[dict]]:
    """Generate an answer for every tool turn of `records` and score it: (scores, items)."""
    from tunewise.infer.generate import generate

    turns = tool_turns(records)
    if not turns:
        return {}, []
    gens = generate(lm, [t["messages"] for t in turns], tools=[t["tools"] for t in turns],
                    max_new_tokens=max_new_tokens, batch_size=batch_size)
    items = [{"prompt": next(m["content"] for m in reversed(t["messages"]) if m["role"] in ("user", "tool")),
              "reference": t["reference"].get("content") or "", "reference_calls": reference_calls(t["reference"]),
              "prediction": g["text"], "hit_max_new_tokens": g["hit_max_new_tokens"], "num_new_tokens": g["num_new_tokens"],
              "record": t["record"], "last": t["last"]} for t, g in zip(turns, gens)]
    return score_tool_answers(items), items
