"""Verdicts that watch the answers: never well_fit while they do not stop or do not carry the data's key terms."""

import numpy as np

from tunewise.curves.diagnose import diagnose, format_diagnosis

steps = np.arange(1, 61)


def _rows(stop, keys=None, final=None):
    train = 0.5 + 2.0 * np.exp(-steps / 8)
    rows = [{"step": 0, "epoch": 0.0, "event": "before_training", "gen_stop_rate": 0.0, "gen_key_term_rate": 0.0,
             "key_terms": ["orion", "bluefield"]}]
    rows += [{"step": int(s), "loss": float(v)} for s, v in zip(steps, train)]
    for j, s in enumerate(range(5, 61, 5)):
        r = {"step": s, "val_loss": float(0.6 + 2.0 * np.exp(-s / 8)), "gen_stop_rate": stop[j] if j < len(stop) else stop[-1]}
        if keys is not None:
            r["gen_key_term_rate"] = keys[j] if j < len(keys) else keys[-1]
        rows.append(r)
    if final is not None:
        rows.append({"step": 60, "event": "final_eval", "final_val_loss": 0.6, **final})
    return sorted(rows, key=lambda r: r["step"])


def test_good_loss_but_no_stop_is_does_not_stop():
    d = diagnose(_rows([0.0]))
    assert d.verdict == "does_not_stop" and d.evidence["curve_verdict"] == "well_fit"
    assert d.evidence["stop_rate"] == 0.0 and d.evidence["stop_rate_before"] == 0.0
    text = format_diagnosis(d)
    assert "stop_rate=0" in text and "max_new_tokens" in text  # the advice warns against hiding it
    assert d.advice["zh"]


def test_stops_but_misses_key_terms_is_not_learned_yet():
    d = diagnose(_rows([1.0], keys=[0.25]))
    assert d.verdict == "not_learned_yet" and d.evidence["key_term_rate"] == 0.25
    assert "orion" in d.evidence["key_terms"]


def test_stops_and_learned_keeps_the_curve_verdict():
    assert diagnose(_rows([0.5, 1.0], keys=[0.5, 1.0])).verdict == "well_fit"


def test_the_saved_result_is_judged_not_the_last_check():
    # the last check stopped, but the weights saved (measured after training) do not
    d = diagnose(_rows([1.0], keys=[1.0], final={"final_gen_stop_rate": 0.25, "final_gen_key_term_rate": 1.0}))
    assert d.verdict == "does_not_stop" and d.evidence["behaviour_measured"] == "saved result"


def test_best_step_follows_the_guarded_loss():
    rows = _rows([0.0, 0.0, 0.0, 1.0, 0.0])
    for r in rows:
        if "val_loss" in r:
            r["guarded_val_loss"] = r["val_loss"] + (1 - r["gen_stop_rate"])
    assert diagnose(rows).best_step == 20  # the only checkpoint whose answers stopped
