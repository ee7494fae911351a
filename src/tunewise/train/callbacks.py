"""Callbacks: metrics.jsonl writer (the curves stage's input) and a rich-free console summary."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from transformers import TrainerCallback

_KEYS = {"loss": "loss", "eval_loss": "val_loss", "learning_rate": "lr", "grad_norm": "grad_norm",
         "tokens_per_s": "tokens_per_s", "eval_guarded_loss": "guarded_val_loss"}
# The generation check's rates (train/behaviour.py) keep their names.
PREF_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
             "logps/rejected", "length/chosen", "length/rejected", "kl")
GEN_KEYS = ("gen_stop_rate", "gen_repetition_rate", "gen_rougeL", "gen_exact_match", "gen_key_term_rate", "gen_answer_tokens")


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return v  # json writes NaN/Infinity; the curves stage reads them back
    return v


class MetricsJsonl(TrainerCallback):
    """Append one JSON object per log event: step, epoch, loss, val_loss, lr, grad_norm, tokens_per_s."""

    def __init__(self, path: Path, trainer_ref=None):
        self.path = Path(path)
        self.trainer_ref = trainer_ref
        self.train_ended = False

    def write_before_training(self, rates: dict, key_terms: list[str]) -> None:
        """The generation check on the untouched model: the step-0 point of the quality curves."""
        self._write({"step": 0, "epoch": 0.0, "event": "before_training", **rates, "key_terms": key_terms})

    def write_final(self, logs: dict, state) -> None:
        """The saved result's scores, taken from the evaluation that measured the same weights."""
        self._write({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "event": "final_eval",
                     "final_val_loss": _clean(float(logs["eval_loss"])),
                     **{f"final_{k}": float(logs[k]) for k in GEN_KEYS if k in logs}})

    def _write(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if self.train_ended:
            # The evaluation after training scores the saved result (the best checkpoint when there is a
            # validation set), not a point on the curve: logged apart so the diagnosis is not misled.
            if "eval_loss" in logs:
                self.write_final(logs, state)
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for k, ours in _KEYS.items():
            if k in logs:
                row[ours] = _clean(float(logs[k]))
        for k in GEN_KEYS:
            if k in logs:
                row[k] = float(logs[k])
        for k in PREF_KEYS:  # preference stages (train/preference.py): per step, and eval_ per evaluation
            for key in (k, "eval_" + k):
                if key in logs:
                    row[key] = float(logs[key])
        if len(row) > 2:
            self._write(row)

    def on_train_end(self, args, state, control, **kwargs):
        self.train_ended = True
        tr = self.trainer_ref() if self.trainer_ref else None
        if tr is not None and tr.nan_step is not None and state.is_world_process_zero:
            self._write({"step": tr.nan_step, "epoch": round(state.epoch or 0.0, 4), "event": "nan_stop", "loss": math.nan})
        elif state.is_world_process_zero and state.max_steps and state.global_step < state.max_steps:
            self._write({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "event": "early_stop"})


try:
    from transformers.trainer_callback import ProgressCallback
except ImportError:  # pragma: no cover
    ProgressCallback = TrainerCallback


class ConciseProgress(ProgressCallback):
    """tqdm progress bar with ETA (from transformers) and one readable line per log event."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        parts = [f"step {state.global_step}/{state.max_steps}", f"epoch {state.epoch or 0:.2f}"]
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            parts.append(f"val_loss {logs['eval_loss']:.4f}")
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if "grad_norm" in logs:
            parts.append(f"grad_norm {logs['grad_norm']:.2f}")
        if "gen_stop_rate" in logs:
            parts.append(f"answers stop {logs['gen_stop_rate']:.0%}")
        if "gen_key_term_rate" in logs:
            parts.append(f"key terms {logs['gen_key_term_rate']:.0%}")
        if "tokens_per_s" in logs:
            parts.append(f"{logs['tokens_per_s']:.0f} tok/s")
        if len(parts) > 2:
            self.training_bar.write("  " + " · ".join(parts), file=sys.stderr)


class FollowFreeCores(TrainerCallback):
    """Keeps torch's thread count on the cores other processes leave free while the run goes on (cpu.ThreadWatch),
    when the count was measured at start (never over train.num_threads or OMP_NUM_THREADS)."""

    def __init__(self, watch):
        self.watch = watch

    def on_step_end(self, args, state, control, **kwargs):
        self.watch.check()
