"""Instructions with long answers (about 100-500 tokens), English and Chinese, written by tunewise itself.

A model taught only short answers learns to stop because the end-of-turn token is a large share of what
it is trained on; with answers of realistic length it is one token in hundreds. This set has that shape
(step-by-step arithmetic, emails, itineraries, conversion tables, study plans), generated from a seed so
held-out prompts (other numbers, names, places) never appear in training.
"""

from __future__ import annotations

import random

_NAMES_EN = ["Alice", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jonas", "Kira", "Liam",
             "Maya", "Noah", "Olga", "Priya", "Quinn", "Ravi", "Sofia", "Tom"]
_NAMES_ZH = ["王芳", "李强", "张伟", "刘洋", "陈静", "杨帆", "赵磊", "黄蕾", "周杰", "吴敏", "徐亮", "孙悦", "马超", "朱琳", "胡斌", "郭婷"]
_DAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
_DAYS_ZH = ["周一", "周二", "周三", "周四", "周五"]
_REASONS_EN = ["a family appointment", "a delayed flight", "a clash with a client visit", "a doctor's appointment",
               "an urgent deadline", "a training course"]
_REASONS_ZH = ["家里有事", "航班延误", "和客户拜访时间冲突", "要去看医生", "有一个紧急的截止日期", "要参加培训"]
_CITIES_EN = ["Lisbon", "Kyoto", "Vienna", "Prague", "Seville", "Edinburgh", "Vancouver", "Melbourne", "Porto", "Krakow",
              "Bruges", "Hanoi"]
_CITIES_ZH = ["杭州", "成都", "西安", "苏州", "厦门", "青岛", "大理", "桂林", "南京", "重庆", "长沙", "昆明"]
_ACT_EN = [
    "walk through the old town and stop at a local bakery",
    "visit the main history museum and its permanent collection",
    "take a guided walking tour to learn how the city grew",
    "have lunch at the covered food market and try two or three regional dishes",
    "climb to the best viewpoint over the city",
    "rent a bicycle and ride along the river paths",
    "spend a quiet hour in the botanical garden",
    "see a concert or a small local theatre show",
    "take a half-day trip to a nearby village by train",
    "browse the independent bookshops and the weekend flea market",
    "join a cooking class to learn one classic local recipe",
    "relax in a park and watch the city go by",
]
_ACT_ZH = [
    "在老城区散步，找一家本地小店尝尝点心", "参观当地的历史博物馆和常设展", "跟一个步行导览团了解城市的历史",
    "中午去美食街或菜市场尝两三样特色小吃", "登上观景点俯瞰全城", "租一辆自行车沿着河边骑行", "在植物园里安静地待一个小时",
    "看一场地方戏或小型演出", "坐火车去附近的古镇玩半天", "逛逛独立书店和周末市集", "报一个烹饪课学做一道当地名菜",
    "在公园里休息，感受城市的生活节奏",
]
_SUBJECTS_EN = {
    "Python programming": ["variables, types and basic input and output", "conditions and loops", "functions and modules",
                           "lists, dictionaries and sets", "reading and writing files", "classes and objects",
                           "testing with pytest", "a small project that ties everything together"],
    "statistics": ["averages, medians and spread", "probability basics", "distributions and the normal curve",
                   "sampling and confidence intervals", "hypothesis tests", "correlation and regression",
                   "reading real data sets", "a short report on a data set of your choice"],
    "photography": ["how the camera controls exposure", "aperture and depth of field", "shutter speed and motion",
                    "composition rules", "natural light", "portraits", "editing basics", "a themed photo series"],
    "Spanish": ["pronunciation and greetings", "present tense verbs", "numbers, dates and time", "food and shopping words",
                "past tense", "asking for directions", "listening to simple podcasts", "a ten-minute conversation"],
}
_SUBJECTS_ZH = {
    "Python 编程": ["变量、类型和基本输入输出", "条件语句和循环", "函数与模块", "列表、字典和集合", "文件读写", "类和对象", "用 pytest 写测试", "做一个综合小项目"],
    "统计学": ["平均数、中位数和离散程度", "概率基础", "分布与正态曲线", "抽样与置信区间", "假设检验", "相关与回归", "阅读真实数据集", "写一份数据分析小报告"],
    "摄影": ["相机如何控制曝光", "光圈与景深", "快门速度与运动", "构图原则", "自然光的运用", "人像拍摄", "后期基础", "完成一组主题照片"],
    "日语": ["五十音与问候语", "现在时动词", "数字、日期和时间", "食物与购物词汇", "过去时", "问路", "听简单的播客", "进行十分钟的对话"],
}


def _mult_en(rng):
    a, b = rng.randint(12, 98), rng.randint(12, 98)
    tens, ones = b // 10 * 10, b % 10
    p1, p2 = a * ones, a * tens
    q = rng.choice(["How do I multiply {a} by {b} by hand? Show each step.", "Explain step by step how to work out {a} x {b}.",
                    "Walk me through multiplying {a} and {b} on paper."]).format(a=a, b=b)
    ans = (f"Let's multiply {a} by {b} by splitting {b} into {tens} and {ones}.\n\n"
           f"Step 1: multiply {a} by {ones}. {a} x {ones} = {p1}.\n"
           f"Step 2: multiply {a} by {tens}. First {a} x {tens // 10} = {a * (tens // 10)}, then add a zero: {p2}.\n"
           f"Step 3: add the two partial products: {p1} + {p2} = {p1 + p2}.\n\n"
           f"So {a} x {b} = {a * b}.\n\n"
           f"To check the result, estimate: {a} is close to {round(a, -1)} and {b} is close to {round(b, -1)}, and "
           f"{round(a, -1)} x {round(b, -1)} = {round(a, -1) * round(b, -1)}, which is near {a * b}, so the answer is reasonable.")
    return q, ans


def _mult_zh(rng):
    a, b = rng.randint(12, 98), rng.randint(12, 98)
    tens, ones = b // 10 * 10, b % 10
    p1, p2 = a * ones, a * tens
    q = rng.choice(["怎样用竖式计算 {a} 乘以 {b}？请写出每一步。", "请一步一步讲解 {a} × {b} 怎么算。", "教我手算 {a} 和 {b} 的乘积。"]).format(a=a, b=b)
    ans = (f"我们把 {b} 拆成 {tens} 和 {ones} 来计算 {a} × {b}。\n\n"
           f"第一步：{a} × {ones} = {p1}。\n"
           f"第二步：{a} × {tens}，先算 {a} × {tens // 10} = {a * (tens // 10)}，再在末尾补一个 0，得到 {p2}。\n"
           f"第三步：把两部分相加：{p1} + {p2} = {p1 + p2}。\n\n"
           f"所以 {a} × {b} = {a * b}。\n\n"
           f"验算一下：{a} 约等于 {round(a, -1)}，{b} 约等于 {round(b, -1)}，{round(a, -1)} × {round(b, -1)} = "
           f"{round(a, -1) * round(b, -1)}，和 {a * b} 很接近，说明结果合理。")
    return q, ans


def _email_en(rng):
    to, me = rng.sample(_NAMES_EN, 2)
    d1, d2 = rng.sample(_DAYS_EN, 2)
    why = rng.choice(_REASONS_EN)
    hour = rng.choice([9, 10, 11, 14, 15, 16])
    q = f"Write a short, polite email to {to} asking to move our meeting from {d1} to {d2} because of {why}. Sign it as {me}."
    ans = (f"Subject: Request to reschedule our {d1} meeting\n\n"
           f"Dear {to},\n\n"
           f"I hope you are well. I am writing to ask whether we could move our meeting from {d1} to {d2}. "
           f"Unfortunately, {why} means I will not be able to join on {d1} as planned.\n\n"
           f"Would {d2} at {hour}:00 work for you? If that time is not convenient, I am happy to adjust to whatever suits "
           f"your schedule, and I can send an updated calendar invitation as soon as we agree on a time.\n\n"
           f"I apologise for the inconvenience and thank you for your understanding.\n\n"
           f"Best regards,\n{me}")
    return q, ans


def _email_zh(rng):
    to, me = rng.sample(_NAMES_ZH, 2)
    d1, d2 = rng.sample(_DAYS_ZH, 2)
    why = rng.choice(_REASONS_ZH)
    hour = rng.choice([9, 10, 11, 14, 15, 16])
    q = f"帮我给{to}写一封礼貌的短邮件，因为{why}，想把会议从{d1}改到{d2}，署名{me}。"
    ans = (f"主题：关于调整{d1}会议时间的请求\n\n"
           f"{to}您好：\n\n"
           f"冒昧打扰。原定于{d1}的会议，由于{why}，我恐怕无法按时参加，想请问能否改到{d2}举行？\n\n"
           f"如果{d2}{hour}点方便的话，我们就定在这个时间；如果不合适，我也可以根据您的安排调整。确定时间后我会马上发送新的会议邀请。\n\n"
           f"给您带来不便，十分抱歉，感谢您的理解与支持！\n\n"
           f"此致\n敬礼\n{me}")
    return q, ans


def _trip_en(rng):
    city, days = rng.choice(_CITIES_EN), rng.randint(2, 3)
    acts = rng.sample(_ACT_EN, days * 3)
    q = rng.choice(["Plan a {d}-day trip to {c} for someone visiting for the first time.",
                    "I have {d} days in {c}. What should I do each day?"]).format(d=days, c=city)
    lines = [f"Here is a relaxed {days}-day plan for {city}, with a morning, an afternoon and an evening each day.\n"]
    for d in range(days):
        m, a, e = acts[3 * d: 3 * d + 3]
        lines.append(f"Day {d + 1}\n- Morning: {m}.\n- Afternoon: {a}.\n- Evening: {e}.\n")
    lines.append("Tips: buy a public transport pass on the first day, book popular museums online in advance, "
                 "and leave some free time each afternoon in case you find a place you want to stay longer.")
    return q, "\n".join(lines)


def _trip_zh(rng):
    city, days = rng.choice(_CITIES_ZH), rng.randint(2, 3)
    acts = rng.sample(_ACT_ZH, days * 3)
    q = rng.choice(["帮我规划一个{d}天的{c}旅行，第一次去。", "我在{c}有{d}天时间，每天怎么安排比较好？"]).format(d=days, c=city)
    lines = [f"下面是一个轻松的{city}{days}日行程，每天分上午、下午和晚上。\n"]
    for d in range(days):
        m, a, e = acts[3 * d: 3 * d + 3]
        lines.append(f"第{d + 1}天\n- 上午：{m}。\n- 下午：{a}。\n- 晚上：{e}。\n")
    lines.append("小贴士：第一天先办一张公交卡，热门景点提前在网上预约，每天下午留出一些空闲时间，遇到喜欢的地方可以多待一会儿。")
    return q, "\n".join(lines)


def _table_en(rng):
    start, step = rng.choice([5, 10, 15, 20]), rng.choice([5, 10])
    n = rng.randint(5, 8)
    q = f"Make a table converting kilometres to miles from {start} km in steps of {step} km, {n} rows, and explain how it is computed."
    rows = "\n".join(f"| {start + i * step} | {(start + i * step) * 0.621371:.1f} |" for i in range(n))
    ans = (f"One kilometre is about 0.621 miles, so each distance in kilometres is multiplied by 0.621371 and rounded to one decimal.\n\n"
           f"| kilometres | miles |\n|---|---|\n{rows}\n\n"
           f"For a quick estimate in your head, multiply by 6 and divide by 10: {start} km is roughly {start * 6 / 10:g} miles.")
    return q, ans


def _table_zh(rng):
    start, step = rng.choice([5, 10, 15, 20]), rng.choice([5, 10])
    n = rng.randint(5, 8)
    q = f"做一个公里换算英里的表，从 {start} 公里开始，每次加 {step} 公里，共 {n} 行，并说明怎么算。"
    rows = "\n".join(f"| {start + i * step} | {(start + i * step) * 0.621371:.1f} |" for i in range(n))
    ans = (f"1 公里约等于 0.621 英里，所以把公里数乘以 0.621371，再保留一位小数即可。\n\n"
           f"| 公里 | 英里 |\n|---|---|\n{rows}\n\n"
           f"心算时可以乘以 6 再除以 10：{start} 公里大约是 {start * 6 / 10:g} 英里。")
    return q, ans


def _plan_en(rng):
    subject = rng.choice(list(_SUBJECTS_EN))
    weeks = rng.randint(4, 6)
    topics = _SUBJECTS_EN[subject]
    q = rng.choice(["Make a {w}-week plan for a beginner learning {s}.", "How should I study {s} over {w} weeks?"]).format(w=weeks, s=subject)
    lines = [f"Here is a {weeks}-week plan for {subject}, about five hours a week.\n"]
    per = max(1, len(topics) // weeks)
    for w in range(weeks):
        part = topics[w * per:(w + 1) * per] if w < weeks - 1 else topics[w * per:]
        part = part or topics[-1:]
        lines.append(f"Week {w + 1}: {', '.join(part)}. Finish with a short exercise to check what you learned.")
    lines.append("\nKeep a notebook of questions, review the previous week for twenty minutes before starting a new one, "
                 "and do not worry if a topic takes longer: understanding matters more than speed.")
    return q, "\n".join(lines)


def _plan_zh(rng):
    subject = rng.choice(list(_SUBJECTS_ZH))
    weeks = rng.randint(4, 6)
    topics = _SUBJECTS_ZH[subject]
    q = rng.choice(["给零基础的人做一个{w}周的{s}学习计划。", "我想用{w}周时间学{s}，应该怎么安排？"]).format(w=weeks, s=subject)
    lines = [f"下面是一个{weeks}周的{subject}学习计划，每周大约五个小时。\n"]
    per = max(1, len(topics) // weeks)
    for w in range(weeks):
        part = topics[w * per:(w + 1) * per] if w < weeks - 1 else topics[w * per:]
        part = part or topics[-1:]
        lines.append(f"第{w + 1}周：{'、'.join(part)}。周末做一个小练习，检查学到的内容。")
    lines.append("\n准备一个笔记本记录问题；每周开始新内容前，先花二十分钟复习上一周；某个主题花的时间长一点也没关系，理解比速度更重要。")
    return q, "\n".join(lines)


_MAKERS = [_mult_en, _mult_zh, _email_en, _email_zh, _trip_en, _trip_zh, _table_en, _table_zh, _plan_en, _plan_zh]


def longform_records(n: int = 40, seed: int = 0, exclude: set[str] | None = None) -> list[dict]:
    """n chat records, cycling through the generators (so both languages and every kind appear)."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    out = []
    i = 0
    while len(out) < n:
        q, a = _MAKERS[i % len(_MAKERS)](rng)
        i += 1
        if q in seen:
            continue
        seen.add(q)
        out.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return out


def heldout_longform(n: int = 10, train_seed: int = 0, train_n: int = 40) -> list[dict]:
    """Prompts of the same kinds that are not in `longform_records(train_n, train_seed)`."""
    train = {r["messages"][0]["content"] for r in longform_records(train_n, train_seed)}
    return longform_records(n, seed=train_seed + 1000, exclude=train)
