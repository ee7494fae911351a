"""The generation check runs in real (tiny) training runs and steers the verdict and the best checkpoint."""

import json

import pytest

from conftest import read_metrics, tiny_config, write_config
from tunewise.cli import main


@pytest.fixture(scope="module")
def checked_run(tmp_path_factory, module_home):

    from tunewise.samples.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("gencheck")
    data = write_demo_dataset(root / "demo.jsonl")
    cfg = tiny_config(root, data, train={"max_steps": 12, "eval_steps": 4, "generation_check_samples": 4,
                                         "learning_rate": 2e-3})
    assert main(["train", str(write_config(root / "c.yaml", cfg))]) == 0
    return root / "runs" / "t"


def test_check_is_logged_before_training_and_at_each_evaluation(checked_run):
    rows = read_metrics(checked_run)
    first = rows[0]
    assert first["event"] == "before_training" and first["step"] == 0
    assert 0 <= first["gen_stop_rate"] <= 1 and "key_terms" in first
    evals = [r for r in rows if "val_loss" in r]
    assert len(evals) == 3 and all("gen_stop_rate" in r and "guarded_val_loss" in r for r in evals)
    for r in evals:  # guarded = loss + penalties, never below the loss
        assert r["guarded_val_loss"] >= r["val_loss"] - 1e-9
    final = next(r for r in rows if r.get("event") == "final_eval")
    assert "final_gen_stop_rate" in final


def test_best_checkpoint_is_chosen_on_the_guarded_loss(checked_run):
    from transformers import TrainerState

    ck = sorted((checked_run / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    state = TrainerState.load_from_json(str(ck / "trainer_state.json"))
    guarded = {r["step"]: r["guarded_val_loss"] for r in read_metrics(checked_run) if "guarded_val_loss" in r}
    assert state.best_metric == pytest.approx(min(guarded.values()), rel=1e-6)


def test_a_model_that_never_stops_is_not_called_well_fit(checked_run):
    # a tiny random model cannot have learned to end its turn in 12 steps
    d = json.loads((checked_run / "diagnosis.json").read_text())
    rows = read_metrics(checked_run)
    final = next(r for r in rows if r.get("event") == "final_eval")
    if final["final_gen_stop_rate"] < 0.9:
        assert d["verdict"] in ("does_not_stop", "diverged") and "curve_verdict" in d["evidence"]
    assert (checked_run / "curves.png").stat().st_size > 0


def test_check_off_uses_the_plain_validation_loss(tmp_path, demo_jsonl, tiny_model_dirs):
    cfg = tiny_config(tmp_path, demo_jsonl, train={"max_steps": 4, "eval_steps": 2, "generation_check": False})
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    rows = read_metrics(tmp_path / "runs" / "t")
    assert not any("gen_stop_rate" in r for r in rows) and not any("guarded_val_loss" in r for r in rows)


def test_probe_prefers_short_references_and_leaves_room(tiny_model_dirs):
    from transformers import AutoTokenizer

    from tunewise.templates import choose_template
    from tunewise.train.behaviour import build_probe

    tok = AutoTokenizer.from_pretrained(tiny_model_dirs["tiny-llama"])
    tpl = choose_template("auto", tok, "llama")
    short = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "yes"}]} for i in range(6)]
    long = [{"messages": [{"role": "user", "content": f"long {i}"}, {"role": "assistant", "content": "word " * 400}]}
            for i in range(6)]
    p = build_probe(long + short, short, tok, tpl, samples=4, seed=0)
    assert len(p.prompts) == 4 and all(r == "yes" for r in p.references)  # the long ones are left out
    assert p.max_new_tokens >= 1.5 * max(p.ref_tokens) + 16
    assert build_probe([], short, tok, tpl, samples=4) is None


def test_check_keeps_to_its_share_of_the_training_time(monkeypatch):
    """A due check is skipped (rates carried forward) while the checks so far took more than `budget` of the
    training time; the first one and a forced one always run."""
    from tunewise.train import behaviour

    now = [0.0]

    def two_seconds(model, probe, decode, batch_size):
        now[0] += 2.0
        return {"gen_stop_rate": now[0], "_texts": []}

    monkeypatch.setattr(behaviour, "measure", two_seconds)

    def run(budget: float, evals: int = 30) -> tuple:
        now[0] = 0.0
        check = behaviour.GenerationCheck(None, None, budget=budget, clock=lambda: now[0])
        check.start_clock()
        fresh = []
        for _ in range(evals):
            now[0] += 1.0  # a second of training between evaluations
            rates = check.at_evaluation(None)
            fresh.append(check.fresh)
            assert rates is check.latest
        return check, fresh

    check, fresh = run(1.0)
    assert all(fresh) and check.skipped == 0
    check, fresh = run(0.2)
    assert fresh[0] and not all(fresh) and check.skipped == fresh.count(False)
    assert check.spent <= 0.2 * now[0] + 2.0  # within budget, give or take the one check that crossed it
    assert sum(fresh) >= 3  # and the budget is used, not wasted (~7.5 s of ~37.5 s: about four checks)
    check.force_next = True
    check.at_evaluation(None)
    assert check.fresh and not check.force_next
    check, fresh = run(0.0, evals=5)
    assert fresh == [True, False, False, False, False]



def test_the_closing_line_says_when_the_checks_took_more_than_their_budget():
    """Checks at evaluations that could become the best run past the budget while answers misbehave (measured:
    SmolLM2 on the identity set, 189 s of 342 s); the run's closing lines then say so, with what to set."""
    from tunewise.train.behaviour import GenerationCheck

    check = GenerationCheck(None, None, budget=0.2)
    check.spent, check.measured, check.skipped = 189.0, 8, 4
    line = check.cost_line(342.0)
    assert line.startswith("generation checks took 189 s of 342 s of training (55%")
    assert "20%" in line and "8 ran, 4 carried" in line and "train.generation_check_every" in line
    assert check.cost_line(1000.0) is None  # within its budget: nothing to say
    assert check.cost_line(None) is None
    assert GenerationCheck(None, None, budget=1.0).cost_line(342.0) is None  # no budget set

def test_over_budget_a_possible_best_carries_only_clean_rates(monkeypatch):
    """Over the budget, an evaluation that could become the best checkpoint is measured while the latest answers
    misbehaved (the best-checkpoint choice depends on the rates) and carries them once they were clean."""
    from tunewise.train import behaviour

    now, stop = [0.0], [0.5]

    def measure(model, probe, decode, batch_size):
        now[0] += 10.0  # far over any budget
        return {"gen_stop_rate": stop[0], "_texts": []}

    monkeypatch.setattr(behaviour, "measure", measure)
    check = behaviour.GenerationCheck(None, None, budget=0.2, clock=lambda: now[0])
    check.start_clock()
    fresh = []
    for i in range(6):
        now[0] += 1.0
        if i == 3:
            stop[0] = 1.0  # the answers start to stop
        check.at_evaluation(None, candidate=True)
        fresh.append(check.fresh)
    # 0-2: rates at 0.5 (a problem): every candidate measured; 3: measured, now clean; 4-5: carried
    assert fresh == [True, True, True, True, False, False] and check.clean and check.skipped == 2
    check.at_evaluation(None, candidate=False)
    assert not check.fresh
    stop[0] = 0.9
    check.force_next = True
    check.at_evaluation(None, candidate=True)
    assert check.fresh and not check.clean
    check.at_evaluation(None, candidate=True)
    assert check.fresh  # misbehaving again: a possible best is measured


def test_the_saved_model_is_scored_afresh_when_its_rates_were_carried():
    from types import SimpleNamespace

    from tunewise.train.workflow import logged_best_eval

    row = {"step": 8, "eval_loss": 1.0, "gen_stop_rate": 1.0}
    trainer = SimpleNamespace(state=SimpleNamespace(best_model_checkpoint="/r/checkpoints/checkpoint-8",
                                                    log_history=[{"step": 8, "loss": 2.0}, row]),
                              args=SimpleNamespace(load_best_model_at_end=True), gen_fresh_steps={4, 8})
    check = object()
    assert logged_best_eval(trainer, check) is row
    trainer.gen_fresh_steps = {4}  # step 8's rates were carried from step 4: measured again at the end
    assert logged_best_eval(trainer, check) is None
    assert logged_best_eval(trainer, None) is row  # no check: the loss alone is what was logged


def test_over_its_budget_the_check_skips_only_evaluations_that_cannot_become_best(tmp_path, demo_jsonl,
                                                                                tiny_model_dirs, monkeypatch, capfd):
    """Budget 0: every evaluation whose loss is below the best guarded loss so far is checked afresh (it could
    become the best checkpoint), every other one carries the latest rates; the saved model's rates are measured."""
    from tunewise.train import behaviour

    calls = []
    real = behaviour.measure
    monkeypatch.setattr(behaviour, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = tiny_config(tmp_path, demo_jsonl, train={"max_steps": 24, "eval_steps": 2, "generation_check_samples": 2,
                                                   "learning_rate": 5e-3, "generation_check_budget": 0.0,
                                                   "early_stopping": False})
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    rows = read_metrics(tmp_path / "runs" / "t")
    evals = [r for r in rows if "val_loss" in r]
    assert len(evals) == 12 and all("gen_stop_rate" in r for r in evals)
    best, candidates, expected, latest = None, 0, 0, None
    for r in evals:
        candidate = best is None or r["val_loss"] < best
        candidates += candidate
        # measured: the first, and a candidate unless the latest rates (fresh or carried: the same) were clean
        expected += latest is None or (candidate and behaviour.guarded_loss(0.0, latest) > 0)
        best = r["guarded_val_loss"] if best is None else min(best, r["guarded_val_loss"])
        latest = {k: v for k, v in r.items() if k.startswith("gen_")}
    assert candidates < len(evals), [r["val_loss"] for r in evals]  # the run has evaluations that cannot be best
    # before training + the measured ones; the saved model is scored again at the end only if its rates were carried
    assert len(calls) - 1 - expected in (0, 1), (len(calls), expected)
    final = next(r for r in rows if r.get("event") == "final_eval")
    assert "final_gen_stop_rate" in final
    checks = json.loads((tmp_path / "runs" / "t" / "train_summary.json").read_text())["generation_checks"]
    assert checks["measured"] == len(calls) - 1 and checks["carried_for_budget"] >= len(evals) - candidates
    assert checks["seconds"] >= 0
    assert "[tunewise] generation checks took" in capfd.readouterr().err  # over its budget of 0: said at the end
