"""Model card and push to the Hugging Face Hub.

The card is written first (export/README.md); the push checks token and network before anything
else touches the Hub, with a short timeout and no retries, so an offline machine fails in seconds.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import yaml

from tunewise.errors import RunError
from tunewise.fileio import write_text

HUB_HOST = "huggingface.co"


def _data_summary(run: Path) -> list[str]:
    p = run / "data" / "stats.json"
    if not p.exists():
        return ["(no data/stats.json in the run)"]
    stats = json.loads(p.read_text(encoding="utf-8"))
    lines = []
    for key, val in stats.items():
        if isinstance(val, (int, float, str)):
            lines.append(f"- {key}: {val}")
        elif isinstance(val, dict) and key in ("records", "splits", "counts"):
            lines += [f"- {key} {k}: {v}" for k, v in val.items() if isinstance(v, (int, float, str))]
        elif isinstance(val, dict) and key == "tokens":
            for split, t in val.items():
                if isinstance(t, dict):
                    lines.append(f"- {split}: {t.get('examples', '?')} examples, {t.get('total_tokens', '?')} tokens "
                                 f"({t.get('supervised_tokens', '?')} supervised)")
    return lines or ["(see data/stats.json)"]


def model_card(run: Path, repo_id: str | None = None) -> str:
    from tunewise.runs import read_run_config, read_template

    cfg = read_run_config(run)
    template = read_template(run)
    raw = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    hyper = {"method": raw.get("method", {}), "train": raw.get("train", {}),
             "data": {k: v for k, v in (raw.get("data") or {}).items() if k in ("max_length", "val_size", "train_on_prompt")}}
    base = cfg.model.name_or_path
    title = repo_id or run.name
    out = [
        "---",
        "library_name: transformers",
        "tags: [tunewise, fine-tuned, " + cfg.method.name + "]",
        f"base_model: {base}" if "/" in base and not Path(base).exists() else f"# base model: {base}",
        "---",
        f"# {title}",
        "",
        f"Fine-tuned with tunewise from **{base}** using the **{cfg.method.name}** method.",
        "",
        "## Chat template",
        f"Trained with the `{template.name}` template; generation stops on: "
        + ", ".join(f"`{s}`" for s in template.stop_strings) + ". The template is embedded in the tokenizer "
        "(`chat_template.jinja`), so `apply_chat_template` builds the prompts the model was trained on.",
        "",
        "## Data",
        *_data_summary(run),
        "",
        "## Hyperparameters",
        "```yaml",
        yaml.safe_dump(hyper, allow_unicode=True, sort_keys=False).rstrip(),
        "```",
    ]
    if (run / "curves.png").exists():
        out += ["", "## Learning curves", "![learning curves](curves.png)"]
    report = run / "eval" / "report.md"
    if report.exists():
        out += ["", "## Evaluation (before / after fine-tuning)", report.read_text(encoding="utf-8").rstrip()]
    verify = run / "export" / "verify.json"
    if verify.exists():
        v = json.loads(verify.read_text(encoding="utf-8"))
        out += ["", "## GGUF verification", f"{v.get('status')} ({v.get('gguf_type')}): greedy answers of the GGUF "
                "compared with the trained model on held-out prompts."]
    return "\n".join(out) + "\n"


def write_card(run: Path, export_dir: Path, repo_id: str | None = None) -> Path:
    return write_text(export_dir / "README.md", model_card(run, repo_id))


def preflight(repo_id: str, timeout: float = 3.0) -> str:
    """Token and network, checked before anything is uploaded. Returns the token."""
    from huggingface_hub import get_token

    if "/" not in repo_id:
        raise RunError(f"'{repo_id}' is not a Hub repository id", where="--push", fix="use NAME/REPO, e.g. alice/my-model")
    token = get_token()
    if not token:
        raise RunError("no Hugging Face token, so nothing was uploaded (the model card is in export/README.md)",
                       where="--push", fix="run `huggingface-cli login` or set HF_TOKEN, then run the export again")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise RunError("HF_HUB_OFFLINE is set, so nothing was uploaded (the model card is in export/README.md)",
                       where="--push", fix="unset HF_HUB_OFFLINE on a machine with network and run the export again")
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
    except OSError as e:
        raise RunError(f"cannot reach {HUB_HOST} ({e.__class__.__name__}), so nothing was uploaded "
                       "(the model card is in export/README.md)", where="--push",
                       fix="run the export with --push on a machine with network access") from None
    return token


def push(export_dir: Path, run: Path, repo_id: str, token: str, *, private: bool = False) -> str:
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        merged = export_dir / "merged"
        api.upload_folder(folder_path=str(merged), repo_id=repo_id, commit_message="tunewise export: merged model")
        extra = [p for p in [export_dir / "README.md", run / "curves.png", export_dir / "Modelfile",
                             export_dir / "model.gguf", export_dir / "verify.json"] if p.exists()]
        for p in extra:
            api.upload_file(path_or_fileobj=str(p), path_in_repo=p.name, repo_id=repo_id,
                            commit_message=f"tunewise export: {p.name}")
    except Exception as e:
        raise RunError(f"the upload to {repo_id} failed: {e}", where="--push",
                       fix="check the token has write access (huggingface-cli whoami) and retry") from None
    return f"https://huggingface.co/{repo_id}"
