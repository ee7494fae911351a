"""The built-in general instruction set (`data.general: builtin`), English and Chinese, written by tunewise itself.

The first remedy the guides give against catastrophic forgetting is to mix general instructions into the
task data, which a newcomer rarely has at hand. This set is generated here from a fixed seed (no third-party
data, so no licence to inherit): arithmetic word problems with their working, unit conversions, sorting,
counting, formatting, a small glossary, sentiment labels, short Python functions, definitions and practical
tips. Answers are computed or written out, so every one is right. `resources/general_instructions.jsonl` is
this module's output (`python -m tunewise.data.general` writes it; a test checks they agree). None of its
prompts is a prompt of the forgetting probe (evaluate/resources/general_qa.jsonl), so that check stays honest.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunewise.config.load import BUILTIN_GENERAL

BUILTIN = "builtin"  # data.general: builtin
N_RECORDS = 320
SEED = 22


def builtin_path() -> Path:
    return BUILTIN_GENERAL


_NAMES_EN = ["Anna", "Ben", "Carla", "Dev", "Elif", "Finn", "Gita", "Hugo", "Ines", "Jack", "Lena", "Marco", "Nora", "Omar"]
_NAMES_ZH = ["小明", "小红", "小刚", "小丽", "阿强", "小芳", "小军", "小燕", "大伟", "小雪"]
_ITEMS_EN = [("apples", "apples"), ("books", "books"), ("pencils", "pencils"), ("stamps", "stamps"), ("marbles", "marbles")]
_ITEMS_ZH = [("苹果", "个"), ("书", "本"), ("铅笔", "支"), ("邮票", "张"), ("弹珠", "颗")]


def _add_en(rng):
    n, (item, _) = rng.choice(_NAMES_EN), rng.choice(_ITEMS_EN)
    a, b = rng.randint(3, 60), rng.randint(2, 40)
    return (f"{n} has {a} {item} and gets {b} more. How many {item} does {n} have now?",
            f"{a} + {b} = {a + b}, so {n} has {a + b} {item} now.")


def _sub_en(rng):
    n, (item, _) = rng.choice(_NAMES_EN), rng.choice(_ITEMS_EN)
    a = rng.randint(20, 90)
    b = rng.randint(2, a - 1)
    return (f"{n} had {a} {item} and gave away {b}. How many are left?", f"{a} - {b} = {a - b}, so {a - b} {item} are left.")


def _mul_en(rng):
    boxes, per = rng.randint(3, 12), rng.randint(4, 15)
    item = rng.choice(_ITEMS_EN)[0]
    return (f"There are {boxes} boxes with {per} {item} in each. How many {item} are there in total?",
            f"{boxes} x {per} = {boxes * per}, so there are {boxes * per} {item} in total.")


def _add_zh(rng):
    n, (name, unit) = rng.choice(_NAMES_ZH), rng.choice(_ITEMS_ZH)
    a, b = rng.randint(3, 60), rng.randint(2, 40)
    return f"{n}有{a}{unit}{name}，又得到了{b}{unit}。{n}现在一共有多少{unit}{name}？", f"{a} + {b} = {a + b}，所以{n}现在有{a + b}{unit}{name}。"


def _sub_zh(rng):
    n, (name, unit) = rng.choice(_NAMES_ZH), rng.choice(_ITEMS_ZH)
    a = rng.randint(20, 90)
    b = rng.randint(2, a - 1)
    return f"{n}原来有{a}{unit}{name}，送给同学{b}{unit}。还剩多少{unit}？", f"{a} - {b} = {a - b}，所以还剩{a - b}{unit}{name}。"


def _mul_zh(rng):
    boxes, per = rng.randint(3, 12), rng.randint(4, 15)
    name, unit = rng.choice(_ITEMS_ZH)
    return (f"有{boxes}个盒子，每个盒子里有{per}{unit}{name}。一共有多少{unit}？",
            f"{boxes} × {per} = {boxes * per}，所以一共有{boxes * per}{unit}{name}。")


_UNITS = [  # (en from, en to, zh from, zh to, factor)
    ("kilometres", "metres", "千米", "米", 1000), ("metres", "centimetres", "米", "厘米", 100),
    ("kilograms", "grams", "千克", "克", 1000), ("litres", "millilitres", "升", "毫升", 1000),
    ("hours", "minutes", "小时", "分钟", 60), ("minutes", "seconds", "分钟", "秒", 60),
]


def _convert_en(rng):
    f, t, _, _, k = rng.choice(_UNITS)
    x = rng.randint(2, 25)
    return f"Convert {x} {f} to {t}.", f"There are {k} {t} in one of the {f}, so {x} {f} = {x} x {k} = {x * k} {t}."


def _convert_zh(rng):
    _, _, f, t, k = rng.choice(_UNITS)
    x = rng.randint(2, 25)
    return f"{x}{f}等于多少{t}？", f"1{f}等于{k}{t}，所以{x}{f} = {x} × {k} = {x * k}{t}。"


def _temp_en(rng):
    c = rng.choice(range(-20, 45, 5))
    f = c * 9 // 5 + 32
    return (f"What is {c} degrees Celsius in Fahrenheit?",
            f"Fahrenheit = Celsius x 9/5 + 32 = {c} x 9/5 + 32 = {f}. So {c} °C is {f} °F.")


def _temp_zh(rng):
    c = rng.choice(range(-20, 45, 5))
    f = c * 9 // 5 + 32
    return f"{c}摄氏度是多少华氏度？", f"华氏度 = 摄氏度 × 9/5 + 32 = {c} × 9/5 + 32 = {f}。所以{c}°C 等于 {f}°F。"


def _sort_en(rng):
    xs = rng.sample(range(1, 100), rng.randint(4, 7))
    desc = rng.random() < 0.5
    order = "from largest to smallest" if desc else "from smallest to largest"
    return (f"Sort these numbers {order}: {', '.join(map(str, xs))}",
            ", ".join(map(str, sorted(xs, reverse=desc))))


def _sort_zh(rng):
    xs = rng.sample(range(1, 100), rng.randint(4, 7))
    desc = rng.random() < 0.5
    return (f"把这些数{'从大到小' if desc else '从小到大'}排列：{'、'.join(map(str, xs))}",
            "、".join(map(str, sorted(xs, reverse=desc))))


_WORDS = ["river", "garden", "lantern", "orange", "window", "pepper", "violin", "harbour", "meadow", "candle", "pillow",
          "tunnel", "basket", "falcon", "marble", "anchor", "button", "cactus", "dolphin", "engine"]


def _alpha_en(rng):
    ws = rng.sample(_WORDS, rng.randint(4, 6))
    return f"Put these words in alphabetical order: {', '.join(ws)}", ", ".join(sorted(ws))


def _count_words_en(rng):
    ws = rng.sample(_WORDS, rng.randint(4, 9))
    sentence = " ".join(ws).capitalize() + "."
    return f"How many words are in this sentence? \"{sentence}\"", f"It has {len(ws)} words."


_PHRASES_ZH = ["春眠不觉晓", "学而时习之", "千里之行始于足下", "今天天气很好", "我们一起去图书馆", "小猫在窗台上睡觉",
               "认真做好每一件事", "山高月小水落石出", "早睡早起身体好", "读书使人进步"]


def _count_chars_zh(rng):
    p = rng.choice(_PHRASES_ZH)
    return f"“{p}”一共有几个字？", f"一共有{len(p)}个字。"


def _parity(rng, zh: bool):
    x = rng.randint(11, 999)
    even = x % 2 == 0
    if zh:
        return f"{x}是奇数还是偶数？", f"{x}是{'偶数' if even else '奇数'}，因为它{'能' if even else '不能'}被 2 整除。"
    return f"Is {x} odd or even?", f"{x} is {'even' if even else 'odd'}: it {'is' if even else 'is not'} divisible by 2."


def _parity_en(rng):
    return _parity(rng, False)


def _parity_zh(rng):
    return _parity(rng, True)


_GLOSSARY = [("good morning", "早上好"), ("thank you", "谢谢"), ("see you tomorrow", "明天见"), ("how much is this?", "这个多少钱？"),
             ("where is the station?", "车站在哪里？"), ("I am hungry", "我饿了"), ("happy birthday", "生日快乐"),
             ("the weather is cold today", "今天天气很冷"), ("please sit down", "请坐"), ("I like reading books", "我喜欢看书"),
             ("the library opens at nine", "图书馆九点开门"), ("my brother is a teacher", "我哥哥是老师"),
             ("let's have lunch together", "我们一起吃午饭吧"), ("turn left at the corner", "在拐角处左转"),
             ("the meeting starts at three", "会议三点开始"), ("drink more water", "多喝水"),
             ("it is raining outside", "外面在下雨"), ("I will call you later", "我等会儿给你打电话"),
             ("this soup is delicious", "这汤很好喝"), ("close the door, please", "请把门关上")]


def _translate_en(rng):
    en, zh = rng.choice(_GLOSSARY)
    return f"Translate into Chinese: {en}", zh


def _translate_zh(rng):
    en, zh = rng.choice(_GLOSSARY)
    return f"把这句话翻译成英文：{zh}", en[0].upper() + en[1:] + ("" if en.endswith(("?", ".")) else ".")


_GOOD_EN = ["the staff were friendly", "the room was spotless", "delivery was quick", "it works exactly as described",
            "the food was fresh and tasty", "the price was fair"]
_BAD_EN = ["the food arrived cold", "the screen cracked after a week", "nobody answered my emails", "the room smelled of smoke",
           "it stopped working on day two", "the queue took an hour"]
_GOOD_ZH = ["服务员很热情", "房间非常干净", "送货很快", "和描述的一模一样", "菜很新鲜也很好吃", "价格很公道"]
_BAD_ZH = ["菜送来时已经凉了", "用了一周屏幕就裂了", "发邮件没人回复", "房间里有烟味", "第二天就坏了", "排队排了一个小时"]


def _sentiment_en(rng):
    good = rng.random() < 0.5
    a, b = rng.sample(_GOOD_EN if good else _BAD_EN, 2)
    review = f"{a[0].upper() + a[1:]}, and {b}."
    return f"Is this review positive or negative? \"{review}\"", "Positive." if good else "Negative."


def _sentiment_zh(rng):
    good = rng.random() < 0.5
    a, b = rng.sample(_GOOD_ZH if good else _BAD_ZH, 2)
    return f"判断这条评价是正面还是负面：“{a}，{b}。”", "正面。" if good else "负面。"


_LIST_EN = ["milk", "eggs", "bread", "rice", "tomatoes", "soap", "tea", "butter", "onions", "cheese"]
_LIST_ZH = ["牛奶", "鸡蛋", "面包", "大米", "西红柿", "肥皂", "茶叶", "黄油", "洋葱", "奶酪"]


def _bullets_en(rng):
    xs = rng.sample(_LIST_EN, rng.randint(3, 6))
    return f"Turn this shopping list into a bulleted list: {', '.join(xs)}", "\n".join(f"- {x}" for x in xs)


def _bullets_zh(rng):
    xs = rng.sample(_LIST_ZH, rng.randint(3, 6))
    return f"把这份购物清单整理成项目列表：{'、'.join(xs)}", "\n".join(f"- {x}" for x in xs)


_CODE = [
    ("returns the square of a number", "返回一个数的平方", "def square(x):\n    return x * x"),
    ("returns the sum of a list of numbers", "返回一个数字列表的和", "def total(numbers):\n    result = 0\n    for n in numbers:\n        result += n\n    return result"),
    ("checks whether a number is even", "判断一个数是否为偶数", "def is_even(n):\n    return n % 2 == 0"),
    ("reverses a string", "把字符串反转", "def reverse(text):\n    return text[::-1]"),
    ("returns the largest number in a list", "返回列表中最大的数", "def largest(numbers):\n    best = numbers[0]\n    for n in numbers[1:]:\n        if n > best:\n            best = n\n    return best"),
    ("counts the vowels in a word", "统计一个英文单词中元音字母的个数", "def count_vowels(word):\n    return sum(1 for ch in word.lower() if ch in \"aeiou\")"),
    ("converts Celsius to Fahrenheit", "把摄氏度换算成华氏度", "def to_fahrenheit(celsius):\n    return celsius * 9 / 5 + 32"),
    ("returns the average of a list of numbers", "返回一个数字列表的平均值", "def average(numbers):\n    return sum(numbers) / len(numbers)"),
]


def _code_en(rng):
    what, _, code = rng.choice(_CODE)
    return f"Write a Python function that {what}.", f"```python\n{code}\n```"


def _code_zh(rng):
    _, what, code = rng.choice(_CODE)
    return f"写一个 Python 函数，{what}。", f"```python\n{code}\n```"


_DEFS = [
    ("a noun", "名词", "A noun is a word that names a person, place, thing or idea, such as \"teacher\", \"city\" or \"freedom\".",
     "名词是表示人、地点、事物或概念名称的词，例如“老师”“城市”“自由”。"),
    ("a prime number", "质数", "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, such as 2, 3, 5 and 7.",
     "质数是大于 1、只能被 1 和它自身整除的整数，例如 2、3、5、7。"),
    ("a budget", "预算", "A budget is a plan for how much money you expect to earn and spend over a period, so you can see where it goes.",
     "预算是对一段时间内预计收入和支出的计划，帮助你看清钱花在了哪里。"),
    ("an adjective", "形容词", "An adjective is a word that describes a noun, such as \"tall\", \"blue\" or \"quiet\".",
     "形容词是用来描述名词的词，例如“高”“蓝”“安静”。"),
    ("a paragraph", "段落", "A paragraph is a group of sentences about one main idea, usually starting on a new line.",
     "段落是围绕一个中心意思的一组句子，通常另起一行开始。"),
    ("an average", "平均数", "An average is the sum of a set of numbers divided by how many numbers there are.",
     "平均数是一组数的总和除以这组数的个数。"),
    ("a percentage", "百分比", "A percentage is a number expressed as a part of 100: 25% means 25 out of every 100.",
     "百分比是把一个数表示成 100 的几分之几：25% 表示每 100 份中的 25 份。"),
    ("a recipe", "食谱", "A recipe is a set of instructions that lists the ingredients and the steps to prepare a dish.",
     "食谱是一份说明，列出做一道菜需要的材料和步骤。"),
    ("a password manager", "密码管理器", "A password manager is a program that stores your passwords securely so each account can have a long, different one.",
     "密码管理器是安全保存密码的软件，让每个账户都可以使用不同的长密码。"),
    ("an email subject line", "邮件主题", "An email subject line is the short summary shown before the email is opened; it should say what the email is about.",
     "邮件主题是打开邮件前显示的简短概括，应当说明这封邮件是关于什么的。"),
]


def _define_en(rng):
    term, _, en, _ = rng.choice(_DEFS)
    return f"Explain in one sentence what {term} is.", en


def _define_zh(rng):
    _, term, _, zh = rng.choice(_DEFS)
    return f"用一句话解释什么是{term}。", zh


_TIPS = [
    ("sleep better", "睡得更好", ["Go to bed and get up at the same time every day, weekends included.",
                                 "Keep screens out of the last half hour before bed.",
                                 "Keep the bedroom dark, quiet and cool."],
     ["每天同一时间睡觉和起床，周末也一样。", "睡前半小时不看手机和电脑。", "让卧室保持黑暗、安静、凉爽。"]),
    ("study more effectively", "更高效地学习", ["Study in short sessions of 25-40 minutes with breaks in between.",
                                              "Test yourself instead of rereading your notes.",
                                              "Review material again after a day and after a week."],
     ["每次学习 25～40 分钟，中间休息一下。", "用自测代替反复重读笔记。", "学完后隔一天、隔一周各复习一次。"]),
    ("save money", "省钱", ["Write down every expense for a month to see where the money goes.",
                           "Move a fixed amount to savings on payday, before spending.",
                           "Wait a day before any purchase you did not plan."],
     ["把一个月的每笔开销都记下来，看清钱花在哪里。", "发工资当天先把固定金额存起来，再花剩下的。", "计划外的东西，等一天再决定买不买。"]),
    ("write clearer emails", "把邮件写得更清楚", ["Put the request or the main point in the first two lines.",
                                                "Use one email per topic and a subject line that names it.",
                                                "End with what you need and by when."],
     ["前两行就写出请求或要点。", "一封邮件只谈一件事，主题写明这件事。", "结尾说清楚需要对方做什么、什么时候之前。"]),
    ("reduce stress at work", "减轻工作压力", ["List tomorrow's three most important tasks before you leave.",
                                             "Take a short walk away from the screen every couple of hours.",
                                             "Say early when a deadline cannot be met, with a new date."],
     ["下班前列出明天最重要的三件事。", "每隔一两个小时离开屏幕走一走。", "发现赶不上截止时间时尽早说明，并给出新的时间。"]),
    ("start running", "开始跑步", ["Begin with alternating one minute of running and two of walking.",
                                  "Run three times a week, with a rest day in between.",
                                  "Increase your weekly distance by no more than about ten percent."],
     ["先从跑一分钟、走两分钟交替开始。", "每周跑三次，中间隔一天休息。", "每周的总距离增加不超过约百分之十。"]),
]


def _tips_en(rng):
    topic, _, tips, _ = rng.choice(_TIPS)
    return f"Give me three tips to {topic}.", "\n".join(f"{i}. {t}" for i, t in enumerate(tips, 1))


def _tips_zh(rng):
    _, topic, _, tips = rng.choice(_TIPS)
    return f"给我三条{topic}的建议。", "\n".join(f"{i}. {t}" for i, t in enumerate(tips, 1))


_MAKERS = [_add_en, _add_zh, _sub_en, _sub_zh, _mul_en, _mul_zh, _convert_en, _convert_zh, _temp_en, _temp_zh,
           _sort_en, _sort_zh, _alpha_en, _count_chars_zh, _count_words_en, _parity_zh, _parity_en, _translate_zh,
           _translate_en, _sentiment_zh, _sentiment_en, _bullets_zh, _bullets_en, _code_zh, _code_en, _define_zh,
           _define_en, _tips_zh, _tips_en]


def general_records(n: int = N_RECORDS, seed: int = SEED) -> list[dict]:
    """n distinct chat records, cycling through the kinds (so both languages and every kind appear)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    i = tries = 0
    while len(out) < n and tries < 50 * n:
        q, a = _MAKERS[i % len(_MAKERS)](rng)
        i += 1
        tries += 1
        if q in seen:
            continue
        seen.add(q)
        out.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return out


def write_builtin(path: Path | None = None) -> Path:
    path = Path(path or builtin_path())
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in general_records()), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_builtin())
