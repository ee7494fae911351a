"""Resolve `model.name_or_path` and load model + tokenizer (safetensors only, no remote code by default)."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunewise.errors import ModelError
from tunewise.models.cache import home

if TYPE_CHECKING:
    from tunewise.config.schema import Config


@dataclass
class ResolvedModel:
    path: Path                 # a local HF model folder (safetensors + tokenizer)
    alias: str                 # what the user wrote
    previous_run: Path | None = None  # set when name_or_path is a tunewise run directory


def is_run_dir(p: Path) -> bool:
    return (p / "config.yaml").exists() and ((p / "adapter").exists() or (p / "model").exists())


def resolve_model(name_or_path: str, revision: str | None = None) -> ResolvedModel:
    """A local model folder for `model.name_or_path`; `revision` applies to Hub ids only."""
    from tunewise.models import tiny
    from tunewise.models.default import BUNDLED, dequantize_gguf, ensure_bundled_model

    if name_or_path in BUNDLED:
        return ResolvedModel(ensure_bundled_model(name_or_path), name_or_path)
    if name_or_path in tiny.ARCHS:
        out = home() / "models" / name_or_path
        if not (out / "model.safetensors").exists():
            tiny.build_tiny(name_or_path, out)
        return ResolvedModel(out, name_or_path)
    p = Path(name_or_path).expanduser()
    if p.is_dir() and is_run_dir(p):
        from tunewise.config.load import read_saved_config

        prev = read_saved_config(p / "config.yaml")
        base = resolve_model(prev.model.name_or_path, prev.model.revision)
        if (p / "model").exists():  # full-weight result: continue from it
            return ResolvedModel((p / "model").resolve(), name_or_path, previous_run=p.resolve())
        return ResolvedModel(base.path, name_or_path, previous_run=p.resolve())
    if p.is_file() and p.suffix.lower() == ".gguf":
        key = hashlib.sha256(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode()).hexdigest()[:16]
        out = home() / "models" / f"gguf-{p.stem}-{key}"
        if not (out / "model.safetensors").exists():
            dequantize_gguf(p, out, note=f"Dequantizing {p.name} once into {out} ...")
        return ResolvedModel(out, name_or_path)
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelError("folder has no config.json, so it is not a model folder", where=str(p),
                             fix="point model.name_or_path at a Hugging Face model folder, a .gguf file or a run directory")
        return ResolvedModel(p.resolve(), name_or_path)
    from tunewise.models import hub

    if hub.looks_like_hub_id(name_or_path):
        return ResolvedModel(hub.resolve_hub_model(name_or_path, revision), name_or_path)
    raise ModelError(
        f"model '{name_or_path}' is not a local folder, a .gguf file, a run directory, a known alias or a Hub id (ORG/NAME)",
        where="model.name_or_path",
        fix=f"use an alias ({', '.join([*BUNDLED, *tiny.ARCHS])}), a Hub id such as Qwen/Qwen2.5-0.5B-Instruct, "
        "or the path of an existing model folder, .gguf file or run directory",
    )


@contextmanager
def remote_code_refused(path):
    """transformers' refusal to run a model folder's own code, as a ModelError that says how to allow it."""
    try:
        yield
    except ValueError as e:
        if "trust_remote_code" not in str(e):
            raise
        raise ModelError(
            "this model ships its own Python code (config.json `auto_map`) and needs to run it; tunewise runs a "
            "model's code only when told to, each time", where=str(path),
            fix="if you trust this code: set model.trust_remote_code: true in your config (train), or pass "
            "--trust-remote-code to `tunewise chat/eval/export` of a run; otherwise use a model transformers supports",
        ) from None


def load_tokenizer(path: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    with remote_code_refused(path):
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        # Padding positions never carry labels, so reusing EOS as pad is safe for training.
        tok.pad_token = tok.eos_token
    return tok


def torch_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


_SAFETENSORS_FLOATS = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


def stored_dtype(path: Path) -> str | None:
    """The dtype the checkpoint in `path` stores most of its floating-point weight bytes in ("bfloat16", "float16",
    "float32"), read from the safetensors headers only (no weights are read); None when there is no safetensors
    checkpoint or a header cannot be read (the caller then assumes nothing)."""
    import json
    import struct

    path = Path(path)
    index = path / "model.safetensors.index.json"
    try:
        if index.exists():
            files = sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()})
        else:
            files = [path / "model.safetensors"]
        by_dtype: dict[str, int] = {}
        for f in files:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
            for name, t in header.items():
                if name == "__metadata__" or t.get("dtype") not in _SAFETENSORS_FLOATS:
                    continue
                a, b = t["data_offsets"]
                by_dtype[t["dtype"]] = by_dtype.get(t["dtype"], 0) + (b - a)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
    return _SAFETENSORS_FLOATS[max(by_dtype, key=by_dtype.get)] if by_dtype else None


PAGEOUT_EVERY = 0.3  # seconds between passes of checkpoint_pages_released


@contextmanager
def checkpoint_pages_released(every: float = PAGEOUT_EVERY):
    """While the block runs, a thread pages this process's memory-mapped .safetensors files out of its resident set
    every `every` seconds (madvise MADV_PAGEOUT, which never loses a page's contents).

    For a load that converts every tensor it reads (a quantised base; a float32 load of a bf16 checkpoint): transformers
    maps the file, and each page read stays resident until the load ends, so the whole file adds to the load's peak
    beside the converted copy. Measured (bench/SWEEP.md, session 17), Qwen2.5-3B qlora on a CPU: 10,202 MB peak while
    loading, 4,152 MB with this, in the same time (107 s and 104 s). A page read again later comes back from the page
    cache or the file. Where the call is refused (not Linux, a kernel before 5.4) nothing changes."""
    import threading

    from tunewise.compat import file_mappings, madvise_pageout

    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every):
            for a, b in file_mappings(".safetensors"):
                if not madvise_pageout(a, b - a):
                    return  # refused here: stop trying

    t = threading.Thread(target=run, name="tunewise-pageout", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


def converts_on_load(path: Path, dtype: str, kwargs: dict) -> bool:
    """Whether loading `path` makes a new copy of every tensor it reads: quantised, or at a dtype other than the one the
    checkpoint stores (a load at the stored dtype may keep tensors on the file's pages, which must then stay)."""
    if kwargs.get("quantization_config") is not None:
        return True
    stored = stored_dtype(path)
    return stored is not None and str(torch_dtype(dtype)).removeprefix("torch.") != stored


def load_model(path: Path, *, dtype: str = "auto", trust_remote_code: bool = False, attn: str = "sdpa", **kwargs):
    from contextlib import nullcontext

    from transformers import AutoModelForCausalLM

    try:
        with remote_code_refused(path), (checkpoint_pages_released() if converts_on_load(path, dtype, kwargs)
                                         else nullcontext()):
            return AutoModelForCausalLM.from_pretrained(
                path, dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code,
                use_safetensors=True, attn_implementation=attn, **kwargs,
            )
    except OSError as e:
        if "safetensors" in str(e).lower() or "no file named" in str(e).lower():
            raise ModelError(
                "no safetensors weights in this model folder (tunewise never loads pickle .bin files)",
                where=str(path),
                fix="convert the weights to safetensors with the transformers save_pretrained(safe_serialization=True)",
            ) from None
        raise


def model_type_of(cfg: Config, path) -> str:
    from transformers import AutoConfig

    with remote_code_refused(path):
        return AutoConfig.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code).model_type


def tokenizer_and_template(cfg: Config):
    """Resolve the model, load its tokenizer and fix the chat template for this run."""
    from tunewise.templates import choose_template

    resolved = resolve_model(cfg.model.name_or_path, cfg.model.revision)
    tokenizer = load_tokenizer(resolved.path, cfg.model.trust_remote_code)
    return resolved, tokenizer, choose_template(cfg.template.name, tokenizer, model_type_of(cfg, resolved.path), cfg.template.tools)
