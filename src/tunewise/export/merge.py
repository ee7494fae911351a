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
from tunewise.runs import read_run_config, read_template, require_run

DTYPES = ("float32", "bfloat16", "float16")
_VIRTUAL_TOKENS = {"prefix", "prompt", "p_tuning", "prompt_tuning", "prefix_tuning"}


def _note(msg: str) -> None:
    print(f"[tunewise] {msg}", file=sys.stderr, flush=True)


def _not_mergeable(method: str, run: Path) -> RunError:
    return RunError(
        f"method '{method}' learns virtual tokens that live outside the weights; they cannot be merged, "
        "and a GGUF (llama.cpp, Ollama) cannot hold virtual tokens",
        where=str(run),
        fix="retrain with method.name: lora (or full) to export; chat and eval still work with this run",
    )


def _method_info(name: str):
    """The method registry's entry, when the method is registered (None otherwise)."""
    try:
        from tunewise import methods

        return methods.get(name)
    except Exception:
        return None


def result_dir(run: Path, checkpoint: str | Path | None = None) -> Path:
    result = Path(checkpoint) if checkpoint else (run / "model" if (run / "model").exists() else run / "adapter")
    if not result.exists():
        raise RunError("the run has no trained result to export", where=str(run), fix="finish `tunewise train` first")
    return result


def load_merged(run: Path, *, checkpoint: str | Path | None = None):
    """(model in float32 with the result merged in, tokenizer, template, config)."""
    from tunewise.models.load import load_model, load_tokenizer, resolve_model

    cfg = read_run_config(run)
    template = read_template(run)
    info = _method_info(cfg.method.name)
    if cfg.method.name in _VIRTUAL_TOKENS or (info is not None and not getattr(info, "mergeable", True)):
        raise _not_mergeable(cfg.method.name, run)
    result = result_dir(run, checkpoint)
    resolved = resolve_model(cfg.model.name_or_path)
    tokenizer = load_tokenizer(resolved.path, cfg.model.trust_remote_code)
    trust = cfg.model.trust_remote_code
    if (result / "adapter_config.json").exists():
        if cfg.method.name == "qlora":
            _note("QLoRA trained against a 4-bit base: merging into the de-quantised (full-precision) base, "
                  "so the merged weights are quantised at most once, by the export you choose")
        base = load_model(resolved.path, dtype="float32", trust_remote_code=trust)
        custom = getattr(info, "merge", None) if info is not None else None
        if callable(custom):  # a method with its own (non-PEFT) adapter format merges itself
            model = custom(base, result)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, result)
            if getattr(model.peft_config[model.active_adapter], "is_prompt_learning", False):
                raise _not_mergeable(cfg.method.name, run)
            model = model.merge_and_unload()
    elif (result / "config.json").exists():
        model = load_model(result, dtype="float32", trust_remote_code=trust)
    else:
        raise RunError(f"no adapter_config.json or config.json in {result.name}/, so there is nothing tunewise can merge",
                       where=str(result), fix="retrain, or pass --checkpoint with a complete checkpoint folder")
    return model, tokenizer, template, cfg


def merge_run(run: str | Path, out_dir: str | Path | None = None, *, dtype: str = "float32",
              checkpoint: str | Path | None = None) -> Path:
    import torch

    from tunewise.stamp import versions

    run = require_run(run)
    if dtype not in DTYPES:
        raise RunError(f"unknown dtype '{dtype}'", where="--dtype", fix=f"use one of: {', '.join(DTYPES)}")
    out_dir = Path(out_dir) if out_dir else run / "export" / "merged"
    model, tokenizer, template, cfg = load_merged(run, checkpoint=checkpoint)
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    tokenizer.chat_template = template.chat_template
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
        (tmp / "chat_template.jinja").write_text(template.chat_template, encoding="utf-8")
        write_json(tmp / "tunewise_export.json", {
            "run": str(run.resolve()), "base_model": cfg.model.name_or_path, "method": cfg.method.name,
            "dtype": dtype, "template": template.name, "stop_strings": template.stop_strings,
            "stop_token_ids": template.stop_token_ids, "versions": versions(),
        })
    return out_dir
