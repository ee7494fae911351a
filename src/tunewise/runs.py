"""The run directory contract (shared/DESIGN.md): paths and readers every stage uses."""

from __future__ import annotations

from pathlib import Path

import yaml

from tunewise.errors import RunError


def run_dir_for(cfg) -> Path:
    return Path(cfg.run.root) / cfg.run.name


def require_run(run: str | Path) -> Path:
    p = Path(run)
    if not (p / "config.yaml").exists():
        raise RunError("not a tunewise run directory (no config.yaml)", where=str(p),
                       fix="pass the folder that `tunewise train` printed, e.g. runs/demo")
    return p


def read_run_config(run: str | Path):
    from tunewise.config.schema import Config

    p = require_run(run)
    return Config.model_validate(yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8")))


def read_template(run: str | Path):
    from tunewise.templates import ChatTemplate

    p = require_run(run) / "template.json"
    if not p.exists():
        raise RunError("the run has no template.json", where=str(p.parent), fix="re-run `tunewise train` for this config")
    return ChatTemplate.from_json(p)


def newest_checkpoint(run: str | Path) -> Path | None:
    ck = Path(run) / "checkpoints"
    if not ck.exists():
        return None
    cands = [p for p in ck.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return max(cands, key=lambda p: int(p.name.split("-")[-1])) if cands else None
