"""What `tunewise train` (and `data prepare`) may do to a run directory that already exists.

- absent or empty: used.
- holds no checkpoint and no result (what `data prepare` or a failed run leaves): reused, its files replaced.
- trained (checkpoints/, adapter/ or model/, train_summary.json): refused, unless --resume or --overwrite.
- --resume: refused when the config changed in a way the checkpoint cannot honour; `RESUMABLE` lists the
  keys that may change (README "Reliability" repeats them). config.yaml is rewritten only after that check.
- --overwrite, and reuse: only a folder that tunewise wrote is emptied (a config.yaml, or nothing but the
  files a run holds), so a mistyped run.root cannot empty a folder of your own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tunewise.config import dump_config
from tunewise.config.schema import Config
from tunewise.console import say as _say
from tunewise.errors import RunError
from tunewise.fileio import atomic_path, clean_temps, is_temp, write_text
from tunewise.runs import (
    RunDir,
    clean_checkpoints,
    run_dir_for,
    scan_checkpoints,
    trained_parts,
)

# Keys a resumed run may change: the schedule's length, how often it logs/evaluates/saves, whether it stops
# early (its patience and threshold come back with the checkpoint), and settings that change speed or memory
# but not the arithmetic; generation and eval are not used by training. Anything else (model, method, data, template, learning rate, batch, scheduler, seed,
# precision, ...) is restored from the checkpoint or baked into it, so a changed value would be ignored.
RESUMABLE = (
    "run.", "generation.", "eval.",
    "train.num_epochs", "train.max_steps", "train.logging_steps", "train.eval_steps", "train.save_steps",
    "train.save_total_limit", "train.early_stopping", "train.num_threads", "train.flush_denormal", "train.resume",
    "train.gradient_checkpointing", "train.fast_loss", "train.loss_chunk_size", "model.attn_implementation",
)

# What a run directory holds (DESIGN.md); a folder with anything else and no config.yaml is not one.
RUN_ENTRIES = {"config.yaml", "template.json", "data", "metrics.jsonl", "checkpoints", "adapter", "model",
               "train_summary.json", "stamp.json", "curves.png", "report.html", "diagnosis.json", "eval", "export",
               "tensorboard"}



def _entries(run: Path) -> list[Path]:
    """The folder's entries, less the board's logs (ui_*.log, written before a job starts) and temporaries."""
    if not run.is_dir():
        return []
    return [p for p in run.iterdir() if not p.name.startswith("ui_") and not is_temp(p)]


def _foreign(run: Path) -> list[str]:
    """Entries that tunewise would not have written, when the folder has no config.yaml."""
    if RunDir(run).config_file.exists():
        return []
    return sorted(p.name for p in _entries(run) if p.name not in RUN_ENTRIES)


def reset_run_dir(run: Path) -> None:
    """Empty a run directory (the board's logs stay); refused for a folder tunewise did not write."""
    foreign = _foreign(run)
    if foreign:
        raise RunError(f"this folder is not a tunewise run directory (it holds {', '.join(foreign[:5])}"
                       f"{', ...' if len(foreign) > 5 else ''}), so tunewise will not empty it", where=str(run),
                       fix="choose another run name (--set run.name=NEW) or run.root; or move those files away")
    for p in _entries(run):
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    clean_temps(run)


def describe_trained(run: Path) -> str:
    scan = scan_checkpoints(run)
    parts = [p for p in trained_parts(run) if p != "checkpoints/"]
    if scan.complete:
        parts.insert(0, f"checkpoints up to {scan.newest.name}")
    if scan.incomplete:
        parts.append("incomplete " + ", ".join(f"{p.name} ({why})" for p, why in scan.incomplete))
    staging = RunDir(run).checkpoints / ".saving"
    if staging.is_dir():
        parts += [f"an interrupted save of {p.name}" for p in sorted(staging.iterdir())]
    return ", ".join(parts) or "files of a run"


def start_run_dir(cfg: Config, *, resume: bool, overwrite: bool) -> Path:
    """Make the run directory ready for training and write config.yaml (after every refusal, before any work)."""
    run = run_dir_for(cfg)
    if _entries(run):
        if resume:
            check_resume(run, cfg)
            clean_temps(run)
            clean_checkpoints(run, _say)
        elif trained_parts(run) and not overwrite:
            raise RunError(f"run directory already exists and holds a trained run ({describe_trained(run)})",
                           where=str(run),
                           fix="add --resume to continue it, --overwrite to start over, or --set run.name=NEW")
        else:
            if not trained_parts(run):
                _say(f"[tunewise] reusing {run}: it holds no checkpoint and no result (left by `data prepare` or a failed run)")
            reset_run_dir(run)
    run.mkdir(parents=True, exist_ok=True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(RunDir(run).tensorboard)
    write_text(RunDir(run).config_file, dump_config(cfg))  # written first, before anything can fail
    return run


# --------------------------------------------------------------------------------------------- resume


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("options", "columns", "tags"):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def resume_differences(saved: Config, new: Config) -> list[str]:
    """'key: saved -> new' for each setting that differs and may not change on resume."""
    a, b = _flat(saved.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key) and not any(key == r or (r.endswith(".") and key.startswith(r)) for r in RESUMABLE):
            out.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return out


def check_resume(run: Path, cfg: Config) -> None:
    """Refuse --resume when the checkpoint was trained with settings it cannot honour now."""
    import yaml
    from pydantic import ValidationError

    if not scan_checkpoints(run).complete or not (run / "config.yaml").exists():
        return  # nothing to continue from: the run starts over with this config
    try:
        saved = Config.model_validate(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError, UnicodeDecodeError, TypeError) as e:
        raise RunError(f"config.yaml of the run is damaged ({type(e).__name__}), so --resume cannot check what "
                       "the checkpoint was trained with", where=str(run / "config.yaml"),
                       fix="restore config.yaml, or start over with --overwrite") from None
    diff = resume_differences(saved, cfg)
    if diff:
        raise RunError("--resume with settings the checkpoint cannot honour (it keeps what it was trained with):\n  - "
                       + "\n  - ".join(diff), where=str(run / "config.yaml"),
                       fix="undo these changes to resume; or start a new run with them (--set run.name=NEW, or "
                       "--overwrite). On resume only the run length, logging/eval/save cadence, early stopping and "
                       "speed settings may change (README: Reliability)")


def data_changed(old_dir: Path, new_dir: Path) -> list[str]:
    """Split files whose content differs between two prepared data folders."""
    from tunewise.stamp import fingerprint

    return [n for n in ("train.jsonl", "val.jsonl") if fingerprint(old_dir / n) != fingerprint(new_dir / n)]


def trim_metrics(run: Path, step: int) -> None:
    """Resuming from checkpoint-`step`: the metrics logged after it belong to the interrupted attempt."""
    import json

    from tunewise.fileio import write_text

    path = RunDir(run).metrics
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        if isinstance(row, dict) and row.get("step", 0) <= step and row.get("event") in (None, "before_training"):
            kept.append(line if line.endswith("\n") else line + "\n")
    write_text(path, "".join(kept))


def prepare_for_run(cfg: Config, run: Path, *, resume: bool):
    """The run's data/. On resume with checkpoints, the data must be what the checkpoint was trained on:
    prepared aside and compared first, so a refusal leaves the run's data as it was."""
    from tunewise.data.prepare import prepare, prepare_into

    data = RunDir(run).data
    if not (resume and scan_checkpoints(run).complete and RunDir(run).train_data.exists()):
        return prepare(cfg, run)
    with atomic_path(data, is_dir=True) as staging:
        prepared = prepare_into(cfg, staging)
        changed = data_changed(data, staging)
        if changed:
            raise RunError(f"--resume, but the training data changed since the checkpoint was saved ({', '.join(changed)} "
                           "differ); the checkpoint continues the data it was trained on", where=str(data),
                           fix="restore the data files, or start a new run with this data (--overwrite or --set run.name=NEW)")
    return prepared.moved_to(data)


def metrics_for_resume(run: Path, ckpt: Path | None, resume: bool) -> None:
    """metrics.jsonl for this attempt: started afresh, or cut back to the checkpoint being resumed."""
    if resume and ckpt is None:
        _say("[tunewise] --resume: no complete checkpoint yet, starting from the beginning")
    if ckpt is None:
        RunDir(run).metrics.unlink(missing_ok=True)
        return
    _say(f"[tunewise] resuming from {ckpt}")
    trim_metrics(run, int(ckpt.name.rsplit("-", 1)[1]))
