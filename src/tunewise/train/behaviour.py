"""The generation check during training: do the answers stop, loop, and carry what the data teaches?

A low validation loss can hide a model that never emits its end-of-turn token: on answers of realistic
length that token is one in a hundred supervised tokens, so the loss barely notices it. So at every
evaluation (and once before training) a fixed sample of validation prompts is answered greedily and
scored: the share of answers that stop on their own, the share of repeated n-grams, ROUGE-L and exact
match against the references, and the share that name the data's key terms (a new name, a maker, a
label: terms the training answers keep repeating that the prompts and the untrained model do not say).
The numbers go to metrics.jsonl, TensorBoard, the curves and the verdict, and into the metric that
picks the best checkpoint and drives early stopping (`eval_guarded_loss`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from tunewise import textmetrics as tm

STOP_PENALTY = 1.0     # eval_guarded_loss += this x (1 - stop rate)
CONTENT_PENALTY = 0.5  # ... and this x (1 - key-term rate)
LONG_ANSWER = 192      # tokens: a sample prefers references up to this long (a check must let answers finish)


@dataclass
class Probe:
    prompts: list[list[int]]
    references: list[str]
    ref_tokens: list[int]
    max_new_tokens: int
    stop_ids: list[int]
    pad_id: int
    candidate_terms: list[str]
    key_terms: list[str] = field(default_factory=list)


def _turns(rec: dict) -> tuple[list[dict], str, list[dict] | None] | None:
    """(the prompt turns, the reference answer, the record's tools) of a conversation ending with an answer."""
    msgs = rec.get("messages") or []
    if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
        return None
    return msgs[:-1], msgs[-1]["content"], rec.get("tools")


def build_probe(val_records: list[dict], train_records: list[dict], tokenizer, template, *, samples: int,
                seed: int = 0, max_new_tokens: int | None = None) -> Probe | None:
    """A fixed sample of validation prompts with their references, or None when there is nothing to ask."""
    pairs = [t for t in (_turns(r) for r in val_records) if t is not None]
    if not pairs or samples <= 0:
        return None
    rng = random.Random(seed)
    rng.shuffle(pairs)
    lengths = [len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for _, ref, _ in pairs]
    order = sorted(range(len(pairs)), key=lambda i: lengths[i] > LONG_ANSWER)  # stable: short ones first, shuffled
    chosen = order[:samples]
    train_pairs = [t for t in (_turns(r) for r in train_records) if t is not None]
    # Room for an answer that says the same in other words: 1.5 times the longest sampled reference or the
    # 95th-percentile training answer (up to LONG_ANSWER), whichever is longer. An answer still going then would
    # never stop; every token more costs a decoding step of every sample at every check.
    typical = sorted(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for _, a, _ in train_pairs[:200]) or [0]
    p95 = typical[int(0.95 * (len(typical) - 1))]
    longest = max(lengths[i] for i in chosen)
    budget = max_new_tokens or max(64, int(1.5 * max(longest, min(p95, LONG_ANSWER))) + 16)
    prompts = [tokenizer(template.render(pairs[i][0], add_generation_prompt=True, tools=pairs[i][2]),
                         add_special_tokens=False)["input_ids"] for i in chosen]
    candidates = tm.key_terms([a for _, a, _ in train_pairs], [m[-1]["content"] for m, _, _ in train_pairs])
    stop_ids = list(template.stop_token_ids) or [tokenizer.eos_token_id]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    return Probe(prompts, [pairs[i][1] for i in chosen], [lengths[i] for i in chosen], budget, stop_ids, pad,
                 candidates, list(candidates))


def measure(model, probe: Probe, decode, batch_size: int = 8) -> dict:
    """Greedy answers to the probe's prompts, scored. `decode(ids) -> str`."""
    from tunewise.models.generation import generate_ids

    was_training = model.training
    model.eval()
    try:
        with narrow_autocast(model):
            res = generate_ids(model, probe.prompts, stop_ids=probe.stop_ids, pad_id=probe.pad_id,
                               max_new_tokens=probe.max_new_tokens, batch_size=batch_size)
    finally:
        model.train(was_training)
    texts = [decode(ids) for ids, _ in res]
    n = len(res)
    out = {"gen_stop_rate": sum(s for _, s in res) / n,
           "gen_repetition_rate": sum(tm.repetition_rate(t) for t in texts) / n,
           "gen_rougeL": tm.rouge(texts, probe.references)["rougeL"] / 100,
           "gen_answer_tokens": sum(len(ids) for ids, _ in res) / n}
    short = [(t, r) for t, r, k in zip(texts, probe.references, probe.ref_tokens) if k <= 8]
    if short:
        out["gen_exact_match"] = tm.exact_match([t for t, _ in short], [r for _, r in short]) / 100
    hits, judged = tm.key_term_hits(texts, probe.references, probe.key_terms)
    if judged >= 3:
        out["gen_key_term_rate"] = hits / judged
    out["_texts"] = texts
    return out


def narrow_autocast(model):
    """Autocast to the dtype of the model's narrow frozen weights, if it has any (train.frozen_dtype, auto in a bf16
    mixed-precision run): they then go into each decoding matmul as they are. Widened to float32 instead, every
    decoding step would convert the whole base (Gemma 3 270M: 0.5 GB of bf16 into 1 GB of float32) to multiply a
    few rows. The check then answers as the run trains: in bf16."""
    from contextlib import nullcontext

    import torch

    from tunewise.train.narrow import NarrowLinear

    narrow = next((m.weight for m in model.modules() if type(m) is NarrowLinear), None)
    if narrow is None:
        return nullcontext()
    return torch.autocast(narrow.device.type, dtype=narrow.dtype)


def guarded_loss(eval_loss: float, rates: dict) -> float:
    """Validation loss plus penalties for answers that do not stop or miss the data's key terms."""
    g = eval_loss + STOP_PENALTY * (1 - rates.get("gen_stop_rate", 1.0))
    if "gen_key_term_rate" in rates:
        g += CONTENT_PENALTY * (1 - rates["gen_key_term_rate"])
    return g


class GenerationCheck:
    """Runs `measure` before training and at evaluations (every `every`-th, within `budget`); keeps the latest rates.

    budget: the largest share of the training time (from `start_clock`) the checks at evaluations may take; a due
    check beyond it is skipped and the latest rates carried forward, unless its evaluation is a candidate for the
    best checkpoint and the latest rates showed a problem (answers that do not stop or miss key terms: then the
    choice of the best checkpoint depends on the rates, and they are measured). A candidate may carry clean rates:
    its loss is lower than every checkpoint's so far and the answers behaved at the last check; the saved model is
    scored afresh at the end whenever its rates were carried (workflow.logged_best_eval). `fresh` says whether the last evaluation's
    rates were measured; `force_next` makes the next evaluation measure whatever the schedule says (the final
    score of the saved model)."""

    def __init__(self, probe: Probe, tokenizer, *, every: int = 1, batch_size: int = 8, budget: float = 1.0,
                 clock=time.perf_counter):
        self.probe, self.every, self.batch_size = probe, max(1, every), batch_size
        self._decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True).strip()
        self.latest: dict | None = None
        self.baseline: dict | None = None
        self._evals = 0
        self.budget, self._clock = budget, clock
        self._t0: float | None = None
        self.spent = 0.0  # seconds the checks at evaluations took
        self.fresh = False
        self.force_next = False
        self.skipped = 0  # due checks skipped for the budget
        self.measured = 0  # checks at evaluations that ran

    @property
    def clean(self) -> bool:
        """The latest rates carry no penalty: every answer stopped and had the key terms."""
        return self.latest is not None and guarded_loss(0.0, self.latest) == 0.0

    def start_clock(self) -> None:
        """Training starts: the budget counts from here."""
        self._t0 = self._clock()

    def within_budget(self) -> bool:
        if self.budget >= 1 or self._t0 is None:
            return True
        return self.spent <= self.budget * (self._clock() - self._t0)

    def cost_line(self, train_seconds: float | None) -> str | None:
        """A closing line when the checks at evaluations took more than their budget of the training time (which
        happens while answers misbehave: every evaluation that could become the best is then checked), or None."""
        if self.budget >= 1 or not train_seconds or self.spent <= self.budget * train_seconds:
            return None
        return (f"generation checks took {self.spent:.0f} s of {train_seconds:.0f} s of training "
                f"({self.spent / train_seconds:.0%}; train.generation_check_budget is {self.budget:.0%}): "
                f"{self.measured} ran, {self.skipped} carried the latest rates. While answers did not stop or missed the "
                f"key terms, every evaluation that could become the best checkpoint was checked. For a faster run: "
                f"train.generation_check_every: 2, or fewer evaluations (train.eval_steps).")

    def before_training(self, model) -> dict:
        """Measure the untouched model; terms it already says are not what the data teaches."""
        base = measure(model, self.probe, self._decode, self.batch_size)
        texts = base.pop("_texts")
        said = set().union(*(tm.term_set(t) for t in texts)) if texts else set()
        self.probe.key_terms = [k for k in self.probe.candidate_terms if k not in said]  # the model says it already
        base.pop("gen_key_term_rate", None)
        hits, judged = tm.key_term_hits(texts, self.probe.references, self.probe.key_terms)
        if judged >= 3:
            base["gen_key_term_rate"] = hits / judged
        self.baseline = base
        return base

    def at_evaluation(self, model, candidate: bool = False, within_budget: bool | None = None) -> dict | None:
        """The rates of this evaluation: measured when due (every `every`-th), unless the checks are over their
        budget and this evaluation is no `candidate` for the best checkpoint or the latest rates were clean;
        otherwise the latest, carried. within_budget: the decision taken for all training processes (default: this
        process's own clock)."""
        due = self._evals % self.every == 0
        self._evals += 1
        force, self.force_next = self.force_next, False
        within = self.within_budget() if within_budget is None else within_budget
        if due and not force and (not candidate or self.clean) and self.latest is not None and not within:
            self.skipped += 1
            due = False
        self.fresh = force or due or self.latest is None
        if self.fresh:
            start = self._clock()
            rates = measure(model, self.probe, self._decode, self.batch_size)
            rates.pop("_texts")
            self.latest = rates
            self.measured += 1
            self.spent += self._clock() - start
        return self.latest
