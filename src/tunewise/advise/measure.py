"""Measure the real peak memory of a few training steps, in a fresh process, to check the estimate.

`measure(config_path, steps)` runs `python -m tunewise.advise.measure CONFIG --steps N` and returns
its JSON line: RSS after imports (the per-process overhead), after loading the model, and the peak
(ru_maxrss) once the steps are done, before anything is saved. The child assembles training from
the same public functions `tunewise train` uses (tokenizer_and_template, prepare, encode_for_training,
load_model, the method's apply, training_arguments, TunewiseTrainer), without writing a run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tunewise.cpu import use_threads


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _maxrss() -> int:
    """Peak RSS of this process's own memory. Linux keeps ru_maxrss across exec, so a child started by a large
    parent would report the parent's peak; VmHWM belongs to the address space exec created."""
    from tunewise.fileio import proc_status

    if (hwm := proc_status("VmHWM")) is not None:
        return int(hwm) * 1024  # kB
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def child(config_path: str, steps: int) -> dict:
    import tempfile

    import peft  # noqa: F401  (imported before the baseline, as in a real training process)
    import torch
    import transformers  # noqa: F401

    from tunewise import methods
    from tunewise.config import load_config
    from tunewise.data.prepare import prepare
    from tunewise.models.load import tokenizer_and_template
    from tunewise.train.assemble import build_trainer, fit, load_for_training, ready_for_training
    from tunewise.train.data import encode_for_training

    cfg = load_config(config_path, [f"train.max_steps={steps}", "train.save_steps=100000", "train.logging_steps=100000"])
    use_threads(cfg.train.num_threads)
    base = _rss()
    resolved, tok, tpl = tokenizer_and_template(cfg)
    prepared = prepare(cfg, None)
    train_ds, _val, _ = encode_for_training(cfg, tok, tpl, prepared)
    # the same assembly as `tunewise train`: dropout, method, L1/L2, packing, denormal flushing
    model = load_for_training(cfg, resolved, tokenizer=tok, template=tpl)
    pad_id = tok.pad_token_id
    del tok
    ready_for_training(cfg, model)  # as `tunewise train` does: tokenizer gone, frozen weights narrowed, checkpointing
    method_note = cfg.method.name
    after_load, peak_load = _rss(), _maxrss()
    lengths = sorted(train_ds.lengths)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, plan = build_trainer(cfg, model, train_ds, None, out=Path(tmp), pad_id=pad_id, report=False)
        fit(cfg, trainer, plan["total"])
        peak = _maxrss()
    trainable, total = methods.count_parameters(model)
    return {"method": method_note, "steps": steps, "base_rss": base, "after_load_rss": after_load, "peak_load": peak_load,
            "peak": peak, "peak_delta": peak - base, "trainable_params": trainable, "total_params": total,
            "n_train": len(train_ds), "longest": lengths[-1] if lengths else 0, "threads": torch.get_num_threads()}


def measure(config_path: str | os.PathLike, steps: int = 3, timeout: int = 900, env: dict | None = None) -> dict:
    """Run `steps` training steps of `config_path` in a fresh process and return its memory readings."""
    src = str(Path(__file__).resolve().parents[2])
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = src + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("HF_HUB_OFFLINE", "1")
    e.setdefault("TOKENIZERS_PARALLELISM", "false")
    e.setdefault("TRANSFORMERS_VERBOSITY", "error")
    p = subprocess.run([sys.executable, "-m", "tunewise.advise.measure", str(config_path), "--steps", str(steps)],
                       capture_output=True, text=True, env=e, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"measurement process failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(child(a.config, a.steps)))
