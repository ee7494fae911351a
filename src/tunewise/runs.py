"""The run directory contract (shared/DESIGN.md): paths and readers every stage uses.

Also the guarantees around it: a run directory always lies under its root (`run_dir_for`), what a run
directory holds is read with errors that name the file (`read_run_config`, `read_template`), only complete
checkpoints count (`scan_checkpoints`), and a run directory cannot turn on remote code by itself
(`allow_remote_code`).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tunewise.errors import RunError

# --------------------------------------------------------------------------------------------- containment


def run_dir_for(cfg) -> Path:
    """<run.root>/<run.name>, refused when it would resolve outside run.root (a symlinked run folder)."""
    root = Path(cfg.run.root)
    run = root / cfg.run.name
    check_inside(run, root, what="run directory", key="run.name")
    return run


def check_inside(path: str | Path, root: str | Path, *, what: str = "path", key: str | None = None) -> Path:
    """The resolved `path`, which must be a strict descendant of resolved `root`; a RunError otherwise."""
    p, r = Path(path).resolve(), Path(root).resolve()
    if p == r or r not in p.parents:
        raise RunError(f"the {what} {path} resolves to {p}, which is not inside {r}", where=key or str(path),
                       fix="use a plain run name (one folder name, no '..' or '/'), and no symlink out of the runs folder")
    return p


# --------------------------------------------------------------------------------------------- reading a run


def require_run(run: str | Path) -> Path:
    p = Path(run)
    if not (p / "config.yaml").exists():
        raise RunError("not a tunewise run directory (no config.yaml)", where=str(p),
                       fix="pass the folder that `tunewise train` printed, e.g. runs/demo")
    return p


_REMOTE_CODE = {"allowed": False}


def allow_remote_code(allowed: bool = True) -> None:
    """Let this process run Python code shipped with a run's model (set by a command's --trust-remote-code).

    A run directory's config.yaml alone never turns it on: whoever hands you a run folder would otherwise
    choose what code `tunewise chat RUN` executes.
    """
    _REMOTE_CODE["allowed"] = bool(allowed)


def remote_code_allowed() -> bool:
    return _REMOTE_CODE["allowed"]


def read_run_config(run: str | Path):
    """The run's resolved config; `model.trust_remote_code` only as far as this command allows it."""
    from pydantic import ValidationError

    from tunewise.config.load import explain_validation
    from tunewise.config.schema import Config

    p = require_run(run) / "config.yaml"
    fix = "the run directory is damaged: restore config.yaml, or re-run `tunewise train` with --overwrite"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        raise RunError(f"config.yaml is not valid YAML ({getattr(e, 'problem', None) or e})",
                       where=f"{p}:{mark.line + 1}" if mark else str(p), fix=fix) from None
    if not isinstance(data, dict):
        raise RunError("config.yaml does not hold a config (a mapping of sections)", where=str(p), fix=fix)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        err = explain_validation(e, str(p))
        raise RunError(err.what, where=err.where, fix=fix) from None
    if cfg.model.trust_remote_code and not remote_code_allowed():
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"trust_remote_code": False})})
    return cfg


def read_template(run: str | Path):
    from tunewise.templates import ChatTemplate

    p = require_run(run) / "template.json"
    if not p.exists():
        raise RunError("the run has no template.json", where=str(p.parent), fix="re-run `tunewise train` for this config")
    fix = "the run directory is damaged: restore template.json, or re-run `tunewise train` with --overwrite"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f"{p}:{e.lineno}" if isinstance(e, json.JSONDecodeError) else str(p)
        raise RunError(f"template.json is not valid JSON ({getattr(e, 'msg', None) or e})", where=where, fix=fix) from None
    if not isinstance(data, dict) or not isinstance(data.get("chat_template"), str) or not data.get("name"):
        raise RunError("template.json lacks its chat template (no 'name' and 'chat_template' text)", where=str(p), fix=fix)
    bad = [k for k in ("stop_strings", "stop_token_ids") if k in data and not isinstance(data[k], list)]
    if bad:
        raise RunError(f"template.json: '{bad[0]}' must be a list", where=str(p), fix=fix)
    return ChatTemplate.from_json(data)


# --------------------------------------------------------------------------------------------- what a run holds


def has_result(run: str | Path) -> bool:
    run = Path(run)
    return (run / "adapter").exists() or (run / "model").exists()


def last_good_checkpoint(run: str | Path) -> Path | None:
    """A run stopped by NaN/inf saves no result; its last good checkpoint stands in for it (eval, chat, export)."""
    run = Path(run)
    try:
        summary = json.loads((run / "train_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = summary.get("last_good_checkpoint") if isinstance(summary, dict) else None
    if not name or summary.get("diverged_at_step") is None:
        return None
    ck = run / name
    return ck if ck.is_dir() and checkpoint_problem(ck) is None else None


def trained_parts(run: str | Path) -> list[str]:
    """What makes a run directory 'trained': checkpoints, a result, a training summary (names, for messages)."""
    run = Path(run)
    parts = [n for n in ("adapter", "model", "train_summary.json") if (run / n).exists()]
    ck = run / "checkpoints"
    if ck.is_dir() and any(p.name.startswith("checkpoint-") for p in ck.iterdir()):
        parts.insert(0, "checkpoints/")
    return parts


# --------------------------------------------------------------------------------------------- checkpoints

MANIFEST = "tunewise_checkpoint.json"   # written last inside a checkpoint: the files it holds and their sizes
_STAGING = ".saving"                    # checkpoints/.saving/checkpoint-N while a save is in progress
_DELETING = ".deleting-"                # checkpoints/.deleting-checkpoint-N while rotation removes it


@dataclass
class CheckpointScan:
    complete: list[Path] = field(default_factory=list)            # oldest first
    incomplete: list[tuple[Path, str]] = field(default_factory=list)  # (folder, why)

    @property
    def newest(self) -> Path | None:
        return self.complete[-1] if self.complete else None


def _step(p: Path) -> int | None:
    tail = p.name.rsplit("-", 1)[-1]
    return int(tail) if p.name.startswith("checkpoint-") and tail.isdigit() else None


def checkpoint_problem(ck: Path) -> str | None:
    """Why the checkpoint folder `ck` cannot be resumed from (None: it is complete)."""
    man = ck / MANIFEST
    if man.exists():
        try:
            files = json.loads(man.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"{MANIFEST} is damaged"
        for name, size in files.items():
            f = ck / name
            if not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != size:
                return f"{name} is {f.stat().st_size} bytes, {size} were written (truncated or changed)"
        return None
    # Written before tunewise sealed its checkpoints: what Trainer writes, trainer_state.json last of all.
    state = ck / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (the save was interrupted)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json is damaged"
    weights = [w for w in ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
                           "bottleneck_adapter.safetensors") if (ck / w).is_file()]
    if not weights and not any(ck.glob("*.safetensors")):
        return "no weights file"
    if not (ck / "optimizer.pt").is_file():
        return "no optimizer.pt"
    return None


def scan_checkpoints(run: str | Path) -> CheckpointScan:
    """The run's checkpoints, complete ones apart from incomplete ones (with why)."""
    return scan_folder(Path(run) / "checkpoints")


def scan_folder(ck: Path) -> CheckpointScan:
    scan = CheckpointScan()
    if not ck.is_dir():
        return scan
    for p in sorted((p for p in ck.iterdir() if p.is_dir() and _step(p) is not None), key=_step):
        why = checkpoint_problem(p)
        if why is None:
            scan.complete.append(p)
        else:
            scan.incomplete.append((p, why))
    return scan


def newest_checkpoint(run: str | Path) -> Path | None:
    """The newest *complete* checkpoint (see `scan_checkpoints`)."""
    return scan_checkpoints(run).newest


def clean_checkpoints(run: str | Path, say=None) -> CheckpointScan:
    """Before resuming: remove interrupted saves and deletions, and incomplete checkpoints, naming each."""
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    ck = Path(run) / "checkpoints"
    if ck.is_dir():
        for p in ck.iterdir():
            if p.name == _STAGING:
                for part in sorted(p.iterdir()):
                    say(f"[tunewise] skipping incomplete checkpoint {ck / part.name} (its save was interrupted); removed")
            if p.name == _STAGING or p.name.startswith(_DELETING):
                shutil.rmtree(p, ignore_errors=True)
    scan = scan_checkpoints(run)
    for p, why in scan.incomplete:
        say(f"[tunewise] skipping incomplete checkpoint {p} ({why}); removed")
        shutil.rmtree(p, ignore_errors=True)
    return scan
