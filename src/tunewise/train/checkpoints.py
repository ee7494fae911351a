"""Crash-safe trainer checkpoints: written aside, sealed, then renamed into place; rotated safely.

transformers' Trainer writes checkpoint-N/ file by file where it will stay, and deletes old checkpoints
in place, so a kill (or a full disk) during a save leaves a folder that looks like a checkpoint and
breaks `--resume`. Here the Trainer's own save runs unchanged into checkpoints/.saving/; the folder
gets a manifest (`runs.MANIFEST`: every file and its size), and only then is renamed to checkpoint-N.
Old checkpoints are renamed to .deleting-checkpoint-N before they are removed. `runs.scan_checkpoints`
trusts a checkpoint only when its manifest matches, and `runs.clean_checkpoints` removes leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from tunewise.faults import crash_point
from tunewise.fileio import disk_full_error, is_disk_full, write_text
from tunewise.runs import _DELETING, _STAGING, MANIFEST, scan_folder


def seal(folder: Path) -> None:
    """Write the manifest of a fully written checkpoint folder (last, so it vouches for everything else)."""
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    write_text(folder / MANIFEST, json.dumps({"files": files}, indent=1) + "\n")


def rotate(run_dir: Path, limit: int | None, best: str | None) -> None:
    """Keep the newest `limit` complete checkpoints (and the best); like Trainer's rotation, renamed away first."""
    if not limit or limit <= 0:
        return
    done = scan_folder(run_dir).complete
    if len(done) <= limit:
        return
    keep = {done[-1].resolve()} | ({Path(best).resolve()} if best else set())
    n_keep = max(limit, len(keep))
    left = len(done)
    for ck in done:
        if left <= n_keep:
            break
        if ck.resolve() in keep:
            continue
        gone = ck.with_name(_DELETING + ck.name)
        os.replace(ck, gone)
        crash_point("checkpoint:rotate")
        shutil.rmtree(gone, ignore_errors=True)
        left -= 1


def save_checkpoint(trainer, save, model, trial) -> None:
    """Run Trainer's `_save_checkpoint` (`save`) into a staging folder, seal it, rename it into place."""
    from tunewise.train import distributed as dist

    run_dir = Path(trainer.args.output_dir)
    name = f"checkpoint-{trainer.state.global_step}"
    staging_root = run_dir / _STAGING
    final = run_dir / name
    main = trainer.args.should_save
    if main:
        shutil.rmtree(staging_root, ignore_errors=True)
    limit = trainer.args.save_total_limit
    trainer._tw_staging, trainer.args.save_total_limit = str(staging_root), None  # rotation after the rename
    try:
        save(model, trial)
        crash_point("checkpoint:written")
    except (OSError, RuntimeError) as e:
        if main:
            shutil.rmtree(staging_root, ignore_errors=True)
        if is_disk_full(e):
            prev = scan_folder(run_dir).newest
            raise disk_full_error(e, final, f"the last complete checkpoint, {prev.name if prev else 'none yet'}, is "
                                  "kept and `--resume` continues from it") from None
        raise
    finally:
        trainer._tw_staging, trainer.args.save_total_limit = None, limit
    staged = staging_root / name
    best = trainer.state.best_model_checkpoint
    if best and Path(best).parent == staging_root:  # the new checkpoint is the best: record where it will live
        trainer.state.best_model_checkpoint = str(final)
    dist.barrier()  # every rank's shards are written before rank 0 seals and moves them
    if not main:
        return
    if (staged / "trainer_state.json").exists():
        trainer.state.save_to_json(str(staged / "trainer_state.json"))
    try:
        seal(staged)
    except OSError as e:
        shutil.rmtree(staging_root, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full_error(e, final, "the last complete checkpoint is kept") from None
        raise
    crash_point("checkpoint:sealed")
    if final.exists():  # a save at a step that was saved before (resumed run): the old one goes first
        os.replace(final, final.with_name(_DELETING + name))
        shutil.rmtree(final.with_name(_DELETING + name), ignore_errors=True)
    os.replace(staged, final)
    shutil.rmtree(staging_root, ignore_errors=True)
    rotate(run_dir, limit, trainer.state.best_model_checkpoint)


def output_dir(trainer, default: str) -> str:
    """Trainer._get_output_dir while a save is staged: the staging folder."""
    return getattr(trainer, "_tw_staging", None) or default



def finish_from_checkpoint(trainer, ckpt: Path):
    """What the end of Trainer.train does, for a resumed run whose checkpoint is at its last step already.

    Resuming there would train one step too many (transformers takes a step before it checks max_steps),
    so the result would differ from the uninterrupted run's. Instead: the checkpoint's state, the best
    weights (or the checkpoint's own), and the metrics log closed as at the end of training.
    """
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    from tunewise.train.callbacks import MetricsJsonl

    trainer.state = TrainerState.load_from_json(str(ckpt / "trainer_state.json"))
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best and Path(best).is_dir():
        trainer._load_best_model()
    else:
        trainer._load_from_checkpoint(str(ckpt))
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, MetricsJsonl):
            cb.train_ended = True
    return TrainOutput(trainer.state.global_step, None, {})


def _stopped_there(ckpt: Path) -> bool:
    """Early stopping had ended training when this checkpoint was saved: the stop came before the planned last
    step (a checkpoint at the old last step of a run given more steps on resume trains on)."""
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        stop = bool(state["stateful_callbacks"]["TrainerControl"]["args"]["should_training_stop"])
        return stop and int(state["global_step"]) < int(state["max_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def train_or_finish(trainer, ckpt: Path | None, total_steps: int):
    """Trainer.train, resumed from `ckpt` when given; a checkpoint saved where training stopped (its last step,
    or where early stopping ended it) is finished from, not trained on."""
    if ckpt is not None and (int(ckpt.name.rsplit("-", 1)[1]) >= total_steps or _stopped_there(ckpt)):
        print(f"[tunewise] training had ended at {ckpt.name}: finishing the run from it", file=sys.stderr, flush=True)
        return finish_from_checkpoint(trainer, ckpt)
    return trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def checkpoint_bytes(model, *, adapter_only: bool, optimizer: str) -> tuple[int, int]:
    """(one trainer checkpoint, the saved result) in bytes, estimated from the model as it will train: the
    weights that are saved (an adapter's own, or every distinct tensor of a full model) and the optimiser's
    state for each trainable parameter (train/optim.py's per-optimiser size)."""
    from tunewise.train.optim import state_bytes

    seen: set[int] = set()
    weights = states = 0
    for p in model.parameters():
        key = p.data_ptr()
        if key in seen:  # tied embeddings are saved once
            continue
        seen.add(key)
        size = p.numel() * p.element_size()
        if p.requires_grad:
            states += int(p.numel() * state_bytes(optimizer, 4))  # states are kept in fp32 (or 8-bit)
        if p.requires_grad or not adapter_only:
            weights += size
    return weights + states + (1 << 20), weights  # + scheduler, RNG states, trainer_state.json


def disk_room(run_dir: Path, model, *, adapter_only: bool, optimizer: str, total_steps: int, save_steps: int,
              keep: int | None, keeps_best: bool, free: int | None = None) -> str | None:
    """Checked before training starts, so a run does not end at its first save (or its last) on a full disk.

    Raises RunError when the disk cannot hold even one checkpoint and the result (no run could finish);
    returns a warning when it cannot hold every checkpoint kept at once (with rotation) plus the result."""
    from tunewise.errors import RunError

    ckpt, result = checkpoint_bytes(model, adapter_only=adapter_only, optimizer=optimizer)
    saves = max(1, -(-total_steps // max(save_steps, 1)))       # the last step is always saved
    held = min(saves, max(keep or saves, 2 if keeps_best else 1) + 1)  # the newest is written before rotation
    need_min, need_all = ckpt + result, held * ckpt + result
    if free is None:
        probe = Path(run_dir)
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
    if free < need_min:
        raise RunError(
            f"not enough free disk for this run: one checkpoint ({_gb(ckpt)}: weights and optimizer state) and the "
            f"result ({_gb(result)}) need {_gb(need_min)}, and {_gb(free)} is free", where=str(run_dir),
            fix="free disk space, or point run.root at a larger disk; for full/freeze training, method: lora needs "
                "a small fraction of this")
    if free < need_all:
        return (f"the disk may fill before the run ends: up to {held} checkpoints of {_gb(ckpt)} are kept at once "
                f"plus the result ({_gb(result)}), {_gb(need_all)} in all, and {_gb(free)} is free; lower "
                "train.save_total_limit or free disk space")
    return None
