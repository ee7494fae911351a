"""The run directory contract (shared/DESIGN.md): paths and readers every stage uses.

Also the guarantees around it: a run directory always lies under its root (`run_dir_for`), what a run
directory holds is read with errors that name the file (`read_run_config`, `read_template`), only complete
checkpoints count (`scan_checkpoints`), and a run directory cannot turn on remote code by itself
(`allow_remote_code`).
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

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


def require_run(run: str | Path | RunDir) -> Path:
    p = Path(run)
    if not (p / "config.yaml").exists():
        raise RunError("not a tunewise run directory (no config.yaml)", where=str(p),
                       fix="pass the folder that `tunewise train` printed, e.g. runs/demo")
    return p


def _file(name: str) -> property:
    return property(lambda self: self.path / name, doc=f"RUN/{name}")


class RunDir:
    """One run directory (shared/DESIGN.md's contract): the typed path of everything it holds, and its config,
    template, tokenizer and model type, each read once and kept.

    A command that works on a run makes one RunDir and hands it down (export hands it to merge, verification
    and the model card), so config.yaml and template.json are parsed once per command. `RunDir.open` requires
    an existing run (config.yaml); `RunDir(path)` is the layout of a run about to be written. It reads as a
    path: `os.fspath(run)`, `Path(run)`, `run / "name"`, `run.name`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def open(cls, run: str | Path | RunDir) -> RunDir:
        return run if isinstance(run, RunDir) else cls(require_run(run))

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # what the run holds (RUN_ENTRIES in train/rundir.py lists the top-level names)
    config_file = _file("config.yaml")
    template_file = _file("template.json")
    metrics = _file("metrics.jsonl")
    summary = _file("train_summary.json")
    stamp = _file("stamp.json")
    curves_png = _file("curves.png")
    report_html = _file("report.html")
    diagnosis = _file("diagnosis.json")
    tensorboard = _file("tensorboard")
    checkpoints = _file("checkpoints")
    adapter = _file("adapter")           # the result of an adapter method
    model = _file("model")               # the result of a full-weights method
    data = _file("data")
    train_data = _file("data/train.jsonl")
    val_data = _file("data/val.jsonl")
    stats = _file("data/stats.json")
    lengths_png = _file("data/lengths.png")
    tokenizer_dir = _file("data/tokenizer")
    eval = _file("eval")
    eval_report = _file("eval/report.json")
    export = _file("export")
    merged = _file("export/merged")
    verify_json = _file("export/verify.json")

    # read once
    @functools.cached_property
    def config(self):
        return _parse_config(require_run(self.path) / "config.yaml")

    @functools.cached_property
    def template(self):
        return _parse_template(require_run(self.path) / "template.json")

    @functools.cached_property
    def resolved_model(self):
        from tunewise.models.load import resolve_model

        return resolve_model(self.config.model.name_or_path, self.config.model.revision)

    @functools.cached_property
    def tokenizer(self):
        """The base model's tokenizer, which training used (a shared object: copy it before changing it)."""
        from tunewise.models.load import load_tokenizer

        return load_tokenizer(self.resolved_model.path, self.config.model.trust_remote_code)

    @functools.cached_property
    def uses_tools(self) -> bool:
        """Whether the run trained on conversations with tools: a record of data/train.jsonl or data/val.jsonl offers
        tools or holds a call or a tool's result. Export then writes a tools-capable Ollama TEMPLATE and verifies a
        tool prompt. Only lines that name one of those keys are parsed, and the scan stops at the first hit."""
        keys = ('"tools"', '"tool_calls"', '"tool"')
        for path in (self.train_data, self.val_data):
            if not path.exists():
                continue
            with open(path, encoding="utf-8-sig") as f:
                for line in f:
                    if any(k in line for k in keys) and _has_tools(line):
                        return True
        return False

    @functools.cached_property
    def model_type(self) -> str:
        from tunewise.models.load import model_type_of

        return model_type_of(self.config, self.resolved_model.path)


def _has_tools(line: str) -> bool:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return False  # a damaged line is for the reader that trains on it to name, not for this question
    if not isinstance(rec, dict):
        return False
    msgs = rec.get("messages") if isinstance(rec.get("messages"), list) else []
    return bool(rec.get("tools")) or any(isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls"))
                                         for m in msgs)


_REMOTE_CODE = {"allowed": False}


def allow_remote_code(allowed: bool = True) -> None:
    """Let this process run Python code shipped with a run's model (set by a command's --trust-remote-code).

    A run directory's config.yaml alone never turns it on: whoever hands you a run folder would otherwise
    choose what code `tunewise chat RUN` executes.
    """
    _REMOTE_CODE["allowed"] = bool(allowed)


def remote_code_allowed() -> bool:
    return _REMOTE_CODE["allowed"]


def read_run_config(run: str | Path | RunDir):
    """The run's resolved config; `model.trust_remote_code` only as far as this command allows it.

    Given a RunDir, its config as already read (read once per RunDir)."""
    if isinstance(run, RunDir):
        return run.config
    return _parse_config(require_run(run) / "config.yaml")


def _parse_config(p: Path):
    from tunewise.config.load import read_saved_config

    cfg = read_saved_config(p)
    if cfg.model.trust_remote_code and not remote_code_allowed():
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"trust_remote_code": False})})
    return cfg


def read_template(run: str | Path | RunDir):
    """The run's chat template (template.json); given a RunDir, as already read."""
    if isinstance(run, RunDir):
        return run.template
    return _parse_template(require_run(run) / "template.json")


def _parse_template(p: Path):
    from tunewise.templates import ChatTemplate

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
    return RunDir(run).adapter.exists() or RunDir(run).model.exists()


def last_good_checkpoint(run: str | Path) -> Path | None:
    """A run stopped by NaN/inf saves no result; its last good checkpoint stands in for it (eval, chat, export)."""
    run = Path(run)
    try:
        summary = json.loads(RunDir(run).summary.read_text(encoding="utf-8"))
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
    ck = RunDir(run).checkpoints
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
    return scan_folder(RunDir(run).checkpoints)


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
    ck = RunDir(run).checkpoints
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
