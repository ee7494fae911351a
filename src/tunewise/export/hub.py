"""Push to the Hugging Face Hub: the model (merged, or the run's adapter), GGUF + Modelfile when exported, and a
model card, as one commit.

`preflight` runs before any export work and writes nothing: a missing token, HF_HUB_OFFLINE, an unreachable Hub
or a rejected token fail in seconds and leave the run directory as it was. Only this command and a Hub id that
is not cached yet (models/hub.py) ever reach the network.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tunewise.errors import RunError
from tunewise.runs import RunDir

NOTHING_SENT = "nothing was exported or uploaded"


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def preflight(repo_id: str, timeout: float = 5.0) -> str:
    """Repository id, token, network and the token's validity, checked before anything is done. Returns the token."""
    from huggingface_hub import HfApi, get_token

    from tunewise.models.hub import looks_like_hub_id, offline_requested

    if not looks_like_hub_id(repo_id):
        raise RunError(f"'{repo_id}' is not a Hub repository id", where="--push", fix="use NAME/REPO, e.g. alice/my-model")
    token = get_token()
    if not token:
        raise RunError(f"no Hugging Face token, so {NOTHING_SENT}", where="--push",
                       fix="log in with `hf auth login` (or set HF_TOKEN to a token with write access), then run the export again")
    if offline_requested():
        raise RunError(f"HF_HUB_OFFLINE is set in your environment, so {NOTHING_SENT}", where="--push",
                       fix="unset HF_HUB_OFFLINE (tunewise never sets it itself) and run the export again")
    url = urlsplit(_endpoint())
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
    except OSError as e:
        raise RunError(f"cannot reach {url.hostname} ({e.__class__.__name__}), so {NOTHING_SENT}", where="--push",
                       fix="run the export with --push on a machine with network access") from None
    try:
        user = HfApi(token=token).whoami()
    except Exception as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        what = "the Hub rejected the token" if status == 401 else f"checking the token failed ({e.__class__.__name__})"
        raise RunError(f"{what}, so {NOTHING_SENT}", where="--push",
                       fix="log in again with `hf auth login` (or set HF_TOKEN to a valid token with write access)") from None
    role = ((user.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise RunError(f"the token is read-only, so {NOTHING_SENT}", where="--push",
                       fix="create a token with write access (huggingface.co/settings/tokens) and log in with it")
    return token


# ------------------------------------------------------------------------------------------------------------
def hub_base(cfg) -> str | None:
    """The base model's Hub id when model.name_or_path is one (not a local path or an alias)."""
    from tunewise.models.hub import looks_like_hub_id

    base = cfg.model.name_or_path
    return base if looks_like_hub_id(base) and not Path(base).exists() else None


def files_to_push(run: Path, result: dict, cfg) -> dict[str, Path | bytes]:
    """path in the repository -> local file (or bytes): exactly what one push sends, card excluded."""
    files: dict[str, Path | bytes] = {}
    if result.get("merged"):
        src = Path(result["merged"])
    else:  # the run's result as trained: a peft adapter folder, or full weights
        from tunewise.methods import result_dir

        src = result_dir(run)
        if src is None:
            raise RunError("the run has no trained result to push", where=str(run), fix="finish `tunewise train` first")
    for p in sorted(src.rglob("*")):
        if p.is_file():
            files[p.relative_to(src).as_posix()] = p
    if "adapter_config.json" in files and not result.get("merged"):
        files["adapter_config.json"] = _adapter_config_for_hub(files["adapter_config.json"], cfg)
    for key, name in (("gguf", "model.gguf"), ("modelfile", "Modelfile"), ("verify_json", "verify.json")):
        if result.get(key):
            files[name] = Path(result[key])
    if RunDir(run).curves_png.exists():
        files["curves.png"] = RunDir(run).curves_png
    return files


def _adapter_config_for_hub(path: Path, cfg) -> bytes:
    """The adapter's config names its base by a local path; on the Hub it must name the Hub id (when there is one)."""
    conf = json.loads(path.read_text(encoding="utf-8"))
    base = hub_base(cfg)
    if base:
        conf["base_model_name_or_path"] = base
        if cfg.model.revision:
            conf["revision"] = cfg.model.revision
    return (json.dumps(conf, indent=2, ensure_ascii=False) + "\n").encode()


def push(repo_id: str, token: str, files: dict[str, Path | bytes], card: str, *, private: bool = False, api=None) -> str:
    """One commit with every file and the card (README.md). `api`: an HfApi (a stand-in in tests)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = api or HfApi(token=token)
    ops = [CommitOperationAdd(path_in_repo=k, path_or_fileobj=v if isinstance(v, bytes) else str(v))
           for k, v in sorted(files.items())]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    try:
        url = api.create_repo(repo_id, private=private or None, exist_ok=True)  # None: the Hub's default, public
        api.create_commit(repo_id, operations=ops, commit_message="tunewise export",
                          commit_description=f"{len(ops)} files: " + ", ".join(op.path_in_repo for op in ops))
    except Exception as e:
        raise RunError(f"the upload to {repo_id} failed: {e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                       where="--push", fix="check the token has write access to that namespace (`hf auth whoami`) and retry") from None
    return str(url)


# ------------------------------------------------------------------------------------------------------------
def _data_summary(run) -> list[str]:
    p = RunDir(run).stats
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


def _usage(repo_id: str, kind: str, base: str | None, files) -> list[str]:
    if kind == "adapter":
        out = ["```python", "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
               f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")',
               f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```"]
        if not base:
            out.append("The adapter's base model is not a Hub id, so `adapter_config.json` names it by the local path "
                       "it was trained from: load that base yourself and apply the adapter with `PeftModel.from_pretrained`.")
    else:
        out = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
               f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
               f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```"]
    if "model.gguf" in files:
        out += ["", "`model.gguf` runs in llama.cpp" + (" and Ollama: download this repository, then "
                "`ollama create NAME -f Modelfile`." if "Modelfile" in files else ".")]
    return out


def model_card(run: Path, repo_id: str | None = None, *, files=(), kind: str = "merged", verdict: dict | None = None) -> str:
    """The README.md pushed with the model: base model, method, data, hyperparameters, curves, eval, verification."""

    run = RunDir.open(run)
    cfg, template = run.config, run.template
    raw = cfg.model_dump(mode="json")  # config.yaml holds exactly this dump
    hyper = {"method": raw["method"], "train": raw["train"],
             "data": {k: v for k, v in raw["data"].items() if k in ("max_length", "val_size", "train_on_prompt")}}
    base = hub_base(cfg)
    shown = cfg.model.name_or_path + (f" (revision {cfg.model.revision})" if cfg.model.revision else "")
    title = repo_id or run.name
    tags = ["tunewise", "fine-tuned", cfg.method.name] + (["gguf"] if "model.gguf" in files else [])
    out = [
        "---",
        f"library_name: {'peft' if kind == 'adapter' else 'transformers'}",
        "pipeline_tag: text-generation",
        "tags: [" + ", ".join(tags) + "]",
        f"base_model: {base}" if base else f"# base model: {shown}",
        "---",
        f"# {title}",
        "",
        f"Fine-tuned with tunewise from **{shown}** using the **{cfg.method.name}** method. This repository holds "
        + ("the trained adapter (apply it to the base model)." if kind == "adapter" else
           "the full weights, the trained result merged into the base." if kind == "merged" else "the full trained weights."),
        "",
        "## Use it",
        *_usage(title, kind, base, files),
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
    if run.curves_png.exists():
        out += ["", "## Learning curves", "![learning curves](curves.png)"]
    report = run.eval / "report.md"
    if report.exists():
        out += ["", "## Evaluation (before / after fine-tuning)", report.read_text(encoding="utf-8").rstrip()]
    if verdict:
        out += ["", "## GGUF verification", f"**{verdict.get('status')}** ({verdict.get('gguf_type')}): greedy answers of "
                "the GGUF compared with the trained model on held-out prompts (`verify.json`)."]
    if files:
        out += ["", "## Files", *(f"- `{f}`" for f in sorted([*files, "README.md"]))]
    return "\n".join(out) + "\n"
