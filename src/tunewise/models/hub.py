"""Hugging Face Hub ids: download once into the standard Hugging Face cache, then always load from it.

Only what loading needs is fetched: safetensors weights, the model config and the tokenizer files; never
pickle `.bin`/`.pt` weights (loading them can run code). A cached snapshot is used without contacting the
network, so every later run (and chat, eval, export of its runs) works offline. Every way the Hub can refuse
becomes a `ModelError` that says why and what to do: offline, gated, missing repo or revision, no safetensors.
"""

from __future__ import annotations

import os
import re
import sys
from fnmatch import fnmatch
from pathlib import Path

from tunewise.errors import ModelError

# Root-level files only (fnmatch's * also matches '/', so no leading wildcard: 'original/*.safetensors' and
# 'onnx/*' duplicates stay on the Hub).
ALLOW_PATTERNS = [
    "config.json", "generation_config.json",
    "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja", "chat_template.json",
]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
TIMEOUT_S = 10.0  # the first call to the Hub; an unreachable network fails in seconds, not minutes


def looks_like_hub_id(name: str) -> bool:
    return bool(REPO_ID.match(name)) and not name.endswith(".gguf") and ".." not in name


def offline_requested() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def fetch_command(repo_id: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"tunewise download {repo_id}{rev}"


def _label(repo_id: str, revision: str | None) -> str:
    return f"'{repo_id}'" + (f" (revision '{revision}')" if revision else "")


def _usable(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of this id and revision when it holds config + safetensors; no network."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS, local_files_only=True))
    except Exception:  # not cached, or cached incompletely (an interrupted download)
        return None
    return folder if _usable(folder) else None


def resolve_hub_model(repo_id: str, revision: str | None = None) -> Path:
    """A local folder for a Hub id: the cached snapshot, or a fresh download into the Hugging Face cache."""
    cached = cached_snapshot(repo_id, revision)
    if cached is not None:
        return cached
    label = _label(repo_id, revision)
    if offline_requested():
        raise ModelError(
            f"model {label} is not in the Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot be downloaded",
            where="model.name_or_path",
            fix=f"unset HF_HUB_OFFLINE to download it, or on a machine with network run `{fetch_command(repo_id, revision)}` "
                "and copy the Hugging Face cache (HF_HUB_CACHE, default ~/.cache/huggingface/hub) here",
        )
    return download(repo_id, revision)


def download(repo_id: str, revision: str | None = None) -> Path:
    """Download the loadable files of a Hub model into the Hugging Face cache (with a progress bar)."""
    from huggingface_hub import HfApi, get_token, snapshot_download

    label = _label(repo_id, revision)
    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=TIMEOUT_S)
        files = {s.rfilename: s.size for s in info.siblings or []}
        wanted = {f: n for f, n in files.items() if any(fnmatch(f, p) for p in ALLOW_PATTERNS)}
        _check_weights(repo_id, revision, files, wanted)
        if info.gated and not get_token():  # fail before the download starts: without a token it cannot succeed
            raise gated_error(repo_id, revision)
        size = sum(n or 0 for n in wanted.values())
        print(f"[tunewise] downloading {label} into the Hugging Face cache: {len(wanted)} files, "
              f"{size / 2**20:,.1f} MiB (safetensors weights, config, tokenizer) ...", file=sys.stderr, flush=True)
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=ALLOW_PATTERNS))
    except ModelError:
        raise
    except Exception as e:
        raise hub_error(e, repo_id, revision) from None
    if not _usable(folder):
        raise ModelError(f"the download of {label} has no config.json or no safetensors weights", where=str(folder),
                         fix="check the repository's files on the Hub; tunewise needs a transformers model folder")
    return folder


def _check_weights(repo_id: str, revision: str | None, files: dict, wanted: dict) -> None:
    label = _label(repo_id, revision)
    if any(f.endswith(".safetensors") for f in wanted):
        if "config.json" not in wanted:
            raise ModelError(f"{label} has no config.json, so it is not a transformers model repository",
                             where="model.name_or_path", fix="pick the repository of the model in transformers format")
        return
    pickles = sorted(f for f in files if f.endswith(PICKLE_SUFFIXES) and "/" not in f)
    if pickles:
        raise ModelError(
            f"{label} has only pickle weights ({', '.join(pickles[:3])}); tunewise never loads them, because "
            "loading a pickle can run code",
            where="model.name_or_path",
            fix="use a repository with .safetensors weights; for many models the Hub's conversion bot opened a pull "
                "request with them: set model.revision: refs/pr/N (N = that pull request's number)",
        )
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    hint = (f"it has GGUF files ({', '.join(ggufs[:2])}): download one (`hf download {repo_id} FILE.gguf`) and set "
            "model.name_or_path to that .gguf file" if ggufs else "pick the repository of the model in transformers format")
    raise ModelError(f"{label} has no safetensors weights at its top level", where="model.name_or_path", fix=hint)


def gated_error(repo_id: str, revision: str | None) -> ModelError:
    page = f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{repo_id}"
    return ModelError(
        f"{_label(repo_id, revision)} is a gated model: its licence has to be accepted before it can be downloaded",
        where="model.name_or_path",
        fix=f"open {page}, accept the licence with your account, log in here with a token of that account "
            "(`hf auth login`, or set HF_TOKEN), then run again")


def hub_error(e: Exception, repo_id: str, revision: str | None) -> ModelError:
    """A Hub or network failure as a ModelError that names the cause and the fix."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    if isinstance(e, LocalEntryNotFoundError) and isinstance(e.__cause__, HfHubHTTPError):
        e = e.__cause__  # a file's HEAD call was refused: the refusal is the story, not the missing cache entry
    label = _label(repo_id, revision)
    where = "model.name_or_path"
    login = "log in with `hf auth login` (or set HF_TOKEN)"
    if isinstance(e, GatedRepoError):  # a subclass of RepositoryNotFoundError: test it first
        return gated_error(repo_id, revision)
    if isinstance(e, RevisionNotFoundError):
        return ModelError(f"{repo_id} has no revision '{revision}'", where="model.revision",
                          fix="use a branch, tag or commit that exists on the model's page (or leave model.revision unset)")
    if isinstance(e, RepositoryNotFoundError):
        return ModelError(
            f"there is no model '{repo_id}' on the Hugging Face Hub (or it is private and no valid token was sent)",
            where=where, fix=(f"no folder '{repo_id}' exists here either: check the path" if Path(repo_id.split("/")[0]).is_dir()
                              else "check the spelling, ORG/NAME exactly as on the model's page (e.g. Qwen/Qwen2.5-0.5B-Instruct)")
            + f"; for a private model {login}")
    if isinstance(e, HfHubHTTPError) and getattr(e.response, "status_code", None) in (401, 403):
        return ModelError(f"the Hub refused access to {label} (HTTP {e.response.status_code})", where=where,
                          fix=f"{login} with a token that can read this model; for a gated model accept its licence first")
    if isinstance(e, (OfflineModeIsEnabled, LocalEntryNotFoundError)) or _is_network_error(e):
        return ModelError(
            f"cannot reach the Hugging Face Hub to download {label} ({e.__class__.__name__}), and it is not in the cache",
            where=where, fix=f"connect to the network and run again, or on a machine with network run "
                             f"`{fetch_command(repo_id, revision)}` and copy the Hugging Face cache (HF_HUB_CACHE) here")
    return ModelError(f"downloading {label} failed: {e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                      where=where, fix="run again; if it keeps failing, check the network and the model's page on the Hub")


def _is_network_error(e: Exception) -> bool:
    import socket

    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(e, HfHubHTTPError):  # the Hub answered: not a network problem
        return False
    try:
        import httpx2  # huggingface_hub's HTTP client

        if isinstance(e, httpx2.TransportError):
            return True
    except ImportError:
        pass
    return isinstance(e, (ConnectionError, TimeoutError, socket.gaierror))
