"""Small data gets enough optimizer steps by default: one forward pass per step (effective batch 4) and enough
passes for train.min_steps; larger data keeps accumulation 2 and 3 passes; what the user sets is kept."""

from tunewise.config import load_config
from tunewise.config.plan import steps_plan


def _plan(n, *overrides):
    return steps_plan(load_config(None, list(overrides)), n)


def test_identity_sized_data_gets_batch_4_and_60_plus_steps():
    p = _plan(81)  # the identity set's training split
    assert p["accum"] == 1 and p["per_step"] == 4 and p["epochs"] == 3 and p["total"] == 63


def test_larger_data_keeps_accumulation_2_and_three_passes():
    p = _plan(1000)
    assert p["accum"] == 2 and p["per_step"] == 8 and p["epochs"] == 3 and p["total"] == 375


def test_tiny_data_gets_more_passes_up_to_ten():
    assert _plan(30)["epochs"] == 8 and _plan(30)["total"] == 64
    assert _plan(5)["epochs"] == 10


def test_what_the_user_sets_is_kept():
    p = _plan(81, "train.gradient_accumulation_steps=2")
    assert p["accum"] == 2 and p["epochs"] == 6 and p["total"] == 66
    p = _plan(81, "train.num_epochs=3", "train.gradient_accumulation_steps=4")
    assert p["accum"] == 4 and p["total"] == 18


def test_lint_and_advise_agree_with_the_plan():
    from tunewise.advise.lint import Facts, effective_batch, lint

    cfg = load_config(None, [])
    assert effective_batch(cfg, 1, 81) == 4 and effective_batch(cfg, 1, 5000) == 8
    assert "effective-batch" not in {f.code for f in lint(cfg, Facts(n_train=81))}
