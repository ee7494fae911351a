"""`tunewise data prepare` keeps giving the outputs it gave before the data stage was made parallel (#26 item 4).

The sources are generated here, deterministically: a CSV of English and Chinese question/answer rows with exact
repeats, near repeats (one word or one character changed), markup, AI boilerplate, empty, too short and too long
answers, full-width letters, invisible characters, emoji and accented letters (1- to 4-byte UTF-8 in the MinHash
shingles); a JSONL of conversations with system prompts, several turns and tool calls (some repeated); and a
validation file with near copies of training rows (the leakage check).

GOLDEN holds what the code at the start of that work (commit 7589cf2) wrote for them: counts that a person can
read, and a sha256 of each output file (train.jsonl, val.jsonl, dropped.jsonl, stats.json with the token stats),
with the temporary folder's path replaced by `<dir>`. Every kept or dropped record, its order, its drop reason
and the split must match byte for byte, with any number of workers.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from conftest import write_config
from tunewise.config import load_config
from tunewise.samples.tools import tool_records

EN_SYLL = ["ka", "lo", "mi", "ren", "tas", "vel", "or", "qui", "ston", "bra", "el", "dun", "fi", "gor", "hap", "jes"]
ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方"
ODD = ["ＡＢＣ full-width", "zero\u200bwidth", "café naïve über", "emoji 🙂🚀 here", "tabs\tand  spaces", "line\r\nbreak",
       "&amp; entity", "<b>bold</b> markup", "<p>para</p><br>next", "Ω≈ç√∫ symbols", "１２３ digits", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math"]


def _sources(folder: Path, rows: int = 2400, seed: int = 7) -> tuple[Path, Path, Path]:
    rng = random.Random(seed)
    en = sorted({"".join(rng.choice(EN_SYLL) for _ in range(rng.randint(1, 3))) for _ in range(600)})
    zh = sorted({rng.choice(ZH_CHARS) + rng.choice(ZH_CHARS) for _ in range(500)})
    recent: list[tuple[str, str]] = []
    out = []
    for n in range(1, rows + 1):
        roll = rng.random()
        if roll < 0.06 and recent:
            q, a = rng.choice(recent)
        elif roll < 0.12 and recent:
            q, a = rng.choice(recent)
            words = a.split(" ")
            if len(words) > 8:
                words[rng.randrange(len(words))] = rng.choice(en)
                a = " ".join(words)
            else:
                a = a[:-2] + rng.choice(zh)
        elif roll < 0.14:
            q, a = "tell me", rng.choice(["As an AI language model, I cannot do that.", "作为一个 AI 语言模型，我无法回答。",
                                          "I'm sorry, but as an A.I. language-model I can't."])
        elif roll < 0.16:
            q, a = rng.choice(["", "short?"]), rng.choice(["", " ", "x", "ok"])
        elif roll < 0.18:
            q, a = "long one", " ".join(rng.choice(en) for _ in range(rng.randint(60, 120)))
        elif roll < 0.25:
            q = " ".join(rng.choice(en) for _ in range(4)) + "?"
            a = rng.choice(ODD) + " " + " ".join(rng.choice(en) for _ in range(rng.randint(1, 12))) + " " + rng.choice(ODD)
        elif roll < 0.6:
            q = " ".join(rng.choice(en) for _ in range(rng.randint(3, 8))) + ", please?"
            a = f'Step 1: open "{rng.choice(en)}".\nStep 2: ' + " ".join(rng.choice(en) for _ in range(rng.randint(8, 25)))
        else:
            q = "".join(rng.choice(zh) for _ in range(rng.randint(3, 7))) + "？"
            a = "第一步：打开“" + rng.choice(zh) + "”，" + "".join(rng.choice(zh) for _ in range(rng.randint(2, 20))) + "。"
        recent.append((q, a))
        if len(recent) > 300:
            recent.pop(rng.randrange(len(recent)))
        out.append((n, q, a))

    def cell(s: str) -> str:
        return '"' + s.replace('"', '""') + '"'

    csv = folder / "qa.csv"
    lines = [f"{n},{cell(q)},{cell(a)}" + (",an extra field" if n % 500 == 0 else "") + "\n" for n, q, a in out]
    csv.write_bytes(("id,question,answer\n" + "".join(lines)).encode("utf-8"))  # every 500th row is malformed
    chats = tool_records(40, seed=seed) + tool_records(10, seed=seed)  # the second ten repeat the first ten exactly
    for i in range(60):
        q, a = out[rng.randrange(len(out))][1:]
        chats.append({"messages": [{"role": "system", "content": "You answer briefly."},
                                   {"role": "user", "content": q or "?"}, {"role": "assistant", "content": a or "."},
                                   {"role": "user", "content": "and then?"},
                                   {"role": "assistant", "content": rng.choice(en) + " " + rng.choice(zh) * (i % 3 + 1)}]})
    jsonl = folder / "chats.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chats), encoding="utf-8")
    val = folder / "val.jsonl"
    picks = [out[rng.randrange(len(out))][1:] for _ in range(40)]  # near copies of training rows, and new rows
    picks += [(" ".join(rng.choice(en) for _ in range(6)) + "?", " ".join(rng.choice(en) for _ in range(20))) for _ in range(40)]
    val.write_text("".join(json.dumps({"instruction": q, "output": a + ("" if i % 3 else "!")}, ensure_ascii=False) + "\n"
                           for i, (q, a) in enumerate(picks)), encoding="utf-8")
    return csv, jsonl, val


CASES = {
    # the pool split into train and val (val_size), shuffled
    "split": lambda csv, jsonl, val: {"datasets": [{"path": str(csv), "columns": {"prompt": "question", "response": "answer"}},
                                                   str(jsonl)], "val_size": 0.1, "max_length": 128},
    # separate validation data (tagged split: val in dropped.jsonl) and the leakage check against training
    "val_file": lambda csv, jsonl, val: {"datasets": [{"path": str(csv), "columns": {"prompt": "question", "response": "answer"}}],
                                         "val_datasets": [str(val)], "max_length": 96, "shuffle": False},
}
CLEAN = {"min_chars": 2, "max_chars": 600}

GOLDEN = {
    'split': {
        'num_train': 1859,
        'num_val': 207,
        'num_dropped': 444,
        'dropped_by_step': {'length': 107, 'ai_phrases': 41, 'dedup_exact': 150, 'dedup_near': 105, 'empty': 37, 'read': 4},
        'supervised_tokens': 137253,
        'train.jsonl': '60ba7ea0e3267de8',
        'val.jsonl': 'e64651974ad2584f',
        'dropped.jsonl': '10328ae5c873eed7',
        'stats.json': 'c1ddc614b7defbac',
    },
    'val_file': {
        'num_train': 2015,
        'num_val': 40,
        'num_dropped': 425,
        'dropped_by_step': {'length': 55, 'ai_phrases': 42, 'dedup_exact': 150, 'dedup_near': 99, 'empty': 38, 'read': 4,
                            'leakage': 37},
        'supervised_tokens': 105358,
        'train.jsonl': 'b5cfbe5fed36c240',
        'val.jsonl': '71f014fbcb999032',
        'dropped.jsonl': '36b54aafdd944d7e',
        'stats.json': '90ed2111d4e204a5',
    },
}


def _digest(data: Path, folder: Path) -> dict:
    def text(name: str) -> str:
        return (data / name).read_text(encoding="utf-8").replace(str(folder), "<dir>")

    stats = json.loads(text("stats.json"))
    out = {"num_train": stats["num_train"], "num_val": stats["num_val"], "num_dropped": stats["num_dropped"],
           "dropped_by_step": stats["dropped_by_step"], "supervised_tokens": stats["tokens"]["train"]["supervised_tokens"]}
    out.update({name: hashlib.sha256(text(name).encode("utf-8")).hexdigest()[:16]
                for name in ("train.jsonl", "val.jsonl", "dropped.jsonl", "stats.json")})
    return out


def prepared_digest(tmp_path: Path, case: str, chunks: tuple[int, int] | None = None, **data) -> dict:
    """The digest of `data prepare` on the generated sources; `chunks`: records cleaned and tokenised together."""
    from tunewise.data.commands import prepare_command

    folder = tmp_path / case
    folder.mkdir(parents=True)
    csv, jsonl, val = _sources(folder)
    cfg = load_config(write_config(folder / "c.yaml", {
        "model": {"name_or_path": "tiny-llama"}, "train": {"seed": 11}, "run": {"root": str(folder / "runs"), "name": "g"},
        "data": {**CASES[case](csv, jsonl, val), "strict": False, "clean": CLEAN, **data}}))
    sizes = dict(zip(("chunk_size", "token_chunk"), chunks)) if chunks else {}
    return _digest(prepare_command(cfg, **sizes), folder)


@pytest.mark.parametrize("case", sorted(CASES))
def test_prepare_reproduces_the_frozen_outputs(tmp_path, tiny_model_dirs, case):
    assert prepared_digest(tmp_path, case) == GOLDEN[case]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_outputs_do_not_depend_on_the_number_of_workers(tmp_path, tiny_model_dirs, workers):
    """Small chunks, so the worker processes really start (the first chunks run in this process) and duplicates
    cross chunks and workers; data.num_workers 1 runs everything in this process."""
    for case in sorted(CASES):
        got = prepared_digest(tmp_path / str(workers), case, chunks=(97, 101), num_workers=workers)
        assert got == GOLDEN[case], case
