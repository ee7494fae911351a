"""A tool-calling set tunewise writes itself (English and Chinese): three functions (weather, local time, unit
conversion), conversations that call one of them, two at once, or none, with the tool's result and the final answer.

Written in OpenAI's messages form (`tool_calls` with arguments as a JSON string, `tool` turns, a `tools` list) or
in LLaMA-Factory's sharegpt form (function_call / observation turns and a `tools` JSON string), so both readers
are exercised. Held-out records use cities, numbers and phrasings that never occur in training: call accuracy on
them shows that the model learned to call, not to recall.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunewise.fileio import write_text

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, as the user wrote it."},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Current local time in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, as the user wrote it."}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "convert_units", "description": "Convert a value between units of length, mass or temperature.",
        "parameters": {"type": "object", "properties": {
            "value": {"type": "number"},
            "from_unit": {"type": "string", "enum": ["km", "mi", "kg", "lb", "m", "ft", "c", "f"]},
            "to_unit": {"type": "string", "enum": ["km", "mi", "kg", "lb", "m", "ft", "c", "f"]}},
            "required": ["value", "from_unit", "to_unit"]}}},
]

# (English name, Chinese name)
CITIES_TRAIN = [("Paris", "巴黎"), ("Tokyo", "东京"), ("London", "伦敦"), ("Beijing", "北京"), ("Berlin", "柏林"),
                ("Sydney", "悉尼"), ("Madrid", "马德里"), ("Cairo", "开罗"), ("Seoul", "首尔"), ("Rome", "罗马")]
CITIES_HELDOUT = [("Toronto", "多伦多"), ("Moscow", "莫斯科"), ("Singapore", "新加坡"), ("Dubai", "迪拜"),
                  ("Lisbon", "里斯本"), ("Vienna", "维也纳")]
UNITS = {"km": ("kilometers", "公里"), "mi": ("miles", "英里"), "kg": ("kilograms", "千克"), "lb": ("pounds", "磅"),
         "m": ("meters", "米"), "ft": ("feet", "英尺"), "c": ("degrees Celsius", "摄氏度"), "f": ("degrees Fahrenheit", "华氏度")}
_FACTORS = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.204623, ("lb", "kg"): 0.453592,
            ("m", "ft"): 3.280840, ("ft", "m"): 0.3048}

WEATHER_EN = ["What's the weather like in {c}?", "How is the weather in {c} today?", "Is it raining in {c} right now?",
              "Tell me the current weather in {c}."]
WEATHER_ZH = ["{c}现在天气怎么样？", "今天{c}的天气如何？", "帮我查一下{c}的天气。"]
WEATHER_F_EN = ["What's the temperature in {c} in Fahrenheit?", "How warm is it in {c}? Give it in Fahrenheit."]
TIME_EN = ["What time is it in {c}?", "Tell me the local time in {c}.", "What's the current time in {c}?"]
TIME_ZH = ["{c}现在几点？", "{c}当地时间是几点？"]
CONVERT_EN = ["Convert {v} {a} to {b}.", "How many {b} is {v} {a}?", "What is {v} {a} in {b}?"]
CONVERT_ZH = ["把{v}{a}换算成{b}。", "{v}{a}等于多少{b}？"]
BOTH_EN = ["What's the weather in {c} and in {d}?", "Compare the weather in {c} and {d}."]
BOTH_ZH = ["{c}和{d}的天气分别怎么样？"]
# Held-out phrasings (never in training)
WEATHER_HELD_EN = ["Could you check the weather for {c}?", "Weather report for {c}, please."]
WEATHER_HELD_ZH = ["{c}今天天气好吗？"]
TIME_HELD_EN = ["Do you know the time in {c} now?"]
TIME_HELD_ZH = ["请问{c}现在是什么时间？"]
CONVERT_HELD_EN = ["Please turn {v} {a} into {b}."]
CONVERT_HELD_ZH = ["请把{v}{a}转换为{b}。"]

NO_CALL_TRAIN = [
    ("Hello!", "Hello! I can check the weather, tell you the local time in a city, or convert units. What do you need?"),
    ("What can you do?", "I can look up the current weather or local time in a city and convert lengths, masses and "
                         "temperatures between units."),
    ("Thanks, that's all.", "You're welcome! Have a nice day."),
    ("What is 6 times 7?", "6 times 7 is 42."),
    ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare."),
    ("你好！", "你好！我可以查询城市的天气和当地时间，也可以换算单位。需要什么帮助？"),
    ("你能做什么？", "我可以查询城市的当前天气和当地时间，还能换算长度、质量和温度单位。"),
    ("谢谢！", "不客气，祝你愉快！"),
    ("三加五等于几？", "三加五等于八。"),
]
NO_CALL_HELDOUT = [
    ("Hi there, how are you?", "I'm doing well, thanks! I can check the weather, the local time or convert units for you."),
    ("What is 9 plus 10?", "9 plus 10 is 19."),
    ("Thank you very much!", "You're welcome!"),
    ("您好，请问你是谁？", "你好！我是一个可以查询天气、时间和换算单位的助手。"),
    ("十减四等于几？", "十减四等于六。"),
]

_CONDITIONS = [("sunny", "晴"), ("cloudy", "多云"), ("light rain", "小雨"), ("windy", "有风")]


def _call(name: str, args: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}


def _weather(rng: random.Random, city: str, zh: bool, unit: str = "celsius") -> tuple[dict, str, str]:
    temp = rng.randint(-5, 33)
    if unit == "fahrenheit":
        temp = round(temp * 9 / 5 + 32)
    cond_en, cond_zh = rng.choice(_CONDITIONS)
    args = {"city": city} if unit == "celsius" else {"city": city, "unit": unit}
    result = {"city": city, "temperature": temp, "unit": unit, "condition": cond_en}
    sym = "°C" if unit == "celsius" else "°F"
    answer = f"{city}现在{temp} {sym}，{cond_zh}。" if zh else f"It is {temp} {sym} and {cond_en} in {city} right now."
    return args, json.dumps(result, ensure_ascii=False), answer


def _convert(value: float, a: str, b: str) -> float:
    if (a, b) == ("c", "f"):
        return round(value * 9 / 5 + 32, 2)
    if (a, b) == ("f", "c"):
        return round((value - 32) * 5 / 9, 2)
    return round(value * _FACTORS[(a, b)], 2)


def _conversation(rng: random.Random, kind: str, cities: list[tuple[str, str]], zh: bool, held: bool) -> list[dict]:
    def pick(templates_en, templates_zh, held_en, held_zh):
        return rng.choice((held_zh if zh else held_en) if held else (templates_zh if zh else templates_en))

    name = lambda c: c[1] if zh else c[0]  # noqa: E731
    if kind == "weather":
        city = name(rng.choice(cities))
        args, result, answer = _weather(rng, city, zh)
        prompt = pick(WEATHER_EN, WEATHER_ZH, WEATHER_HELD_EN, WEATHER_HELD_ZH).format(c=city)
        calls = [("get_weather", args, result)]
    elif kind == "weather_f":
        city = rng.choice(cities)[0]
        zh = False
        args, result, answer = _weather(rng, city, False, unit="fahrenheit")
        prompt = rng.choice(WEATHER_F_EN).format(c=city)
        calls = [("get_weather", args, result)]
    elif kind == "time":
        city = name(rng.choice(cities))
        hh, mm = rng.randint(0, 23), rng.choice([0, 5, 15, 20, 30, 45, 50])
        result = json.dumps({"city": city, "time": f"{hh:02d}:{mm:02d}"}, ensure_ascii=False)
        answer = f"{city}现在是 {hh:02d}:{mm:02d}。" if zh else f"It is {hh:02d}:{mm:02d} in {city} right now."
        prompt = pick(TIME_EN, TIME_ZH, TIME_HELD_EN, TIME_HELD_ZH).format(c=city)
        calls = [("get_time", {"city": city}, result)]
    elif kind == "convert":
        a, b = rng.choice([*_FACTORS, ("c", "f"), ("f", "c")])
        value = rng.choice([rng.randint(2, 300), round(rng.uniform(1, 99), 1)])
        out = _convert(value, a, b)
        ua, ub = UNITS[a][1 if zh else 0], UNITS[b][1 if zh else 0]
        prompt = pick(CONVERT_EN, CONVERT_ZH, CONVERT_HELD_EN, CONVERT_HELD_ZH).format(v=value, a=ua, b=ub)
        result = json.dumps({"value": out, "unit": b})
        answer = f"{value}{ua}约等于{out}{ub}。" if zh else f"{value} {ua} is about {out} {ub}."
        calls = [("convert_units", {"value": value, "from_unit": a, "to_unit": b}, result)]
    else:  # both: two calls at once
        c1, c2 = rng.sample(cities, 2)
        c1, c2 = name(c1), name(c2)
        (a1, r1, s1), (a2, r2, s2) = _weather(rng, c1, zh), _weather(rng, c2, zh)
        prompt = rng.choice(BOTH_ZH if zh else BOTH_EN).format(c=c1, d=c2)
        answer = f"{s1}{s2}" if zh else f"{s1} {s2}"
        calls = [("get_weather", a1, r1), ("get_weather", a2, r2)]
    msgs: list[dict] = [{"role": "user", "content": prompt},
                        {"role": "assistant", "content": "", "tool_calls": [_call(n, a) for n, a, _ in calls]}]
    msgs += [{"role": "tool", "name": n, "content": r} for n, _, r in calls]
    msgs.append({"role": "assistant", "content": answer})
    return msgs


def tool_records(n: int, *, seed: int = 0, held_out: bool = False) -> list[dict]:
    """`n` records with tools in OpenAI's messages form; held_out: unseen cities, numbers and phrasings."""
    rng = random.Random(seed + (1000 if held_out else 0))
    cities = CITIES_HELDOUT if held_out else CITIES_TRAIN
    no_call = NO_CALL_HELDOUT if held_out else NO_CALL_TRAIN
    kinds = ["weather", "weather", "time", "convert", "convert", "weather_f", "both", "none"]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        zh = i % 3 == 1
        if kind == "none":
            q, a = no_call[(i // len(kinds)) % len(no_call)]
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        else:
            msgs = _conversation(rng, kind, cities, zh, held_out)
        out.append({"messages": msgs, "tools": TOOLS})
    return out


def to_sharegpt(rec: dict) -> dict:
    """A record in LLaMA-Factory's sharegpt tool form: function_call / observation turns (parallel calls as a JSON
    list), `tools` as a JSON string of bare function descriptions."""
    conv = []
    for m in rec["messages"]:
        if m["role"] == "user":
            conv.append({"from": "human", "value": m["content"]})
        elif m["role"] == "tool":
            if conv[-1]["from"] == "observation":  # parallel results: LLaMA-Factory keeps one observation turn
                conv[-1]["value"] = json.dumps([*json.loads(conv[-1]["value"]), m["content"]], ensure_ascii=False) \
                    if conv[-1]["value"].startswith("[") else json.dumps([conv[-1]["value"], m["content"]], ensure_ascii=False)
            else:
                conv.append({"from": "observation", "value": m["content"]})
        elif m.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])} for c in m["tool_calls"]]
            conv.append({"from": "function_call", "value": json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)})
        else:
            conv.append({"from": "gpt", "value": m["content"]})
    return {"conversations": conv, "tools": json.dumps([t["function"] for t in rec["tools"]], ensure_ascii=False)}


def write_tool_dataset(path: str | Path, n: int = 96, *, seed: int = 0, held_out: bool = False,
                       form: str = "messages") -> Path:
    """Write the set as JSONL (form: messages, OpenAI's) or as a JSON list (form: sharegpt, LLaMA-Factory's)."""
    recs = tool_records(n, seed=seed, held_out=held_out)
    path = Path(path)
    if form == "sharegpt":
        write_text(path, json.dumps([to_sharegpt(r) for r in recs], ensure_ascii=False, indent=1) + "\n")
    else:
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
    return path
