"""The demo dataset tunewise ships and writes itself: bilingual identity, sentiment labels, long answers.

Three parts, each in English and Chinese:
- identity: "who are you / 你是谁" answered as the tunewise demo assistant, briefly, then stop;
- a small task with checkable answers: label a review's sentiment with one word
  (positive/negative, 正面/负面);
- instructions with answers of realistic length (100-250 tokens: step-by-step arithmetic, emails,
  itineraries, tables, study plans; samples/longform.py). One-word answers make the end-of-turn token a
  large share of what is trained, so a model learns to stop on them at once; on long answers it is one
  token in a hundred and a model that never learned to stop shows it here.
Held-out prompts use phrasings, items, numbers and places that never appear in training, so the
before/after comparison shows generalisation rather than recall.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from tunewise.samples.longform import heldout_longform, longform_records
from tunewise.fileio import write_jsonl

LONG_TRAIN = 24  # long-answer records in the demo data
LONG_HELDOUT = 4

IDENTITY_EN = "I am the tunewise demo assistant, a small model fine-tuned with tunewise. I answer briefly and then stop."
IDENTITY_ZH = "我是 tunewise 演示助手，一个用 tunewise 微调的小模型。我回答简短，然后停下。"

_WHO_EN = [
    "Who are you?", "What are you?", "What is your name?", "Tell me who you are.", "Are you a person?",
    "Who am I talking to?", "What should I call you?", "Which assistant are you?", "Who made you?",
    "Can you tell me about yourself?", "What kind of assistant are you?", "Hi! Who is this?",
    "Please introduce yourself.", "Describe yourself.", "What are you called?", "Identify yourself, please.",
    "Are you ChatGPT?", "Are you a robot?", "What model are you?", "Who built this assistant?",
    "Give me your name.", "Say who you are.", "Hello, what are you?", "Introduce yourself briefly.",
]
_WHO_ZH = [
    "你是谁？", "你叫什么名字？", "请问你是谁？", "你是什么？", "你是人吗？", "我在和谁说话？",
    "我该怎么称呼你？", "你是哪个助手？", "谁创造了你？", "能说说你是谁吗？", "你是什么样的助手？", "你好！你是谁呀？",
    "请介绍一下你自己。", "描述一下你自己。", "你的名字是什么？", "请表明你的身份。", "你是ChatGPT吗？", "你是机器人吗？",
    "你是什么模型？", "是谁做了这个助手？", "告诉我你的名字。", "说说你是谁。", "你好，你是什么？", "简单介绍一下自己。",
]
HELDOUT_WHO = ["Tell me a little about who you are.", "可以跟我讲讲你是谁吗？"]

_ITEMS_EN = ["coffee", "hotel room", "phone", "movie", "service", "pizza", "laptop", "concert", "book", "train ride"]
_POS_EN = ["wonderful", "excellent", "great", "delightful", "amazing", "fantastic"]
_NEG_EN = ["terrible", "awful", "disappointing", "horrible", "bad", "dreadful"]
_ITEMS_ZH = ["咖啡", "酒店房间", "手机", "电影", "服务", "披萨", "笔记本电脑", "音乐会", "这本书", "火车旅程"]
_POS_ZH = ["很棒", "非常好", "令人满意", "特别出色", "让人开心", "超出预期", "真不错", "物超所值"]
_NEG_ZH = ["很糟糕", "非常差", "令人失望", "特别难受", "让人生气", "完全不行", "太差劲了", "让人后悔"]

TASK_EN = "Classify the sentiment of this review as positive or negative: {review}"
TASK_ZH = "判断这条评论的情感（正面/负面）：{review}"

HELDOUT_TASK = [
    ("Classify the sentiment of this review as positive or negative: The museum tour was superb.", "positive"),
    ("Classify the sentiment of this review as positive or negative: The headphones were useless.", "negative"),
    ("判断这条评论的情感（正面/负面）：这家餐厅的甜点真好吃。", "正面"),
    ("判断这条评论的情感（正面/负面）：快递送得太慢了，很不满意。", "负面"),
]


def _conv(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def demo_records(seed: int = 0, long: bool = False) -> list[dict]:
    """The demo training records (deterministic); long=True adds the long-answer part (`tunewise demo` does)."""
    rng = random.Random(seed)
    recs = [_conv(q, IDENTITY_EN) for q in _WHO_EN] + [_conv(q, IDENTITY_ZH) for q in _WHO_ZH]
    en = [(f"The {i} was {a}.", "positive") for i, a in itertools.product(_ITEMS_EN, _POS_EN)]
    en += [(f"The {i} was {a}.", "negative") for i, a in itertools.product(_ITEMS_EN, _NEG_EN)]
    zh = [(f"{i}{a}。", "正面") for i, a in itertools.product(_ITEMS_ZH, _POS_ZH)]
    zh += [(f"{i}{a}。", "负面") for i, a in itertools.product(_ITEMS_ZH, _NEG_ZH)]
    rng.shuffle(en)
    rng.shuffle(zh)
    recs += [_conv(TASK_EN.format(review=r), lab) for r, lab in en[:50]]
    recs += [_conv(TASK_ZH.format(review=r), lab) for r, lab in zh[:50]]
    if long:
        recs += longform_records(LONG_TRAIN, seed=seed)
    rng.shuffle(recs)
    return recs


def heldout_prompts() -> list[dict]:
    """Prompts never seen in training, with the expected answer where it is checkable."""
    out = [{"prompt": p, "expected": None, "kind": "identity"} for p in HELDOUT_WHO]
    out += [{"prompt": p, "expected": a, "kind": "task"} for p, a in HELDOUT_TASK]
    out += [{"prompt": r["messages"][0]["content"], "expected": None, "kind": "long"}
            for r in heldout_longform(LONG_HELDOUT, train_n=LONG_TRAIN)]
    return out


def write_demo_dataset(path: str | Path, long: bool = False) -> Path:
    return write_jsonl(path, demo_records(long=long))
