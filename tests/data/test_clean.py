"""Cleaning pipeline: every step changes or drops what it should, and says why."""

from conftest import clean_records
from tunewise.data.clean import CleanConfig


def conv(q, a, where="f.jsonl:1"):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "source": "s", "where": where}


def test_normalise_and_strip_markup():
    res = clean_records([conv("Ｈｅｌｌｏ　 world", "<p>Use <b>bold</b> &amp; stay</p>")], CleanConfig())
    m = res.kept[0]["messages"]
    assert m[0]["content"] == "Hello world" and m[1]["content"] == "Use bold & stay"
    steps = {s["step"]: s for s in res.steps}
    assert steps["unicode"]["changed"] == 1 and steps["markup"]["changed"] == 1


def test_ai_boilerplate_bilingual_and_extendable():
    recs = [conv("q1", "As an AI language model, I cannot."), conv("q2", "作为一个AI语言模型，我不能回答。"),
            conv("q3", "Sure: Paris."), conv("q4", "Per our policy, no.")]
    res = clean_records(recs, CleanConfig(extra_ai_phrases=["per our policy"]))
    assert [r["messages"][0]["content"] for r in res.kept] == ["q3"]
    assert all(d["step"] == "ai_phrases" and "boilerplate" in d["reason"] for d in res.dropped)


# The guides' own examples of AI boilerplate, as they appear in scraped or distilled data: spacing, punctuation,
# case and full-width variants of the listed phrases.
GUIDE_EXAMPLES = [
    "作为一个 AI 语言模型，我无法提供个人意见。",
    "作为一个AI语言模型,我不能这样做。",
    "作为一个ＡＩ语言模型，我没有情感。",
    "作为 一个 人工智能 语言模型，我只能提供一般信息。",
    "抱歉，我不能生成有害或攻击性内容。",
    "我不会输出有害或 攻击性 内容！",
    "我是由 OpenAI 训练的大型语言模型。",
    "我是由OpenAI训练的模型。",
    "I am a large language model trained by OpenAI.",
    "I was trained by OpenAI, so I cannot say.",
    "As an AI language model, I cannot have opinions.",
    "As an AI-language model I can't do that.",
    "as an A.I. language model, i don't know.",
    "I'm sorry, but as an AI, I cannot help with that.",
    "AS AN AI LANGUAGE MODEL I MUST DECLINE.",
]
CLEAN_LOOKALIKES = [
    "She has an aim: language modelling for low-resource languages.",
    "这个 AI 语言模型的训练方法分为三步。",
    "The gas analyser trained by the lab staff works well.",
    "有害气体和攻击性行为都要报告。",
]


def test_ai_boilerplate_catches_the_guides_examples_in_any_spacing():
    recs = [conv(f"q{i}", a) for i, a in enumerate(GUIDE_EXAMPLES + CLEAN_LOOKALIKES)]
    res = clean_records(recs, CleanConfig(dedup_near=False))
    kept = [r["messages"][1]["content"] for r in res.kept]
    assert kept == CLEAN_LOOKALIKES, [d["record"]["messages"][1]["content"] for d in res.dropped if d["step"] != "ai_phrases"]
    assert len(res.dropped) == len(GUIDE_EXAMPLES) and all(d["step"] == "ai_phrases" for d in res.dropped)
    assert "'有害或攻击性内容'" in res.dropped[4]["reason"]  # the reason names the phrase as listed


def test_user_phrases_are_normalised_too(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text("# company boilerplate\n本回答由 某某 智能助手 生成\n", encoding="utf-8")
    recs = [conv("q1", "本回答由某某智能助手生成。"), conv("q2", "Per Our-Policy: no."), conv("q3", "Paris.")]
    res = clean_records(recs, CleanConfig(ai_phrases_file=str(f), extra_ai_phrases=["per our policy"]))
    assert [r["messages"][0]["content"] for r in res.kept] == ["q3"]


def test_empty_short_long():
    recs = [conv("q", "   "), conv("q", "ok"), conv("q", "a fine answer"), {"text": "x" * 50, "source": "s", "where": "t:1"}]
    res = clean_records(recs, CleanConfig(min_chars=3, max_chars=40))
    assert len(res.kept) == 1
    reasons = sorted(d["reason"].split(":")[0] for d in res.dropped)
    assert reasons == ["empty assistant turn", "too long", "too short"]


def test_exact_and_near_duplicates_chinese():
    a = "今天天气很好，我们一起去公园散步，然后在湖边喝咖啡聊天。"
    b = "今天天气很好，我们一起去公园散步，然后在湖边喝咖啡聊天！"  # one character differs
    c = "机器学习模型需要大量数据来训练，数据质量决定了效果。"
    recs = [conv("写一句话", a, "f:1"), conv("写一句话", a, "f:2"), conv("写一句话", b, "f:3"), conv("写一句话", c, "f:4")]
    res = clean_records(recs, CleanConfig())
    assert [r["where"] for r in res.kept] == ["f:1", "f:4"]
    by = {d["where"]: d for d in res.dropped}
    assert by["f:2"]["step"] == "dedup_exact" and "f:1" in by["f:2"]["reason"]
    assert by["f:3"]["step"] == "dedup_near" and "f:1" in by["f:3"]["reason"]


def test_unknown_clean_key_is_a_config_error(tmp_path):
    import pytest

    from conftest import write_config
    from tunewise.config import load_config
    from tunewise.errors import ConfigError

    with pytest.raises(ConfigError, match="data.clean.dedup_nearr.*data.clean.dedup_near"):
        load_config(write_config(tmp_path / "c.yaml", {"data": {"clean": {"dedup_nearr": False}}}))


def test_data_prepare_cli_reports_steps_and_histogram(tmp_path, tiny_model_dirs, capsys):
    import json

    from conftest import write_config
    from tunewise.cli import main

    data = tmp_path / "d.jsonl"
    import random

    rng = random.Random(0)
    words = "apple river stone cloud music paper garden silver window forest candle rocket bridge ocean".split()
    rows = [{"instruction": " ".join(rng.sample(words, 6)), "output": " ".join(rng.sample(words, 8))} for i in range(20)]
    rows += [rows[0], {"instruction": "x", "output": "As an AI language model, I refuse."}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = write_config(tmp_path / "c.yaml", {"model": {"name_or_path": "tiny-llama"}, "run": {"root": str(tmp_path / "runs")},
                                             "data": {"datasets": [str(data)], "val_size": 0.1}})
    code = main(["data", "prepare", str(cfg)])
    err = capsys.readouterr().err
    assert code == 0, err
    d = tmp_path / "runs" / "c" / "data"
    stats = json.loads((d / "stats.json").read_text())
    assert stats["dropped_by_step"] == {"ai_phrases": 1, "dedup_exact": 1}
    assert (d / "lengths.png").read_bytes()[:4] == b"\x89PNG"
    dropped = [json.loads(x) for x in (d / "dropped.jsonl").read_text().splitlines()]
    assert {x["step"] for x in dropped} == {"ai_phrases", "dedup_exact"} and all(x["where"] for x in dropped)
    assert "dedup_exact" in err and "dropped.jsonl" in err


def test_chinese_punctuation_survives_normalisation():
    res = clean_records([conv("什么是ＡＩ？", "人工智能（AI）是……一门学科，对吧！\u200b")], CleanConfig())
    m = res.kept[0]["messages"]
    assert m[0]["content"] == "什么是AI？" and m[1]["content"] == "人工智能（AI）是……一门学科，对吧！"


def test_markup_step_leaves_code_generics_alone():
    res = clean_records([conv("Java?", "Use List<String> names = new ArrayList<>(); if a < b && <b>c</b>")], CleanConfig())
    assert res.kept[0]["messages"][1]["content"] == "Use List<String> names = new ArrayList<>(); if a < b && c"


def test_every_step_can_be_switched_off():
    recs = [conv("q", "<b>As an AI language model</b> Ｈｉ"), conv("q", "<b>As an AI language model</b> Ｈｉ")]
    res = clean_records(recs, CleanConfig(normalize_unicode=False, strip_markup=False, ai_phrases=False,
                                          dedup_exact=False, dedup_near=False))
    assert len(res.kept) == 2 and res.kept[0]["messages"][1]["content"] == recs[0]["messages"][1]["content"]
    assert [s["step"] for s in res.steps] == ["empty", "length"]


# ---------------------------------------------------------------------------------------- fast paths, same results
def _old_normalize_text(s):
    """normalize_text before its fast paths (every substitution on every text)."""
    import re

    from tunewise.data.clean import _INVISIBLE, _WS, _nfkc_keep_cjk_punct

    s = _INVISIBLE.sub("", _nfkc_keep_cjk_punct(s)).replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n{3,}", "\n\n", re.sub(r" *\n *", "\n", _WS.sub(" ", s))).strip()


def test_fast_paths_give_what_every_rule_everywhere_gave():
    import random
    import re

    from tunewise.data.clean import _INNER, PhraseMatcher, load_phrases, normalize_text, phrase_form

    rng = random.Random(3)
    alphabet = list("ab AZ09_.'\u2018\u2019\t\n\r \u00a0\u3000\u200b\x00，。？！…“”ＡＢ１ﬁé中文<>&;") + ["  ", "\n\n\n", " \n ", "\r\n"]
    for _ in range(20000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert normalize_text(s) == _old_normalize_text(s), repr(s)
    # the mark-first look-behind removes exactly what the look-behind-first pattern removed, next to any character
    old_inner = re.compile(r"(?<=[^\W\d_])[.'\u2018\u2019](?=[^\W\d_])")
    for c in range(0x3000):
        for t in (chr(c) + ".a", "a'" + chr(c), chr(c) + "\u2019" + chr(c)):
            assert _INNER.sub("", t) == old_inner.sub("", t), hex(c)
    # the key-unit filter finds the phrase the full scan finds, in the list's order, on phrases written every which way
    phrases = load_phrases(CleanConfig(extra_ai_phrases=["foo_bar baz", "Ｘ.Y z"]))
    matcher = PhraseMatcher(phrases)
    written = list(phrases.values()) + ["A.I.", "I'm", "ＡＩ", "the", "_", "作为"]
    hits = 0
    for _ in range(5000):
        parts = [rng.choice(written) for _ in range(rng.randint(0, 3))]
        s = rng.choice(["", " ", "-", "，"]).join(p.upper() if rng.random() < 0.3 else p for p in parts)
        form = phrase_form(s)
        want = next((phrases[p] for p in phrases if p in form), None)
        assert matcher(s) == want, s
        hits += want is not None
    assert hits > 1000
