"""The step plan a config gives for a number of training examples: accumulation, passes, steps, evaluations.

Pure arithmetic on the config, shared by training (train/workflow.py), `advise` and `lint`, so the three
always agree on how many optimizer steps a run takes.
"""

from __future__ import annotations

import math

from tunewise.config.schema import PREFERENCE_STAGES, Config

DEFAULT_EPOCHS, MAX_AUTO_EPOCHS = 3, 10


def auto_epochs(steps_per_epoch: int, min_steps: int) -> int:
    """Passes when num_epochs is unset: 3, or enough for min_steps optimizer steps on small data (at most 10)."""
    return min(MAX_AUTO_EPOCHS, max(DEFAULT_EPOCHS, math.ceil(min_steps / max(steps_per_epoch, 1))))


def short_of_steps(n_train: int, per_step: int, min_steps: int) -> bool:
    """Data too small to give min_steps optimizer steps in the default 3 passes at this effective batch."""
    return math.ceil(n_train / max(per_step, 1)) * DEFAULT_EPOCHS < min_steps


def accumulation(t, n_train: int | None, world: int = 1) -> int:
    """train.gradient_accumulation_steps, or when unset: 2, or 1 for data too small to give train.min_steps
    optimizer steps in 3 passes at 2 (small data needs more updates, not larger ones)."""
    if t.gradient_accumulation_steps is not None:
        return t.gradient_accumulation_steps
    if not n_train:
        return 2
    return 1 if short_of_steps(n_train, t.per_device_batch_size * 2 * max(world, 1), t.min_steps) else 2


def steps_plan(cfg: Config, n_train: int, world: int = 1) -> dict:
    t = cfg.train
    accum = accumulation(t, n_train, world)
    per_step = t.per_device_batch_size * accum * world
    steps_per_epoch = max(1, math.ceil(n_train / per_step))
    if t.num_epochs is not None:
        epochs = t.num_epochs
    elif t.stage in PREFERENCE_STAGES:
        epochs = DEFAULT_EPOCHS  # preference pairs are learned in a few passes; more of them overfit
    else:
        epochs = auto_epochs(steps_per_epoch, t.min_steps)
    total = t.max_steps or max(1, math.ceil(steps_per_epoch * epochs))
    eval_steps = t.eval_steps or max(1, total // 10)
    return {"per_step": per_step, "accum": accum, "steps_per_epoch": steps_per_epoch, "total": total, "eval_steps": eval_steps,
            "save_steps": t.save_steps or eval_steps, "epochs": epochs, "auto_epochs": t.num_epochs is None}


def packs(cfg: Config) -> bool:
    """train.packing resolved: an explicit true or false as written; 'auto' packs SFT and continued-pretraining
    batches unless the method puts virtual tokens before every example (prefix/prompt tuning) or
    train.group_by_length asks for padded batches of similar lengths. Training also checks the loaded model
    attends within examples only before it packs (train/collate.packed_attention_is_exact)."""
    from tunewise.config.methods import FACTS

    t = cfg.train
    if t.packing != "auto":
        return bool(t.packing)
    facts = FACTS.get(cfg.method.name)
    return t.stage not in PREFERENCE_STAGES and not t.group_by_length and not (facts and facts.virtual_tokens)


def checkpoint_interval(save_steps: int | None, eval_steps: int, has_val: bool) -> tuple[int, str | None]:
    """Steps between checkpoints, and a note when train.save_steps cannot be used as written.

    With a validation set the best checkpoint is kept, so checkpoints must fall on evaluations: train.save_steps
    is rounded up to a multiple of the evaluation interval (transformers refuses anything else).
    """
    if save_steps is None:
        return eval_steps, None
    if not has_val or save_steps % eval_steps == 0:
        return save_steps, None
    used = math.ceil(save_steps / eval_steps) * eval_steps
    return used, (f"train.save_steps={save_steps} rounded up to {used}: with a validation set checkpoints are saved at "
                  f"evaluations (every {eval_steps} steps, train.eval_steps) so the best one can be kept; set "
                  f"train.save_steps to a multiple of {eval_steps}")
