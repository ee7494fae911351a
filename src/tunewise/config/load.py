"""Load a YAML config, apply `--set section.key=value` overrides, validate, and explain mistakes."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunewise.config.methods import FACTS, facts_of
from tunewise.config.schema import Config
from tunewise.errors import ConfigError


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid field names at a location in the schema (for 'did you mean')."""
    cur: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        f = getattr(cur, "model_fields", {}).get(part)
        if f is None:
            break
        ann = f.annotation
        inner = getattr(ann, "__args__", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cur = ann
        elif inner:
            sub = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
            if not sub:
                break
            cur = sub[0]
        else:
            break
    return list(getattr(cur, "model_fields", {}))


def _dotted(loc: tuple) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def explain_validation(e: ValidationError, source: str) -> ConfigError:
    """One ConfigError listing every problem pydantic found, each with its dotted key."""
    lines = []
    for err in e.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = _dotted(loc)
        if err["type"] == "extra_forbidden":
            valid = _fields_at(Config, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f"did you mean '{_dotted(loc[:-1] + (close[0],))}'?" if close else f"valid keys here: {', '.join(valid)}"
            lines.append(f"unknown key '{key}': {hint}")
        else:
            got = err.get("input")
            got_s = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            msg = err["msg"]
            if err["type"] == "literal_error":
                msg = "must be " + msg.removeprefix("Input should be ")
            lines.append(f"'{key}': {msg}{got_s}")
    return ConfigError(
        "; ".join(lines) if len(lines) == 1 else "invalid config:\n  - " + "\n  - ".join(lines),
        where=source,
        fix="correct the key(s) above; `tunewise explain KEY` describes each key and its allowed values",
    )


def set_dotted(d: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set '{dotted}': '{p}' is not a section", where=source)
        cur = nxt
    cur[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    out = []
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value, got '{item}'", where="--set", fix="e.g. --set train.learning_rate=1e-4")
        k, v = item.split("=", 1)
        try:
            val = yaml.safe_load(v) if v != "" else None
        except yaml.YAMLError:
            val = v
        out.append((k.strip(), val))
    return out


def read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError("config file not found", where=str(path), fix="check the path; examples/ holds ready configs")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"not valid YAML ({getattr(e, 'problem', e)})", where=where, fix="check indentation and colons on that line") from None
    if not isinstance(data, dict):
        raise ConfigError("a config must be a mapping of sections (model:, data:, train:, ...)", where=str(path))
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None, base: dict | None = None,
                values: dict[str, Any] | None = None) -> Config:
    """Load and validate a config. Relative dataset paths are made relative to the config's folder.

    overrides: `section.key=value` strings (YAML values, the CLI's --set); values: {dotted key: Python value} (the API).
    """
    data: dict = dict(base or {})
    source = "<defaults>"
    cfg_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        data = read_yaml(path)
        source = str(path)
        cfg_dir = path.resolve().parent
        data.setdefault("run", {})
        if isinstance(data["run"], dict):
            data["run"].setdefault("name", path.stem)
    for k, v in parse_overrides(overrides):
        set_dotted(data, k, v, f"--set {k}")
    for k, v in (values or {}).items():
        set_dotted(data, k, v, k)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise explain_validation(e, source + (" (with --set overrides)" if overrides else "") + (" (with overrides)" if values else "")) from None
    return resolve(cfg, cfg_dir)


def _resolve_path(p: str | None, base: Path) -> str | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    if not q.is_absolute() and (base / q).exists():
        return str((base / q).resolve())
    if q.exists():
        return str(q.resolve())
    # Found nowhere: name the config-relative path, so the error says exactly where tunewise looked first.
    return str(base / q) if not q.is_absolute() else p


# data.general: builtin, the general instructions tunewise ships (kept with the data stage's other resources)
BUILTIN_GENERAL = Path(__file__).resolve().parents[1] / "data" / "resources" / "general_instructions.jsonl"


def resolve(cfg: Config, cfg_dir: Path) -> Config:
    """Fill every derived default so config.yaml in the run directory says exactly what ran."""
    data = cfg.model_dump()
    for d in data["data"]["general"]:
        if d["path"] is None and d["name"] == "builtin":  # data.general: builtin, the set tunewise ships
            d["path"], d["format"] = str(BUILTIN_GENERAL), "messages"
    for key in ("datasets", "val_datasets", "general"):
        for d in data["data"][key]:
            d["path"] = _resolve_path(d["path"], cfg_dir)
    data["data"]["dataset_info"] = _resolve_path(data["data"]["dataset_info"], cfg_dir)
    mp = data["model"]["name_or_path"]
    if ("/" in mp or mp.startswith(".")) and (cfg_dir / mp).exists():
        data["model"]["name_or_path"] = str((cfg_dir / mp).resolve())
    if data["train"]["learning_rate"] is None:
        mf = facts_of(data["method"]["name"]) or FACTS["lora"]  # an unknown method is refused later, naming the choices
        data["train"]["learning_rate"] = mf.lr_for(data["train"]["stage"])
    ds = data["distributed"]["deepspeed"]
    if ds and (cfg_dir / ds).exists():
        data["distributed"]["deepspeed"] = str((cfg_dir / ds).resolve())
    if data["run"]["name"] is None:
        data["run"]["name"] = "run"
    return Config.model_validate(data)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def read_saved_config(p: Path) -> Config:
    """A run's config.yaml (as `tunewise train` wrote it), validated; a RunError naming the file when damaged."""
    from tunewise.errors import RunError

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
        return Config.model_validate(data)
    except ValidationError as e:
        err = explain_validation(e, str(p))
        raise RunError(err.what, where=err.where, fix=fix) from None
