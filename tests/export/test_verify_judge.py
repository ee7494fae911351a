"""The verdict logic alone: which mismatch is named as the cause, and the tolerance by GGUF type."""

import pytest

from tunewise.export.verify import judge
from tunewise.templates import ChatTemplate

T = ChatTemplate(name="gemma", chat_template="", stop_strings=["<end_of_turn>", "<eos>"], stop_token_ids=[106, 1])


def row(**kw):
    r = {"template_match": True, "prompt_tokens_match": True, "tokenizer_match": True, "hf_stopped": True,
         "gguf_stopped": True, "gguf_stop_token": "<end_of_turn>", "hf_tokens": 10, "gguf_tokens": 10,
         "match_tokens_prefix": 10, "_train_text": "<bos><start_of_turn>user\nhi", "_gguf_text": "<|im_start|>user\nhi"}
    r.update(kw)
    return r


def test_all_agree_passes_and_hides_internal_fields():
    v = judge([row(), row()], "f16", T, has_modelfile=True)
    assert v["status"] == "PASS" and v["cause"] is None and v["prefix_agreement"] == 1.0
    assert all(not k.startswith("_") for p in v["prompts"] for k in p)


def test_template_is_named_before_anything_else():
    v = judge([row(template_match=False, prompt_tokens_match=False, gguf_stopped=False)], "f16", T, has_modelfile=True)
    assert v["status"] == "FAIL" and v["cause"].startswith("template") and "Modelfile TEMPLATE" in v["cause"]


def test_tokenizer_then_stop():
    v = judge([row(prompt_tokens_match=False, tokenizer_match=False)], "f16", T, has_modelfile=False)
    assert v["cause"].startswith("tokenizer mismatch") and "identical text" in v["cause"]
    v = judge([row(gguf_stopped=False, gguf_tokens=32, match_tokens_prefix=10)], "f16", T, has_modelfile=True)
    assert v["cause"].startswith("EOS/stop") and "<end_of_turn>" in v["cause"] and "PARAMETER stop" in v["fix"]


@pytest.mark.parametrize("gtype,prefix,status", [("f16", 9, "PASS"), ("f16", 5, "FAIL"), ("q8_0", 5, "PASS"),
                                                 ("q4_k_m", 3, "PASS"), ("q4_k_m", 1, "FAIL"),
                                                 ("f32", 8, "FAIL")])
def test_drift_tolerance_by_type(gtype, prefix, status):
    v = judge([row(match_tokens_prefix=prefix)], gtype, T, has_modelfile=False)
    assert v["status"] == status
    if status == "FAIL":
        assert ("quantisation" in v["cause"]) == (gtype in ("q8_0", "q4_k_m"))


def test_two_empty_answers_agree():
    v = judge([row(hf_tokens=0, gguf_tokens=0, match_tokens_prefix=0)], "f16", T, has_modelfile=True)
    assert v["status"] == "PASS" and v["prefix_agreement"] == 1.0


@pytest.mark.parametrize("err,status", [(0.0, "PASS"), (0.14, "PASS"), (0.16, "FAIL"), (1.2, "FAIL"), (None, "FAIL")])
def test_free_running_split_at_a_near_tie_is_not_drift_when_teacher_forced_logits_agree(err, status):
    # The answers part at token 2 (prefix 20%, below q8_0's 50%); reading the trained model's answer the GGUF's
    # logits are off by `err` relative to their spread (q8_0 allows 15%; None: nothing could be compared).
    v = judge([row(match_tokens_prefix=2, logit_error=err)], "q8_0", T, has_modelfile=False)
    assert v["status"] == status and v["logit_error"] == err
    if status == "FAIL":
        assert "quantisation drift" in v["cause"] and (err is None or f"{err:.1%}" in v["cause"])


def test_a_stop_after_the_answers_parted_is_drift_not_a_missing_eos():
    """Measured on SmolLM2 q8_0: the GGUF took the other side of a near-tie at token 14 ("a galactic AI team"
    against "a team of scientists"), so the trained model stopped at 24 tokens and the GGUF's different sentence ran
    on. The EOS is declared and works on the other prompts: the stop difference follows from the drift."""
    parted = row(hf_tokens=24, gguf_tokens=32, match_tokens_prefix=14, gguf_stopped=False, gguf_stop_token=None,
                 logit_error=0.036)
    v = judge([parted, row(logit_error=0.04)], "q8_0", T, has_modelfile=True)
    assert v["status"] == "PASS" and v["stops_agree"]
    # the same point reached and not stopped there: the missing stop is named
    ran_on = row(hf_tokens=24, gguf_tokens=32, match_tokens_prefix=24, gguf_stopped=False, gguf_stop_token=None,
                 logit_error=0.036)
    v = judge([ran_on, row(logit_error=0.04)], "q8_0", T, has_modelfile=True)
    assert v["status"] == "FAIL" and v["cause"].startswith("EOS/stop")
