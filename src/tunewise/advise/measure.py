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
from tunewise.fileio import peak_rss_bytes


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def child(config_path: str, steps: int) -> dict:
    import tempfile

    import peft  # noqa: F401  (imported before the baseline, as in a real training process)
    import torch
    import transformers  # noqa: F401

    from tunewise import methods
    from tunewise.config import load_config
    from tunewise.train.assemble import build_trainer, fit, load_prepared

    cfg = load_config(config_path, [f"train.max_steps={steps}", "train.save_steps=100000", "train.logging_steps=100000"])
    use_threads(cfg.train.num_threads)
    base = _rss()
    # the same assembly as `tunewise train`: dropout, method, L1/L2, packing, denormal flushing
    train_ds, model, pad_id = load_prepared(cfg)
    method_note = cfg.method.name
    after_load, peak_load = _rss(), peak_rss_bytes()
    lengths = sorted(train_ds.lengths)
    with tempfile.TemporaryDirectory() as tmp:
        trainer, plan = build_trainer(cfg, model, train_ds, None, out=Path(tmp), pad_id=pad_id, report=False)
        fit(cfg, trainer, plan["total"])
        peak = peak_rss_bytes()
    trainable, total = methods.count_parameters(model)
    return {"method": method_note, "steps": steps, "base_rss": base, "after_load_rss": after_load, "peak_load": peak_load,
            "peak": peak, "peak_delta": peak - base, "trainable_params": trainable, "total_params": total,
            "n_train": len(train_ds), "longest": lengths[-1] if lengths else 0, "threads": torch.get_num_threads()}


def speed_child(config_path: str, batches: list[int], examples: int = 32) -> dict:
    """Training tokens/s at each per-device batch size, on the same first `examples` training examples.

    One model load; for each batch size the config's own collator (packed or padded, as `tunewise train` would
    choose) and a fresh optimizer, one untimed warm-up step on other examples, then every step over the
    measured examples timed (forward, backward, optimizer step). Weights change as they would in training;
    speed does not depend on their values. Peak memory is read after each size (VmHWM: the largest so far).
    """
    import time

    import torch

    from tunewise.config import load_config
    from tunewise.train.assemble import build_trainer, load_prepared
    from tunewise.train.data import TokenDataset
    from tunewise.train.trainer import flush_denormals

    cfg = load_config(config_path, ["train.gradient_accumulation_steps=1", "train.save_steps=100000"])
    use_threads(cfg.train.num_threads)
    train_ds, model, pad_id = load_prepared(cfg)
    measured = TokenDataset(train_ds.examples[:examples])
    warm = train_ds.examples[examples:] or train_ds.examples
    tokens = sum(len(e.input_ids) for e in measured.examples)
    rows = []
    import tempfile

    from tunewise.train.collate import PackCollator

    with tempfile.TemporaryDirectory() as tmp, flush_denormals(cfg.train.flush_denormal):
        for b in batches:
            cfg_b = cfg.model_copy(update={"train": cfg.train.model_copy(update={"per_device_batch_size": b})})
            trainer, _ = build_trainer(cfg_b, model, measured, None, out=Path(tmp), pad_id=pad_id, report=False)
            trainer.create_optimizer()
            trainer.current_gradient_accumulation_steps = 1
            model.train()
            steps = [warm[:b]] + [measured.examples[i:i + b] for i in range(0, len(measured.examples), b)]
            for k, feats in enumerate(steps):
                if k == 1:  # the warm-up step is not timed
                    t0 = time.perf_counter()
                batch = trainer.data_collator([{"input_ids": e.input_ids, "labels": e.labels} for e in feats])
                trainer.training_step(model, batch, None)
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            rows.append({"batch": b, "tokens_per_s": tokens / dt, "seconds": dt, "peak": peak_rss_bytes(),
                         "packed": isinstance(trainer.data_collator, PackCollator)})
            del trainer
            model.zero_grad(set_to_none=True)
    return {"rows": rows, "examples": len(measured.examples), "threads": torch.get_num_threads()}


def measure(config_path: str | os.PathLike, steps: int = 3, timeout: int = 900, env: dict | None = None) -> dict:
    """Run `steps` training steps of `config_path` in a fresh process and return its memory readings."""
    return _run_child([str(config_path), "--steps", str(steps)], timeout, env)


def measure_speed(config_path: str | os.PathLike, batches: list[int], examples: int = 32, timeout: int = 1800,
                  env: dict | None = None) -> dict:
    """`speed_child` in a fresh process (so its peak memory is its own)."""
    return _run_child([str(config_path), "--speed", ",".join(map(str, batches)), "--examples", str(examples)],
                      timeout, env)


def speed_of(cfg, batches: list[int], examples: int = 24, say=None) -> list[dict]:
    """measure_speed for a loaded Config (written to a temporary YAML the child loads), rows only."""
    import tempfile

    import yaml

    say = say or (lambda m: None)
    say(f"[tunewise] measuring training speed at per-device batch sizes {', '.join(map(str, batches))} on "
        f"{examples} examples (a few minutes on a CPU)...")
    with tempfile.TemporaryDirectory(prefix="tw-advise-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), allow_unicode=True), encoding="utf-8")
        return measure_speed(path, batches, examples)["rows"]


def _run_child(args: list[str], timeout: int, env: dict | None) -> dict:
    src = str(Path(__file__).resolve().parents[2])
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = src + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("HF_HUB_OFFLINE", "1")
    e.setdefault("TOKENIZERS_PARALLELISM", "false")
    e.setdefault("TRANSFORMERS_VERBOSITY", "error")
    p = subprocess.run([sys.executable, "-m", "tunewise.advise.measure", *args],
                       capture_output=True, text=True, env=e, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"measurement process failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--speed", default=None, help="comma-separated per-device batch sizes: time them instead")
    ap.add_argument("--examples", type=int, default=32)
    a = ap.parse_args()
    if a.speed:
        print(json.dumps(speed_child(a.config, [int(x) for x in a.speed.split(",")], a.examples)))
    else:
        print(json.dumps(child(a.config, a.steps)))
