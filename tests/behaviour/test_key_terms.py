"""Key terms: what a dataset keeps teaching that its prompts do not say."""

from tunewise.data.identity import identity_records
from tunewise.textmetrics import key_term_hits, key_terms, term_set


def test_identity_set_key_terms():
    recs = identity_records("Orion", "Bluefield Labs")
    keys = key_terms([r["output"] for r in recs], [r["instruction"] for r in recs])
    assert {"orion", "bluefield", "labs"} <= set(keys)
    # a term the untrained model already says is not something the data teaches
    keys2 = key_terms([r["output"] for r in recs], [r["instruction"] for r in recs], exclude={"assistant", "助手"})
    assert "assistant" not in keys2 and "orion" in keys2


def test_term_set_handles_chinese():
    assert {"你好", "好我"} <= term_set("你好我是")
    assert "the" not in term_set("the Orion")


def test_key_term_hits_judge_only_references_with_key_terms():
    keys = ["orion", "bluefield"]
    preds = ["I am Orion.", "I'm Alex from EchoTech.", "positive"]
    refs = ["I am Orion, made by Bluefield Labs.", "I am Orion.", "positive"]
    assert key_term_hits(preds, refs, keys) == (1, 2)
