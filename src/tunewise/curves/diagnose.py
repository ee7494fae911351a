"""Learning-curve diagnosis: pure functions from metrics rows to a verdict, its evidence and advice.

Every rule is a small named function with scale-free thresholds (ratios of the loss itself), applied to
EMA-smoothed curves so real, noisy runs are judged on their trend.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

VERDICTS = ["diverged", "does_not_stop", "not_learned_yet", "too_short", "unstable", "overfit", "underfit", "well_fit"]
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
    val_jump: float = 0.1             # a validation point 10% above the previous (or the lowest) one is a jump
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


def _before_training(rows: list[dict]) -> dict:
    first = next((r for r in rows if r.get("event") == "before_training"), None)
    if first is None:
        return {}
    out = {f"{k.removeprefix('gen_')}_before": v for k, v in first.items() if k in ("gen_stop_rate", "gen_key_term_rate")}
    if first.get("key_terms"):
        out["key_terms"] = ", ".join(first["key_terms"][:6])
    return out


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
        elif (of := rule_overfit(ft, finite_val, th)):
            verdict, ev = "overfit", {**ev, **of}
        elif (uf := rule_underfit(finite_val if len(finite_val) >= 4 else ft, th)):
            verdict, ev = "underfit", {**ev, **uf}
        else:
            verdict = "well_fit"
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
    a = _ADVICE[verdict]
    return Diagnosis(verdict, ev, {"en": a["en"], "zh": a["zh"]}, a["summary"], best_step)


def format_diagnosis(d: Diagnosis | dict, lang: str = "en") -> str:
    d = d if isinstance(d, dict) else d.to_dict()
    lines = [f"verdict: {d['verdict']} — {d['summary'][lang]}"]
    ev = d["evidence"]
    keys = ["stop_rate", "stop_rate_before", "repetition_rate", "key_term_rate", "key_term_rate_before", "key_terms",
            "curve_verdict", "val_min_step", "val_min", "final_val", "final_train", "train_val_gap", "val_rise_from_min",
            "tail_slope_ratio", "total_drop", "spike_count", "nan_step", "blown_up_update", "loss_flat_at", "ln_vocab",
            "grad_norm_tail", "note"]
    shown = [f"{k}={ev[k]:.4g}" if isinstance(ev.get(k), float) else f"{k}={ev[k]}" for k in keys if k in ev]
    if shown:
        lines.append(("证据: " if lang == "zh" else "evidence: ") + ", ".join(shown))
    lines += [f"  - {x}" for x in d["advice"][lang]]
    return "\n".join(lines)
