"""Merge a run's result into a standalone Hugging Face model folder that carries its own template.

The folder holds safetensors weights, the tokenizer with the *training* chat template embedded, and a
generation config whose EOS ids include every end-of-turn token, so any runtime that reads it stops
where the trained model stops. Full-weight runs (model/) are copied and cast; adapter runs are merged
into the base (a QLoRA base is loaded de-quantised, in full precision, first).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tunewise.errors import RunError
from tunewise.fileio import atomic_path, write_json
from tunewise.runs import RunDir

DTYPES = ("float32", "bfloat16", "float16")


def _note(msg: str) -> None:
    print(f"[tunewise] {msg}", file=sys.stderr, flush=True)


def check_mergeable(run) -> None:
    """Refuse, with the reason, a run whose method's result cannot be folded into the base weights."""
    from tunewise import methods

    rd = RunDir.open(run)
    method = rd.config.method.name
    if methods.get(method).mergeable:
        return
    why = ("its bottleneck adapters put a nonlinearity between two projections, which cannot be folded into the "
           "base weights" if method == "adapter" else
           "it learns virtual tokens that live outside the weights, and a GGUF (llama.cpp, Ollama) cannot hold them")
    raise RunError(f"method '{method}' cannot be merged into a standalone model: {why}", where=str(rd.path),
                   fix="retrain with method.name: lora (or full) to export; chat and eval still work with this run")


def load_merged(run, *, checkpoint: str | Path | None = None, model=None):
    """(model in float32 with the result merged in, tokenizer, template, config).

    model: the run's trained model as `methods.load_trained(run, dtype="float32")` returns it, already loaded
    (export hands in the one it used for verification); it is merged in place."""
    from tunewise import methods

    rd = RunDir.open(run)
    cfg = rd.config
    check_mergeable(rd)
    if checkpoint is not None and not Path(checkpoint).exists():
        raise RunError("no such checkpoint", where=str(checkpoint), fix="pick one of RUN/checkpoints/checkpoint-N")
    if cfg.method.name == "qlora":
        _note("QLoRA trained against a 4-bit base: merging into the de-quantised (full-precision) base, "
              "so the merged weights are quantised at most once, by the export you choose")
    if model is None:
        # The same loader as chat and eval: whatever the method saved, full precision for merging.
        model = methods.load_trained(rd, checkpoint=checkpoint, dtype="float32")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model, rd.tokenizer, rd.template, cfg


def merge_run(run, out_dir: str | Path | None = None, *, dtype: str = "float32",
              checkpoint: str | Path | None = None, model=None) -> Path:
    """Write the merged model folder (see the module docstring); `model`: as for `load_merged`."""
    import torch

    from tunewise.stamp import versions

    rd = RunDir.open(run)
    run = rd.path
    if dtype not in DTYPES:
        raise RunError(f"unknown dtype '{dtype}'", where="--dtype", fix=f"use one of: {', '.join(DTYPES)}")
    out_dir = Path(out_dir) if out_dir else rd.merged
    model, tokenizer, template, cfg = load_merged(rd, checkpoint=checkpoint, model=model)
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    tokenizer.chat_template = template.standalone_jinja()
    stop_ids = list(dict.fromkeys(list(template.stop_token_ids) + [tokenizer.eos_token_id]))
    gc = model.generation_config
    gc.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    if tokenizer.pad_token_id is not None:
        gc.pad_token_id = tokenizer.pad_token_id
    g = cfg.generation
    gc.do_sample = g.temperature > 0
    if gc.do_sample:
        gc.temperature, gc.top_p, gc.top_k = g.temperature, g.top_p, g.top_k
    else:
        gc.temperature = gc.top_p = gc.top_k = None
    gc.repetition_penalty = g.repetition_penalty
    gc.max_new_tokens = g.max_new_tokens
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "chat_template.jinja").write_text(template.standalone_jinja(), encoding="utf-8")
        write_json(tmp / "tunewise_export.json", {
            "run": str(run.resolve()), "base_model": cfg.model.name_or_path, "method": cfg.method.name,
            "dtype": dtype, "template": template.name, "stop_strings": template.stop_strings,
            "stop_token_ids": template.stop_token_ids, "versions": versions(),
        })
    return out_dir
