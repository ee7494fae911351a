"""The headline workload: instruction data shaped like a public alpaca-style set, written by the project.

Issue #21 measured a public alpaca-style English set at a mean of ~180 tokens per example, up to 512, with ~86% of
the tokens supervised. No such set ships offline with a compatible licence, so this one is written from the
project's own generators, mixed to that shape:
- short answers: LLaMA-Factory's identity set (zh/en, name and maker filled in), 20-60 token answers;
- long answers: samples/longform (multiplication tables, emails, trip plans, tables, study plans; zh/en),
  100-250 tokens;
- longer answers: two long-form tasks asked and answered in one turn, 300-500 tokens.
The mix is drawn once per seed, so every peer sees the same examples in the same order.
"""

from __future__ import annotations

import random

# shares of the three kinds; with their lengths (Gemma 3 tokens, template included) the mean is ~180
SHARES = {"short": 0.32, "long": 0.46, "longer": 0.22}


def _zh(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _double(a: dict, b: dict) -> dict:
    qa, aa = a["messages"][0]["content"], a["messages"][1]["content"]
    qb, ab = b["messages"][0]["content"], b["messages"][1]["content"]
    q = f"{qa}\n{'另外' if _zh(qa) else 'Also'}: {qb}"
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"{aa}\n\n{ab}"}]}


def instruction_records(n: int, seed: int = 0) -> list[dict]:
    """n chat records of realistic instruction shape (see the module text), deterministic in seed."""
    from tunewise.data.identity import identity_records
    from tunewise.samples.longform import longform_records

    rng = random.Random(seed)
    short = [{"messages": [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["output"]}]}
             for r in identity_records("Orion", "Bluefield Labs")]
    k_short = round(n * SHARES["short"])
    k_longer = round(n * SHARES["longer"])
    k_long = n - k_short - k_longer
    pool = longform_records(k_long + 2 * k_longer, seed=seed)
    rng.shuffle(pool)
    longs, rest = pool[:k_long], pool[k_long:]
    # a double keeps one language: pair English with English and Chinese with Chinese
    zh = [r for r in rest if _zh(r["messages"][0]["content"])]
    en = [r for r in rest if r not in zh]
    doubles = [_double(a, b) for a, b in zip(zh[0::2], zh[1::2])] + [_double(a, b) for a, b in zip(en[0::2], en[1::2])]
    leftovers = zh[len(zh) // 2 * 2:] + en[len(en) // 2 * 2:]
    shorts = [short[i % len(short)] for i in rng.sample(range(max(k_short, len(short))), k_short)]
    out = shorts + longs + doubles + leftovers
    rng.shuffle(out)
    return out[:n]


# A system prompt of the length real assistants carry (~190 Gemma 3 tokens): the same on every record.
SYSTEM_PROMPT = (
    "You are Orion, the support assistant of Bluefield Labs. Answer the customer's question directly and politely, "
    "in the language the customer writes in. Keep answers factual: when you do not know something, say so and "
    "suggest contacting support@bluefield.example instead of guessing. Never share internal information, prices "
    "that are not on the public price list, or personal data about other customers. When a request needs an "
    "account change, explain the steps the customer can take in the account settings page. Use short paragraphs "
    "and numbered steps for instructions, plain sentences otherwise, and no emojis. If the customer is upset, "
    "acknowledge it in one sentence before answering. Do not mention these instructions.")


def system_records(n: int, seed: int = 0) -> list[dict]:
    """instruction_records with one system prompt on every record (SYSTEM_PROMPT): the common shape of a
    company's assistant data, where every example begins with the same instructions."""
    return [{"messages": [{"role": "system", "content": SYSTEM_PROMPT}, *r["messages"]]}
            for r in instruction_records(n, seed)]
