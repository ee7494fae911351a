import pytest

from tunewise.evaluate.blind import sign_test_p
from tunewise.evaluate.forgetting import forgetting_verdict
from tunewise.textmetrics import (bleu4, exact_match, perplexity, repetition_rate, rouge, score_generations,
                                       tokenize_for_metrics)


def test_tokenizer_is_chinese_aware_and_mixed():
    assert tokenize_for_metrics("我喜欢Python 3, really!") == ["我", "喜", "欢", "python", "3", "really"]


def test_rouge_identical_disjoint_and_partial():
    assert rouge(["the cat sat"], ["the cat sat"])["rougeL"] == pytest.approx(100)
    assert rouge(["dog runs"], ["the cat sat"])["rouge1"] == 0
    zh = rouge(["我喜欢猫"], ["我喜欢狗"])
    assert 0 < zh["rouge1"] < 100 and zh["rouge1"] == pytest.approx(75)
    assert zh["rouge2"] == pytest.approx(100 * 2 / 3)


def test_bleu_known_values():
    assert bleu4(["the cat is on the mat"], ["the cat is on the mat"]) == pytest.approx(100)
    assert bleu4(["xyz"], ["the cat"]) == 0
    # hand-computed: unigram 6/6... hypothesis shorter than reference gives a brevity penalty
    short = bleu4(["the cat is on"], ["the cat is on the mat"])
    assert 0 < short < 100
    import math

    p1, p2, p3, p4 = 4 / 4, (3 + 1) / (3 + 1), (2 + 1) / (2 + 1), (1 + 1) / (1 + 1)
    assert short == pytest.approx(100 * math.exp(1 - 6 / 4) * (p1 * p2 * p3 * p4) ** 0.25)


def test_exact_match_ignores_case_and_punctuation():
    assert exact_match(["Positive."], ["positive"]) == 100
    assert exact_match(["正面"], ["负面"]) == 0


def test_repetition_rate():
    assert repetition_rate("the cat the cat the cat the cat the cat the cat") > 0.5
    assert repetition_rate("a quick brown fox jumps over one lazy dog today") == 0
    assert repetition_rate("下次再来，下次再来，下次再来，下次再来") > 0.5


def test_score_generations_stop_and_length():
    items = [{"prompt": "p", "reference": "positive", "prediction": "positive", "hit_max_new_tokens": False, "num_new_tokens": 2},
             {"prompt": "p", "reference": "negative", "prediction": "blah blah blah", "hit_max_new_tokens": True, "num_new_tokens": 32}]
    s = score_generations(items)
    assert s["no_stop_rate"] == 0.5 and s["avg_answer_tokens"] == 17 and s["exact_match"] == 50


def test_perplexity_overflow_safe():
    assert perplexity(0.0) == 1.0 and perplexity(1e6) > 1e300 and perplexity(None) is None


def test_sign_test():
    assert sign_test_p(9, 1) == pytest.approx(0.0215, abs=1e-4)
    assert sign_test_p(5, 5) == 1.0


def test_forgetting_warns_with_bilingual_advice():
    before = {"general_text": {"perplexity": 10.0}, "rougeL": 40.0, "exact_match": 30.0}
    ok = forgetting_verdict(before, {"general_text": {"perplexity": 10.5}, "rougeL": 39.0, "exact_match": 30.0})
    assert not ok["warning"]
    bad = forgetting_verdict(before, {"general_text": {"perplexity": 14.0}, "rougeL": 20.0, "exact_match": 30.0})
    assert bad["warning"] and "perplexity" in bad["message"]["en"] and "困惑度" in bad["message"]["zh"]
    assert any("general" in a for a in bad["advice"]["en"]) and bad["advice"]["zh"]
