"""Learning-curve diagnosis: pure functions from metrics rows to a verdict, its evidence and advice.

Every rule is a small named function with scale-free thresholds (ratios of the loss itself), applied to
EMA-smoothed curves so real, noisy runs are judged on their trend.

A good fit, as the fine-tuning guides define it, is training and validation loss both low *and close*. So
the verdict reads the validation trend and the train/validation gap together (the gap relative to the
validation loss, so it means the same at loss 0.5 and at 3): validation rising from its minimum is
`overfit`; validation level while training falls away from it (a large or growing gap) is `gap_growing`,
overfitting before validation turns up; validation flat from the first evaluation while training falls is
`val_stagnant` (regularise or add data, not a higher learning rate); both flat is `stagnant_high`; a
curve still clearly falling at the end is `underfit`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

VERDICTS = ["diverged", "does_not_stop", "not_learned_yet", "reward_hacking", "preference_overfit", "length_exploitation",
            "preference_flat", "too_short", "unstable", "overfit", "gap_growing", "val_stagnant", "stagnant_high", "underfit", "well_fit"]
_ADVICE = json.loads((Path(__file__).parent / "advice.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Thresholds:
    explode_ratio: float = 3.0        # smoothed train loss above 3x its start -> diverged
    min_train_points: int = 5
    min_val_points: int = 3
    spike_ratio: float = 1.5          # a point 50% above the smoothed trend is a spike
    spike_share: float = 0.15         # that many spikes (share of points) -> unstable
    overfit_rise: float = 0.05        # final val 5% above its minimum ...
    underfit_tail_ratio: float = 0.3     # last-quarter slope above 30% of the run's average slope -> underfit
    underfit_total_drop: float = 0.05    # or fell <5% overall -> underfit
    smoothing: float = 0.6
    chosen_logp_drop: float = 0.5     # preference: chosen answers' log-prob per token fell 0.5 nats -> reward_hacking
    rejected_logp_rise: float = 0.2   # ... or the rejected answers' rose 0.2 nats per token
    pref_acc_saturated: float = 0.98  # training accuracy this high in the first half ...
    pref_margin_fall: float = 0.2     # ... while the validation margin fell 20% from its best -> preference_overfit
    pref_flat_accuracy: float = 0.6   # preference: held-out accuracy at most this, or ...
    pref_flat_margin: float = 0.05    # ... |margin| below this at the end -> preference_flat (with a flat curve)
    length_ratio: float = 1.3         # chosen answers 30% longer than rejected on average ...
    answer_growth: float = 1.3        # ... and generated answers 30% longer than before -> length_exploitation
    val_jump: float = 0.1             # a validation point 10% above the previous (or the lowest) one is a jump
    gap_large: float = 0.35           # final train loss 35% (of the validation loss) below it -> the gap is large
    gap_growth: float = 0.15          # the gap grew by 15% of the validation loss over the second half ...
    gap_notable: float = 0.2          # ... and is now at least 20% of it -> the gap is growing
    val_flat: float = 0.05            # validation never 5% below its first evaluation -> flat from the start ...
    train_fell: float = 0.15          # ... while training fell 15% since then -> val_stagnant
    min_stop_rate: float = 0.9        # generation check: fewer answers stopping on their own -> does_not_stop
    min_key_term_rate: float = 0.8    # fewer answers naming the data's key terms -> not_learned_yet


@dataclass
class Diagnosis:
    verdict: str
    evidence: dict = field(default_factory=dict)
    advice: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    best_step: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ema(xs: list[float], alpha: float) -> list[float]:
    out, cur = [], None
    for x in xs:
        cur = x if cur is None else alpha * cur + (1 - alpha) * x
        out.append(cur)
    return out


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r.get("step", i), r[key]) for i, r in enumerate(rows) if key in r]


def rule_nan(train, val, rows, th) -> dict | None:
    bad = [s for s, v in train + val if not _finite(v)]
    event = next((r.get("step") for r in rows if r.get("event") == "nan_stop"), None)
    if bad or event is not None:
        return {"nan_step": event if event is not None else bad[0]}
    return None


def rule_blown_up(rows: list[dict], vocab_size: int | None = None, tail: int = 3) -> dict | None:
    """A loss flat at ln(vocabulary) with a zero gradient norm: an update so large it saturated the model into
    uniform predictions (a learning rate far too high). Nothing trains after that, so it is divergence, not
    underfitting, and neither more steps nor a higher learning rate can help."""
    logs = [r for r in rows if _finite(r.get("loss")) and _finite(r.get("grad_norm"))]
    if len(logs) < tail + 1 or not any(r["grad_norm"] > 0 for r in logs[:-tail]):
        return None
    last = logs[-tail:]
    losses = [r["loss"] for r in last]
    flat = max(losses) - min(losses) <= 1e-3 * max(abs(losses[-1]), 1e-8)
    if not flat or any(r["grad_norm"] > 1e-6 for r in last):
        return None
    ev = {"blown_up_update": True, "loss_flat_at": losses[-1], "grad_norm_tail": max(r["grad_norm"] for r in last)}
    if vocab_size:
        if abs(losses[-1] - math.log(vocab_size)) > 0.02 * math.log(vocab_size):
            return None
        ev.update(vocab_size=vocab_size, ln_vocab=math.log(vocab_size))
    return ev


def rule_explode(train, th) -> dict | None:
    ys = [v for _, v in train]
    if len(ys) < 3:
        return None
    sm = ema(ys, th.smoothing)
    if sm[-1] > th.explode_ratio * ys[0]:
        return {"loss_start": ys[0], "loss_end_smoothed": sm[-1], "ratio": sm[-1] / ys[0]}
    return None


def rule_spikes(train, th) -> dict:
    ys = [v for _, v in train]
    sm = ema(ys, th.smoothing)
    spikes = sum(1 for i in range(1, len(ys)) if ys[i] > th.spike_ratio * sm[i - 1])
    # oscillation: how often the direction of change flips, relative to the loss level
    diffs = [b - a for a, b in zip(ys, ys[1:])]
    big = [d for d in diffs if abs(d) > 0.1 * (sum(ys) / len(ys))]
    flips = sum(1 for a, b in zip(big, big[1:]) if (a > 0) != (b > 0))
    return {"spike_count": spikes, "spike_share": spikes / max(len(ys) - 1, 1), "big_flips": flips}


def _median(xs: list[float]) -> float:
    ys = sorted(xs)
    n = len(ys)
    return ys[n // 2] if n % 2 else (ys[n // 2 - 1] + ys[n // 2]) / 2


def val_steady(val, th) -> bool:
    """At least 4 validation points, none more than 10% above the lowest one before it."""
    if len(val) < 4:
        return False
    low = val[0][1]
    for _, v in val[1:]:
        if v > low * (1 + th.val_jump):
            return False
        low = min(low, v)
    return True


def rule_val_zigzag(val, th) -> dict | None:
    """Validation loss that rises sharply and falls back more than once: the optimiser is thrashing."""
    vs = [v for _, v in val]
    ups = [i for i in range(1, len(vs) - 1) if vs[i] > vs[i - 1] * (1 + th.val_jump) and vs[i + 1] < vs[i] / (1 + th.val_jump)]
    return {"val_zigzags": len(ups)} if len(ups) >= 2 else None


def rule_overfit(train, val, th) -> dict | None:
    """Validation rose clearly from its minimum while training loss did not rise: the gap widened.

    Train levels are medians (near the validation minimum, and over the last quarter after it), so a
    single noisy step neither hides nor fakes overfitting.
    """
    if len(val) < th.min_val_points:
        return None
    vs = [v for _, v in val]
    i_min = min(range(len(vs)), key=vs.__getitem__)
    if i_min == len(vs) - 1:
        return None
    final = ema(vs, 0.3)[-1]
    rise = (final - vs[i_min]) / max(abs(vs[i_min]), 1e-8)
    step_min = val[i_min][0]
    step_before = val[i_min - 1][0] if i_min > 0 else 0
    near = [v for s, v in train if step_before < s <= step_min] or [v for s, v in train if s <= step_min][-3:]
    after = [v for s, v in train if s > step_min]
    if not near or not after:
        return None
    train_at_min = _median(near)
    train_end = _median(after[-max(3, len(after) // 4):])
    train_not_rising = train_end <= train_at_min * (1 + th.overfit_rise) + 1e-8
    gap_widened = (final - train_end) - (vs[i_min] - train_at_min) > th.overfit_rise * abs(vs[i_min])
    if rise > th.overfit_rise and train_not_rising and gap_widened:
        return {"val_min_step": step_min, "val_min": vs[i_min], "final_val": vs[-1], "val_rise_from_min": rise,
                "train_at_val_min": train_at_min, "train_end": train_end}
    return None


def _train_near(train, step: int, k: int = 3) -> float | None:
    """Median of the last k training points at or before `step` (the first k after it when there are none)."""
    before = [v for s, v in train if s <= step][-k:]
    pts = before or [v for s, v in train if s > step][:k]
    return _median(pts) if pts else None


def gap_stats(train, val, th) -> dict | None:
    """Where training and validation loss stand against each other: the gap at the end, relative to the
    validation loss, and how it moved over the second half of the evaluations; the drops since the first one.

    Training levels are medians of nearby points (noisy per-batch losses), the final validation level an
    EMA of the evaluations, so neither one noisy step nor one evaluation decides.
    """
    if len(val) < th.min_val_points or len(train) < 3:
        return None
    vs = [v for _, v in val]
    train_end = _median([v for _, v in train][-max(3, len(train) // 8):])
    val_end = ema(vs, 0.3)[-1]
    (s_first, v_first), (s_mid, v_mid) = val[0], val[len(val) // 2]
    t_first, t_mid = _train_near(train, s_first), _train_near(train, s_mid)
    scale = max(abs(val_end), 1e-8)
    gap_end = val_end - train_end
    return {"train_end": train_end, "val_end": val_end, "gap_rel": gap_end / scale,
            "gap_growth": (gap_end - max(v_mid - t_mid, 0.0)) / scale,  # training still above validation is no gap
            "val_drop_since_first": (v_first - min(vs)) / max(abs(v_first), 1e-8),
            "train_drop_since_first_val": (t_first - train_end) / max(abs(t_first), 1e-8)}


def rule_val_stagnant(g: dict | None, th) -> dict | None:
    """Validation flat from the first evaluation while training fell well below it: memorising, not learning
    what carries over. More learning rate would only memorise faster."""
    if g is None:
        return None
    if g["val_drop_since_first"] < th.val_flat and g["train_drop_since_first_val"] >= th.train_fell and g["gap_rel"] >= th.gap_notable:
        return {k: g[k] for k in ("gap_rel", "val_drop_since_first", "train_drop_since_first_val")}
    return None


def rule_gap(g: dict | None, val_still_falling: bool, th) -> dict | None:
    """Validation levelled off while training kept falling away from it: the gap is large, or grew over the
    second half. Overfitting, even though validation loss has not risen (yet)."""
    if g is None or val_still_falling:
        return None
    if g["gap_rel"] >= th.gap_large or (g["gap_growth"] >= th.gap_growth and g["gap_rel"] >= th.gap_notable):
        return {k: g[k] for k in ("gap_rel", "gap_growth", "train_end", "val_end")}
    return None


def rule_stagnant(curves, th) -> dict | None:
    """Every curve given (training, and validation when there is one) hardly fell from where it started."""
    drops = []
    for curve in curves:
        if len(curve) < 4:
            continue
        ys = [v for _, v in curve]
        end = ema(ys, th.smoothing)[-1]
        drops.append((ys[0] - end) / max(abs(ys[0]), 1e-8))
    if drops and all(d < th.underfit_total_drop for d in drops):
        return {"total_drop": max(drops)}
    return None


def rule_underfit(curve, th) -> dict | None:
    """Still clearly falling at the end, or hardly fell at all.

    "Still falling" compares the slope over the last quarter with the average slope of the whole run: an
    exponential-looking curve that has levelled off falls at a small fraction of its average rate at the
    end, however long it fell before; a curve still on its way down falls at a large fraction of it.
    """
    pts = [(s, v) for s, v in curve]
    if len(pts) < 4:
        return None
    n = len(pts)
    w = max(1, n // 10)
    end = pts[-w:]
    mid = pts[(3 * n) // 4 - w // 2: (3 * n) // 4 - w // 2 + w] or [pts[(3 * n) // 4]]

    def centre(seg):
        return sum(s for s, _ in seg) / len(seg), sum(v for _, v in seg) / len(seg)

    (s_end, y_end), (s_mid, y_mid), (s0, y0) = centre(end), centre(mid), pts[0]
    total_drop = (y0 - y_end) / max(abs(y0), 1e-8)
    avg_slope = (y0 - y_end) / max(s_end - s0, 1e-8)
    tail_slope = (y_mid - y_end) / max(s_end - s_mid, 1e-8)
    ratio = tail_slope / avg_slope if avg_slope > 0 else 0.0
    if ratio > th.underfit_tail_ratio or total_drop < th.underfit_total_drop:
        return {"tail_slope_ratio": ratio, "total_drop": total_drop}
    return None


def behaviour_at_result(rows: list[dict], best_step: int | None) -> dict | None:
    """The generation check's rates for the weights the run saved: measured on them after training when
    logged (event final_eval), else at the best step, else at the last check. None without a check."""
    final = next((r for r in reversed(rows) if r.get("event") == "final_eval" and "final_gen_stop_rate" in r), None)
    if final is not None:
        out = {k.removeprefix("final_"): v for k, v in final.items() if k.startswith("final_gen_")}
        return {**out, "at_step": best_step if best_step is not None else final.get("step"), "measured": "saved result"}
    checks = [r for r in rows if "gen_stop_rate" in r and r.get("event") != "before_training"]
    if not checks:
        return None
    at = next((r for r in checks if r.get("step") == best_step), checks[-1])
    return {**{k: v for k, v in at.items() if k.startswith("gen_")}, "at_step": at.get("step"), "measured": "during training"}


def rule_does_not_stop(beh: dict | None, th) -> dict | None:
    """Answers that run to the generation limit: the end-of-turn token is not learned, whatever the loss says."""
    if beh is None or beh.get("gen_stop_rate") is None or beh["gen_stop_rate"] >= th.min_stop_rate:
        return None
    return {"stop_rate": beh["gen_stop_rate"], "repetition_rate": beh.get("gen_repetition_rate")}


def rule_not_learned(beh: dict | None, th) -> dict | None:
    """Answers that stop but do not yet name what the data keeps teaching (a name, a maker, a label)."""
    if beh is None or beh.get("gen_key_term_rate") is None or beh["gen_key_term_rate"] >= th.min_key_term_rate:
        return None
    return {"key_term_rate": beh["gen_key_term_rate"]}


# ---------------------------------------------------------------------------------------- preference stages
def _per_token(rows: list[dict], side: str, prefix: str = "") -> list[tuple[int, float]]:
    """Mean log-probability per answer token of the chosen or rejected side, per logged step."""
    out = []
    for r in rows:
        lp, n = r.get(f"{prefix}logps/{side}"), r.get(f"{prefix}length/{side}")
        if _finite(lp) and _finite(n) and n > 0:
            out.append((r["step"], lp / n))
    return out


def rule_reward_hacking(rows: list[dict], th) -> dict | None:
    """On the validation pairs (the same answers at every evaluation, so the points compare; a training batch's
    mean depends on which answers it drew), the chosen answers' per-token log-probability falls well below where
    it was at the first evaluation, or the rejected ones' rises: the margin then grows for the wrong reason."""
    chosen, rejected = _per_token(rows, "chosen", "eval_"), _per_token(rows, "rejected", "eval_")
    if len(chosen) < 2:
        return None
    c0, c1 = chosen[0][1], chosen[-1][1]
    out = {"chosen_logp_per_token_first": round(c0, 4), "chosen_logp_per_token_last": round(c1, 4)}
    if c1 < c0 - th.chosen_logp_drop:
        return {**out, "why": "chosen answers became less likely"}
    if len(rejected) >= 2:
        r0, r1 = rejected[0][1], rejected[-1][1]
        if r1 > r0 + th.rejected_logp_rise:
            return {**out, "rejected_logp_per_token_first": round(r0, 4), "rejected_logp_per_token_last": round(r1, 4),
                    "why": "rejected answers became more likely"}
    return None


def rule_preference_overfit(rows: list[dict], th) -> dict | None:
    """Training pairs separated almost perfectly early on, while the held-out margin falls from its best."""
    acc = [(r["step"], r["rewards/accuracies"]) for r in rows if _finite(r.get("rewards/accuracies"))]
    margins = [(r["step"], r["eval_rewards/margins"]) for r in rows if _finite(r.get("eval_rewards/margins"))]
    if len(acc) < th.min_train_points or len(margins) < th.min_val_points:
        return None
    last_step = acc[-1][0] or 1
    early = [a for s, a in acc if s <= 0.5 * last_step]
    best = max(m for _, m in margins)
    final = margins[-1][1]
    if early and max(early) >= th.pref_acc_saturated and best > 0 and final < (1 - th.pref_margin_fall) * best:
        return {"train_accuracy_early": round(max(early), 3), "val_margin_best": round(best, 4), "val_margin_final": round(final, 4)}
    return None


def rule_length_exploitation(rows: list[dict], th) -> dict | None:
    """Chosen answers systematically longer than rejected ones, and the model's own answers growing."""
    lc = [r["length/chosen"] for r in rows if _finite(r.get("length/chosen"))]
    lr = [r["length/rejected"] for r in rows if _finite(r.get("length/rejected"))]
    gen = [(r["step"], r["gen_answer_tokens"]) for r in rows if _finite(r.get("gen_answer_tokens"))]
    if not lc or not lr or len(gen) < 2:
        return None
    ratio = (sum(lc) / len(lc)) / max(sum(lr) / len(lr), 1e-9)
    growth = gen[-1][1] / max(gen[0][1], 1e-9)
    if ratio >= th.length_ratio and growth >= th.answer_growth:
        return {"chosen_rejected_length_ratio": round(ratio, 3), "answer_tokens_first": gen[0][1],
                "answer_tokens_last": gen[-1][1]}
    return None


def rule_preference_flat(rows: list[dict], th) -> dict | None:
    """Held-out pairs not yet ranked: at the end the validation accuracy is near chance, or the margin near zero
    (every pair leaning the right way by a hair is not learned either: the loss is still ~ln 2)."""
    evals = [r for r in rows if _finite(r.get("eval_rewards/accuracies")) and _finite(r.get("eval_rewards/margins"))]
    if len(evals) < 2:
        return None
    last = evals[-1]
    if last["eval_rewards/accuracies"] <= th.pref_flat_accuracy or abs(last["eval_rewards/margins"]) < th.pref_flat_margin:
        return {"val_accuracy_final": round(last["eval_rewards/accuracies"], 3),
                "val_margin_final": round(last["eval_rewards/margins"], 4)}
    return None


def preference_verdict(rows: list[dict], th, curve_verdict: str | None = None) -> tuple[str, dict] | None:
    if not any("rewards/margins" in r for r in rows):
        return None
    for name, rule in (("reward_hacking", rule_reward_hacking), ("preference_overfit", rule_preference_overfit),
                       ("length_exploitation", rule_length_exploitation)):
        if (found := rule(rows, th)):
            return name, found
    # a flat loss curve of a preference run gets preference advice, not SFT's "raise the learning rate to 2e-4"
    if curve_verdict in ("stagnant_high", "underfit", "val_stagnant") and (found := rule_preference_flat(rows, th)):
        return "preference_flat", found
    return None


def _before_training(rows: list[dict]) -> dict:
    first = next((r for r in rows if r.get("event") == "before_training"), None)
    if first is None:
        return {}
    out = {f"{k.removeprefix('gen_')}_before": v for k, v in first.items() if k in ("gen_stop_rate", "gen_key_term_rate")}
    if first.get("key_terms"):
        out["key_terms"] = ", ".join(first["key_terms"][:6])
    return out


def fit_verdict(train, val, th) -> tuple[str, dict]:
    """The verdict of a stable run from its validation trend and its train/validation gap, with the evidence."""
    g = gap_stats(train, val, th)
    ev = {} if g is None else {"gap_rel": g["gap_rel"], "gap_growth": g["gap_growth"]}
    uf = rule_underfit(val if len(val) >= 4 else train, th)
    val_still_falling = len(val) >= 4 and uf is not None and uf["tail_slope_ratio"] > th.underfit_tail_ratio
    if (of := rule_overfit(train, val, th)):
        return "overfit", {**ev, **of}
    if (vs := rule_val_stagnant(g, th)):
        return "val_stagnant", {**ev, **vs}
    if (gp := rule_gap(g, val_still_falling, th)):
        return "gap_growing", {**ev, **gp}
    if (st := rule_stagnant([train] + ([val] if val else []), th)):
        return "stagnant_high", {**ev, **st}
    if uf:
        return "underfit", {**ev, **uf}
    return "well_fit", ev


def diagnose(rows: list[dict], *, thresholds: Thresholds | None = None, vocab_size: int | None = None) -> Diagnosis:
    th = thresholds or Thresholds()
    train, val = series(rows, "loss"), series(rows, "val_loss")
    ev: dict = {"num_train_points": len(train), "num_val_points": len(val)}
    finite_val = [(s, v) for s, v in val if _finite(v)]
    best_step = min(finite_val, key=lambda x: x[1])[0] if finite_val else None
    guarded = [(s, v) for s, v in series(rows, "guarded_val_loss") if _finite(v)]
    if guarded:  # the best checkpoint was chosen on validation loss plus the generation check's penalties
        best_step = min(guarded, key=lambda x: x[1])[0]
    if finite_val:
        ev.update(val_min_step=best_step, val_min=min(v for _, v in finite_val), final_val=finite_val[-1][1])
    ft = [(s, v) for s, v in train if _finite(v)]
    if ft:
        ev.update(first_train=ft[0][1], final_train=ft[-1][1])
        if finite_val:
            ev["train_val_gap"] = finite_val[-1][1] - ft[-1][1]
    if not val:
        ev["note"] = "no validation loss: overfitting cannot be assessed without a validation set"

    verdict = None
    nan = rule_nan(train, val, rows, th)
    if nan:
        verdict, ev = "diverged", {**ev, **nan}
    elif (boom := rule_explode(ft, th) or rule_blown_up(rows, vocab_size)):
        verdict, ev = "diverged", {**ev, **boom}
    elif len(ft) < th.min_train_points and len(finite_val) < th.min_val_points:
        verdict = "too_short"
    else:
        sp = rule_spikes(ft, th)
        ev.update(sp)
        zig = rule_val_zigzag(finite_val, th)
        noisy_train = sp["spike_share"] >= th.spike_share and sp["spike_count"] >= 3 or sp["big_flips"] >= max(4, len(ft) // 3)
        steady = val_steady(finite_val, th)
        if noisy_train and steady:
            # Per-batch train loss of a small, mixed dataset jumps; a validation loss that fell steadily
            # says the model was learning, not thrashing.
            ev["train_noise_but_val_steady"] = True
        if zig or (noisy_train and not steady):
            verdict = "unstable"
            if zig:
                ev.update(zig)
        else:
            verdict, found = fit_verdict(ft, finite_val, th)
            ev.update(found)
    beh = behaviour_at_result(rows, best_step)
    if beh is not None:
        ev.update({k.removeprefix("gen_"): v for k, v in beh.items() if k.startswith("gen_") and v is not None},
                  behaviour_step=beh.get("at_step"), behaviour_measured=beh["measured"], **_before_training(rows))
    # A verdict on the loss curve alone is not the last word: answers that do not stop or do not yet say
    # what the data teaches override it (the curve's own verdict stays in the evidence).
    if verdict != "diverged":
        behaviour_verdict = ("does_not_stop" if rule_does_not_stop(beh, th)
                             else "not_learned_yet" if rule_not_learned(beh, th) else None)
        if behaviour_verdict:
            ev["curve_verdict"], verdict = verdict, behaviour_verdict
        elif (pv := preference_verdict(rows, th, verdict)):
            ev["curve_verdict"], verdict = verdict, pv[0]
            ev.update(pv[1])
    a = _ADVICE[verdict]
    return Diagnosis(verdict, ev, {"en": a["en"], "zh": a["zh"]}, a["summary"], best_step)


def format_diagnosis(d: Diagnosis | dict, lang: str = "en") -> str:
    d = d if isinstance(d, dict) else d.to_dict()
    lines = [f"verdict: {d['verdict']} — {d['summary'][lang]}"]
    ev = d["evidence"]
    keys = ["stop_rate", "stop_rate_before", "repetition_rate", "key_term_rate", "key_term_rate_before", "key_terms",
            "curve_verdict", "val_min_step", "val_min", "final_val", "final_train", "train_val_gap", "gap_rel", "gap_growth",
            "val_rise_from_min", "val_drop_since_first", "train_drop_since_first_val", "tail_slope_ratio", "total_drop",
            "spike_count", "nan_step", "blown_up_update", "loss_flat_at", "ln_vocab",
            "grad_norm_tail", "why", "chosen_logp_per_token_first", "chosen_logp_per_token_last",
            "train_accuracy_early", "val_margin_best", "val_margin_final", "chosen_rejected_length_ratio",
            "answer_tokens_first", "answer_tokens_last", "val_accuracy_final", "note"]
    shown = [f"{k}={ev[k]:.4g}" if isinstance(ev.get(k), float) else f"{k}={ev[k]}" for k in keys if k in ev]
    if shown:
        lines.append(("证据: " if lang == "zh" else "evidence: ") + ", ".join(shown))
    lines += [f"  - {x}" for x in d["advice"][lang]]
    return "\n".join(lines)
