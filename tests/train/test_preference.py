"""Preference training on the SFT engine (train/preference.py): the losses, the log-probabilities, the reference
that is never a second model, and each stage learning a separable toy preference on a tiny model."""

import math
import random

import pytest
import torch

from tunewise.config.schema import Config, PreferenceConfig
from tunewise.train.preference import preference_loss, sequence_logps

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Delhi", "Seoul", "Hanoi", "Dakar", "Accra"]


def _pairs(n: int, seed: int = 0) -> list[dict]:
    """Separable: the chosen answer is a short polite sentence, the rejected one a curt refusal."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        city = rng.choice(CITIES)
        q = f"Question {i}: tell me about {city}."
        out.append({"messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": f"Sure! {city} is a lovely city."}],
                    "rejected": "No. Go away.", "label": None})
    return out


def _kto(n: int) -> list[dict]:
    out = []
    for p in _pairs(n):
        good = {"messages": p["messages"], "label": True}
        bad = {"messages": [p["messages"][0], {"role": "assistant", "content": p["rejected"]}], "label": False}
        out += [good, bad]
    return out


# ------------------------------------------------------------------------------------------------ the losses
def _lp(*xs):
    return torch.tensor(xs, dtype=torch.float32)


@pytest.mark.parametrize("stage,kw", [("dpo", {}), ("dpo", {"loss_type": "ipo"}), ("dpo", {"loss_type": "hinge"}),
                                      ("simpo", {}), ("orpo", {})])
def test_pair_losses_prefer_the_chosen_answer(stage, kw):
    pref = PreferenceConfig(**kw)
    n = _lp(4, 4, 4, 4)
    ref = _lp(-8, -8, -8, -8)
    better = preference_loss(stage, pref, _lp(-4, -12), n[:2], ref[:2])[0]     # chosen likelier than rejected
    worse = preference_loss(stage, pref, _lp(-12, -4), n[:2], ref[:2])[0]
    assert float(better) < float(worse)
    loss, m = preference_loss(stage, pref, _lp(-4, -12), n[:2], ref[:2])
    assert m["rewards/accuracies"] == 1.0 and m["rewards/margins"] > 0 and m["length/chosen"] == 4


def test_dpo_numbers_match_the_paper():
    pref = PreferenceConfig(beta=0.1)
    # policy equals reference: margin 0, loss log 2
    loss, m = preference_loss("dpo", pref, _lp(-5, -7), _lp(3, 3), _lp(-5, -7))
    assert math.isclose(float(loss), math.log(2), rel_tol=1e-6) and m["rewards/margins"] == 0
    # margin (chosen +2, rejected -2 against the reference): -log sigmoid(0.1 * 4)
    loss, _ = preference_loss("dpo", pref, _lp(-3, -9), _lp(3, 3), _lp(-5, -7))
    assert math.isclose(float(loss), -math.log(1 / (1 + math.exp(-0.4))), rel_tol=1e-6)
    smooth, _ = preference_loss("dpo", PreferenceConfig(beta=0.1, label_smoothing=0.2), _lp(-3, -9), _lp(3, 3), _lp(-5, -7))
    assert float(smooth) > float(loss)  # some pairs assumed flipped: a confident margin costs more


def test_simpo_is_length_normalised_and_needs_no_reference():
    pref = PreferenceConfig()  # simpo: beta 2.0, gamma 1.0
    # same per-token log-probability, different lengths: no preference either way beyond the margin
    loss, m = preference_loss("simpo", pref, _lp(-10, -20), _lp(10, 20), None)
    assert m["rewards/margins"] == pytest.approx(0.0) and float(loss) == pytest.approx(-math.log(1 / (1 + math.e)))


def test_sft_weight_adds_the_chosen_nll():
    base, _ = preference_loss("dpo", PreferenceConfig(), _lp(-6, -9), _lp(3, 3), _lp(-6, -9))
    with_sft, _ = preference_loss("dpo", PreferenceConfig(sft_weight=0.5), _lp(-6, -9), _lp(3, 3), _lp(-6, -9))
    assert float(with_sft) == pytest.approx(float(base) + 0.5 * 2.0)


def test_kto_estimates_its_kl_on_mismatched_rows(tmp_path, tiny_model_dirs):
    """Each KTO example carries a row of its own prompt with the next example's answer; the loss's reference point
    comes from those rows (clipped at 0, no gradient), not from the batch's own answers."""
    from tunewise.train.preference import PreferenceCollator

    cfg = _cfg(tmp_path, "kto")
    _, tok, _, train_ds, _ = _setup(cfg, tiny_model_dirs, _kto(3), [])
    ex = [train_ds[i] for i in range(len(train_ds))]
    for i, e in enumerate(ex):
        nxt = ex[(i + 1) % len(ex)]["answer"]
        p_own = next(k for k, y in enumerate(e["answer"].labels) if y != -100)
        p_next = next(k for k, y in enumerate(nxt.labels) if y != -100)
        assert e["kl"].input_ids == e["answer"].input_ids[:p_own] + nxt.input_ids[p_next:]
    batch = PreferenceCollator(tok.pad_token_id or 0)(ex[:4])
    assert batch["kl_input_ids"].shape[0] == 4 and batch["input_ids"].shape[0] == 4
    pref = PreferenceConfig()
    logp, n, ref = _lp(-5, -5), _lp(4, 4), _lp(-5, -5)
    label = torch.tensor([True, False])
    _, m_zero = preference_loss("kto", pref, logp, n, ref, label, kl_ratio=_lp(-1.0, -3.0))
    _, m_pos = preference_loss("kto", pref, logp, n, ref, label, kl_ratio=_lp(2.0, 4.0))
    assert m_zero["kl"] == 0.0 and m_pos["kl"] == pytest.approx(3.0)


def test_kto_pushes_desirable_up_and_undesirable_down():
    pref = PreferenceConfig()
    label = torch.tensor([True, False])
    ref = _lp(-8, -8)
    up = torch.tensor([-8.0, -8.0], requires_grad=True)
    loss, m = preference_loss("kto", pref, up, _lp(4, 4), ref, label)
    loss.backward()
    assert up.grad[0] < 0 and up.grad[1] > 0  # lowering the loss raises the desirable, lowers the undesirable
    assert "rewards/chosen" in m and "rewards/rejected" in m


# ------------------------------------------------------------------------------------ on a tiny model
def _cfg(tmp_path, stage: str, method: str = "lora", **pref) -> Config:
    return Config.model_validate({
        "run": {"root": str(tmp_path / "runs"), "name": stage},
        "model": {"name_or_path": "tiny-llama"},
        "data": {"datasets": [{"path": "unused.jsonl"}], "max_length": 64},
        "method": {"name": method, "lora_r": 8, "lora_alpha": 16, "train_stop_tokens": method == "lora"},
        "train": {"stage": stage, "learning_rate": 5e-3 if method == "lora" else 1e-3, "per_device_batch_size": 4,
                  "gradient_accumulation_steps": 1, "max_steps": 24, "logging_steps": 4, "eval_steps": 12,
                  "generation_check": False, "early_stopping": False},
        "preference": pref,
    })


def _setup(cfg, tiny_model_dirs, records_train, records_val):
    from tunewise.models.load import resolve_model
    from tunewise.templates import ChatTemplate
    from tunewise.models.load import load_tokenizer
    from tunewise.train.assemble import load_for_training, ready_for_training
    from tunewise.train.data import encode_preference_for
    from tunewise.train.preference import PreferenceDataset

    resolved = resolve_model("tiny-llama")
    tok = load_tokenizer(resolved.path)
    template = ChatTemplate.from_registry("llama3", tok)
    tr, _ = encode_preference_for(cfg, tok, template, records_train)
    va, _ = encode_preference_for(cfg, tok, template, records_val, first_index=len(tr))
    model = load_for_training(cfg, resolved, tokenizer=tok, template=template)
    ready_for_training(cfg, model)
    return model, tok, template, PreferenceDataset(tr), PreferenceDataset(va)


def _trainer(cfg, tmp_path, model, tok, train_ds, val_ds, reference):
    from tunewise.train.assemble import build_trainer

    trainer, _ = build_trainer(cfg, model, train_ds, val_ds, out=tmp_path / "out", pad_id=tok.pad_token_id or 0,
                               report=False, reference=reference)
    return trainer


def test_sequence_logps_match_the_full_logits(tmp_path, tiny_model_dirs):
    from tunewise.train.preference import PreferenceCollator

    cfg = _cfg(tmp_path, "dpo")
    model, tok, template, train_ds, _ = _setup(cfg, tiny_model_dirs, _pairs(4), [])
    batch = PreferenceCollator(tok.pad_token_id or 0)([train_ds[i] for i in range(4)])
    with torch.no_grad():
        fast, n = sequence_logps(model, batch, chunk_size=5)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    y = batch["labels"][:, 1:]
    mask = y != -100
    full = (torch.gather(logits.log_softmax(-1), 2, y.clamp(min=0)[..., None])[..., 0] * mask).sum(1)
    assert torch.allclose(fast, full, atol=1e-4) and torch.equal(n, mask.sum(1))
    # the chosen rows come first, then the rejected ones; each supervises its answer and one end-of-turn
    eot = template.stop_token_ids[0]
    for row in range(8):
        sup = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert sup.count(eot) == 1 and sup[-1] == eot


def test_the_reference_is_the_same_model_with_its_adapter_off(tmp_path, tiny_model_dirs):
    """No second copy: with the adapter switched off the policy computes exactly what the base computes."""
    from transformers import AutoModelForCausalLM

    from tunewise.train.preference import PreferenceCollator

    cfg = _cfg(tmp_path, "dpo")
    model, tok, _, train_ds, _ = _setup(cfg, tiny_model_dirs, _pairs(4), [])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.add_(0.05)  # a trained adapter
    batch = PreferenceCollator(tok.pad_token_id or 0)([train_ds[i] for i in range(4)])
    trainer = _trainer(cfg, tmp_path, model, tok, train_ds, None, "adapter_off")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["tiny-llama"], dtype=torch.float32)
    with torch.no_grad():
        want = sequence_logps(base, batch)[0]
        ref = trainer._reference_logps(model, batch)
        policy = sequence_logps(model, batch)[0]
    assert torch.allclose(ref, want, atol=1e-4)
    assert not torch.allclose(policy, want, atol=1e-3)
    assert not [m for m in vars(trainer).values() if isinstance(m, torch.nn.Module) and m is not model
                and sum(p.numel() for p in m.parameters()) > 1000]


@pytest.mark.parametrize("stage,method,pref", [
    ("dpo", "lora", {}), ("dpo", "lora", {"loss_type": "ipo"}), ("dpo", "lora", {"precompute_reference": True}),
    ("dpo", "full", {}), ("simpo", "lora", {}), ("orpo", "lora", {}), ("kto", "lora", {}),
    ("kto", "lora", {"precompute_reference": True}),
])
def test_each_stage_learns_a_separable_preference(tmp_path, tiny_model_dirs, stage, method, pref):
    from tunewise.train.preference import PreferenceCollator

    cfg = _cfg(tmp_path, stage, method, **pref)
    train, val = (_kto(24), _kto(6)) if stage == "kto" else (_pairs(48), _pairs(12, seed=1))
    model, tok, _, train_ds, val_ds = _setup(cfg, tiny_model_dirs, train, val)
    from tunewise.train.preference import reference_mode

    reference = reference_mode(cfg, peft_result=method != "full", continued=False)
    assert reference == (None if stage in ("simpo", "orpo") else
                         "precomputed" if method == "full" or pref.get("precompute_reference") else "adapter_off")
    trainer = _trainer(cfg, tmp_path, model, tok, train_ds, val_ds, reference)
    if reference == "precomputed":
        trainer.precompute_reference([train_ds, val_ds])
        batch = PreferenceCollator(tok.pad_token_id or 0)([train_ds[i] for i in range(2)])
        with torch.no_grad():
            model.eval()
            ref = trainer._reference_logps(model, batch)  # kto: the answers' rows, then their KL rows
            assert torch.allclose(ref[:batch["input_ids"].shape[0]], sequence_logps(model, batch)[0], atol=1e-4)
            model.train()
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before["eval_loss"]
    if stage != "kto":
        assert after["eval_rewards/accuracies"] > 0.5 and after["eval_rewards/margins"] > before["eval_rewards/margins"]
    else:
        assert after["eval_rewards/chosen"] > after["eval_rewards/rejected"]
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert logged and all("rewards/chosen" in h for h in logged)


# ------------------------------------------------------------------------------------------- advice and lint
def test_preference_stages_get_a_tenth_of_the_sft_rate_and_the_lint_says_so(tmp_path):
    from tunewise.advise.lint import Facts, lint
    from tunewise.advise.lr import advise_lr
    from tunewise.config import load_config

    assert advise_lr("lora", "llama", 10_000, stage="dpo").value == pytest.approx(
        float(f"{advise_lr('lora', 'llama', 10_000).value * 0.1:.2g}"))
    assert "SFT rate" in advise_lr("full", "llama", 10_000, stage="kto").en
    f = tmp_path / "c.yaml"
    f.write_text("model: {name_or_path: tiny-llama}\ntrain: {stage: dpo}\ndata: {datasets: [{path: d.jsonl}]}\n")
    default = load_config(f)
    assert default.train.learning_rate == pytest.approx(2e-5)  # lora's 2e-4, a tenth
    assert "preference-high-lr" not in [x.code for x in lint(default, Facts(n_train=100))]
    sft_sized = load_config(f, ["train.learning_rate=2e-4"])
    found = [x for x in lint(sft_sized, Facts(n_train=100)) if x.code == "preference-high-lr"]
    assert found and "2e-05" in found[0].fix_en and found[0].key == "train.learning_rate"
    assert load_config(f, ["train.stage=sft"]).train.learning_rate == pytest.approx(2e-4)


# ------------------------------------------------------------------------------------------------ verdicts
def _rows(n: int, *, chosen_lp, rejected_lp=lambda i: -3.0, acc=lambda i: 0.8, eval_margin=None, gen=None,
          len_c=20.0, len_r=20.0) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        step = 5 * i
        r = {"step": step, "loss": 0.6 - 0.01 * i, "rewards/margins": 0.1 * i, "rewards/accuracies": acc(i),
             "logps/chosen": chosen_lp(i) * len_c, "logps/rejected": rejected_lp(i) * len_r,
             "length/chosen": len_c, "length/rejected": len_r}
        if i % 3 == 0:
            r["val_loss"] = 0.6 - 0.01 * i
            r.update({"eval_logps/chosen": chosen_lp(i) * len_c, "eval_logps/rejected": rejected_lp(i) * len_r,
                      "eval_length/chosen": len_c, "eval_length/rejected": len_r})
            if eval_margin is not None:
                r["eval_rewards/margins"] = eval_margin(i)
            if gen is not None:
                r["gen_answer_tokens"] = gen(i)
        rows.append(r)
    return rows


def test_preference_verdicts_name_what_went_wrong():
    from tunewise.curves.diagnose import diagnose, format_diagnosis

    healthy = diagnose(_rows(20, chosen_lp=lambda i: -1.0, rejected_lp=lambda i: -1.0 - 0.05 * i,
                             eval_margin=lambda i: 0.1 * i))
    assert healthy.verdict not in ("reward_hacking", "preference_overfit", "length_exploitation")
    hacking = diagnose(_rows(20, chosen_lp=lambda i: -1.0 - 0.1 * i))  # chosen answers 2 nats/token less likely
    assert hacking.verdict == "reward_hacking" and "chosen" in hacking.evidence["why"]
    # training batches that drew different rejected answers (their per-token mean jumps) are not evidence
    noisy = _rows(20, chosen_lp=lambda i: -1.0, rejected_lp=lambda i: -3.4 if i == 1 else -2.9)
    for r in noisy:
        if "eval_logps/rejected" in r:
            r["eval_logps/rejected"] = -3.3 * r["eval_length/rejected"]
    assert diagnose(noisy).verdict != "reward_hacking"
    assert "preference.beta" in " ".join(hacking.advice["en"]) and "preference.beta" in " ".join(hacking.advice["zh"])
    overfit = diagnose(_rows(20, chosen_lp=lambda i: -1.0, acc=lambda i: 1.0,
                             eval_margin=lambda i: 2.0 if i < 10 else 2.0 - 0.2 * (i - 9)))
    assert overfit.verdict == "preference_overfit"
    longer = diagnose(_rows(20, chosen_lp=lambda i: -1.0, len_c=60.0, len_r=20.0, gen=lambda i: 20 + 5 * i))
    assert longer.verdict == "length_exploitation" and longer.evidence["chosen_rejected_length_ratio"] == 3.0
    assert "reward_hacking" in format_diagnosis(hacking) and "证据" in format_diagnosis(hacking, "zh")


# ------------------------------------------------------------------------------------------------ evaluation
def test_eval_scores_pairs_and_warns_when_answers_grow(tmp_path, tiny_model_dirs):
    from tunewise.evaluate.runner import length_warning, pair_scores, report_table
    from tunewise.infer.generate import LoadedModel

    cfg = _cfg(tmp_path, "dpo")
    model, tok, template, _, _ = _setup(cfg, tiny_model_dirs, _pairs(2), [])
    model.eval()
    lm = LoadedModel(model, tok, template, "tuned")
    pairs = _pairs(6, seed=3)
    s = pair_scores(lm, pairs, cfg)
    assert s["pairs"] == 6 and 0.0 <= s["pair_accuracy"] <= 1.0
    flipped = pair_scores(lm, [{**p, "messages": [p["messages"][0], {"role": "assistant", "content": p["rejected"]}],
                                "rejected": p["messages"][1]["content"]} for p in pairs], cfg)
    assert s["pair_accuracy"] + flipped["pair_accuracy"] == pytest.approx(1.0)  # no ties: each pair counted once
    assert s["pair_margin_per_token"] == pytest.approx(-flipped["pair_margin_per_token"], abs=1e-5)
    before = {"sets": {"val": {"avg_answer_tokens": 20.0}}}
    grown = length_warning(before, {"sets": {"val": {"avg_answer_tokens": 30.0}}})
    assert grown and grown[0]["set"] == "val" and "+50%" in grown[0]["en"]
    assert not length_warning(before, {"sets": {"val": {"avg_answer_tokens": 22.0}}})
    _, rows = report_table({"sets": {"val": {"loss": 1.0}}}, {"sets": {"val": {"loss": 0.9}}})
    assert "pair_accuracy" not in [r[0] for r in rows]  # an SFT run's table has no preference rows


def test_advise_counts_both_answers_of_a_pair_and_names_what_dominates():
    from tunewise.advise.advise import recommend
    from tunewise.hardware import cpu_only
    from tunewise.train.memory import MethodParams, Shape, activation_bytes, estimate
    from tunewise.models.facts import synthetic_facts
    from tunewise.advise.report import format_advice

    facts = synthetic_facts(layers=12, hidden=768, intermediate=3072, heads=12, vocab=32000, tied=True)
    one = activation_bytes(facts, "lora", MethodParams(), Shape(batch=4, seq=256))
    two = activation_bytes(facts, "lora", MethodParams(), Shape(batch=4, seq=256, rows_per_example=2))
    assert two[0] > 1.9 * one[0]
    hw = cpu_only(ram_gib=16, cores=2)
    base = {"model": {"name_or_path": "x"}, "data": {"datasets": [{"path": "d.jsonl"}]}}
    sft = recommend(Config.model_validate(base), facts, hw, lengths=[200] * 400, supervised=[80] * 400)
    dpo = recommend(Config.model_validate({**base, "train": {"stage": "dpo"}}), facts, hw, lengths=[200] * 400,
                    supervised=[80] * 400)
    assert dpo["memory"]["lora"]["activations"] > sft["memory"]["lora"]["activations"]
    assert dpo["recommendations"]["train.learning_rate"] < sft["recommendations"]["train.learning_rate"]
    assert "what dominates for lora:" in format_advice(dpo) and "的内存大头" in format_advice(dpo, "zh")
    assert estimate(facts, "lora", MethodParams(), Shape(batch=4, seq=256, rows_per_example=2), hw).weights == \
        estimate(facts, "lora", MethodParams(), Shape(batch=4, seq=256), hw).weights  # no second copy of the weights


def test_a_flat_preference_run_gets_preference_advice_not_sfts():
    from tunewise.curves.diagnose import diagnose

    rows = []
    for i in range(1, 21):
        r = {"step": 5 * i, "loss": 0.693, "rewards/margins": 0.0, "rewards/accuracies": 0.5, "logps/chosen": -20.0,
             "logps/rejected": -20.0, "length/chosen": 10.0, "length/rejected": 10.0}
        if i % 4 == 0:
            r.update(val_loss=0.693, **{"eval_rewards/accuracies": 0.5, "eval_rewards/margins": 0.001})
        rows.append(r)
    d = diagnose(rows)
    assert d.verdict == "preference_flat" and d.evidence["curve_verdict"] in ("stagnant_high", "underfit", "val_stagnant")
    assert "preference.beta" in " ".join(d.advice["en"]) and "1e-4 to 3e-4" not in " ".join(d.advice["en"])
