"""Preference pairs tunewise writes itself (English and Chinese), in LLaMA-Factory's alpaca ranking shape.

Each prompt asks a plain question; the chosen answer answers it in one or two sentences and stops, the rejected
one brushes the user off. The preference to learn ("answer, briefly") is unambiguous, holds across topics and
languages, and is not a length trick: several rejected answers are as long as the chosen ones. Held-out pairs
use topics that never appear in training, so accuracy on them shows that the preference generalises.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunewise.fileio import write_text

# (question, answer): facts a small model can state in a sentence or two
FACTS_EN = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide from the air and use it in photosynthesis."),
    ("What is the boiling point of water at sea level?", "At sea level, water boils at 100 degrees Celsius."),
    ("Who wrote Romeo and Juliet?", "Romeo and Juliet was written by William Shakespeare."),
    ("What is 7 times 8?", "7 times 8 is 56."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("What language is spoken in Brazil?", "The official language of Brazil is Portuguese."),
    ("How many minutes are in an hour?", "There are 60 minutes in an hour."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 degrees Fahrenheit."),
    ("What do bees make?", "Bees make honey and beeswax."),
    ("What is the opposite of 'ancient'?", "The opposite of 'ancient' is 'modern'."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle."),
    ("What color do you get by mixing blue and yellow?", "Mixing blue and yellow gives green."),
    ("What is the main ingredient of guacamole?", "The main ingredient of guacamole is avocado."),
]
FACTS_ZH = [
    ("中国的首都是哪里？", "中国的首都是北京。"),
    ("一年有几个月？", "一年有十二个月。"),
    ("水由哪两种元素组成？", "水由氢和氧两种元素组成。"),
    ("太阳从哪个方向升起？", "太阳从东方升起。"),
    ("三角形有几条边？", "三角形有三条边。"),
    ("《红楼梦》的作者是谁？", "《红楼梦》的作者是曹雪芹。"),
    ("九乘以九等于多少？", "九乘以九等于八十一。"),
    ("熊猫主要吃什么？", "熊猫主要吃竹子。"),
    ("一周有几天？", "一周有七天。"),
    ("长江流入哪个海？", "长江流入东海。"),
]
HELDOUT_EN = [
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What is 12 plus 15?", "12 plus 15 is 27."),
    ("Which organ pumps blood through the body?", "The heart pumps blood through the body."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths."),
    ("How many hours are in a day?", "There are 24 hours in a day."),
    ("What is frozen water called?", "Frozen water is called ice."),
]
HELDOUT_ZH = [
    ("英国的首都是哪里？", "英国的首都是伦敦。"),
    ("一小时有多少分钟？", "一小时有六十分钟。"),
    ("彩虹有几种颜色？", "彩虹通常有七种颜色。"),
    ("地球绕着什么转？", "地球绕着太阳转。"),
]
REJECT_EN = ["I don't know.", "Look it up yourself.", "Why would I tell you that?", "Not my problem.",
             "That is a boring question and I will not answer it.", "Ask someone else, I am busy with other things."]
REJECT_ZH = ["不知道。", "自己去查。", "我为什么要告诉你？", "这个问题太无聊了，我不想回答。", "去问别人吧，我没空。"]


def preference_pairs(*, heldout: bool = False, seed: int = 0) -> list[dict]:
    """Alpaca ranking records: instruction, input, chosen, rejected."""
    rng = random.Random(seed + (1 if heldout else 0))
    out = []
    for facts, rejects in ((HELDOUT_EN, REJECT_EN), (HELDOUT_ZH, REJECT_ZH)) if heldout else \
            ((FACTS_EN, REJECT_EN), (FACTS_ZH, REJECT_ZH)):
        for q, a in facts:
            out.append({"instruction": q, "input": "", "chosen": a, "rejected": rng.choice(rejects)})
    rng.shuffle(out)
    return out


def write_preference_dataset(folder: str | Path) -> Path:
    """pairs.json, heldout.json and a dataset_info.json naming both as LLaMA-Factory ranking data."""
    folder = Path(folder)
    cols = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
    for name, pairs in (("pairs.json", preference_pairs()), ("heldout.json", preference_pairs(heldout=True))):
        write_text(folder / name, json.dumps(pairs, ensure_ascii=False, indent=1) + "\n")
    info = {"answer_pairs": {"file_name": "pairs.json", "ranking": True, "columns": cols},
            "answer_pairs_heldout": {"file_name": "heldout.json", "ranking": True, "columns": cols}}
    return write_text(folder / "dataset_info.json", json.dumps(info, indent=2) + "\n")
