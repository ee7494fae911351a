"""Merge a run's result into a standalone Hugging Face model folder that carries its own template.

The folder holds safetensors weights, the tokenizer with the *training* chat template embedded, and a
generation config whose EOS ids include every end-of-turn token, so any runtime that reads it stops
where the trained model stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tunewise.errors import RunError
from tunewise.fileio import atomic_path
from tunewise.runs import read_run_config, read_template, require_run

_DTYPES = {"float32", "bfloat16", "float16"}


def merge_run(run: str | Path, out_dir: str | Path | None = None, *, dtype: str = "float32",
              checkpoint: str | Path | None = None) -> Path:
    import torch

    from tunewise.models.load import load_model, load_tokenizer, resolve_model

    run = require_run(run)
    if dtype not in _DTYPES:
        raise RunError(f"unknown dtype '{dtype}'", where="--dtype", fix=f"use one of: {', '.join(sorted(_DTYPES))}")
    cfg = read_run_config(run)
    template = read_template(run)
    out_dir = Path(out_dir) if out_dir else run / "export" / "merged"
    resolved = resolve_model(cfg.model.name_or_path)
    tokenizer = load_tokenizer(resolved.path, cfg.model.trust_remote_code)
    result = Path(checkpoint) if checkpoint else (run / "model" if (run / "model").exists() else run / "adapter")
    if not result.exists():
        raise RunError("the run has no trained result to export", where=str(run), fix="finish `tunewise train` first")
    if (result / "adapter_config.json").exists():
        if cfg.method.name == "qlora":
            print("[tunewise] note: QLoRA trained against a 4-bit base; merging into the de-quantised "
                  "(full-precision) base so the merged weights are not re-quantised twice", file=sys.stderr)
        from peft import PeftModel

        base = load_model(resolved.path, dtype="float32", trust_remote_code=cfg.model.trust_remote_code)
        model = PeftModel.from_pretrained(base, result)
        if getattr(model.peft_config[model.active_adapter], "is_prompt_learning", False):
            raise RunError(f"method '{cfg.method.name}' learns virtual tokens that cannot be merged into weights",
                           where=str(run), fix="export works for lora, qlora, full and freeze runs")
        model = model.merge_and_unload()
    else:
        model = load_model(result, dtype="float32", trust_remote_code=cfg.model.trust_remote_code)
    model = model.to(getattr(torch, dtype))
    tokenizer.chat_template = template.chat_template
    stop_ids = list(dict.fromkeys(list(template.stop_token_ids) + [tokenizer.eos_token_id]))
    model.generation_config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    if tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = cfg.generation.temperature > 0
    if cfg.generation.temperature > 0:
        model.generation_config.temperature = cfg.generation.temperature
        model.generation_config.top_p = cfg.generation.top_p
        model.generation_config.top_k = cfg.generation.top_k
    model.generation_config.repetition_penalty = cfg.generation.repetition_penalty
    with atomic_path(out_dir, is_dir=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "chat_template.jinja").write_text(template.chat_template, encoding="utf-8")
    return out_dir
