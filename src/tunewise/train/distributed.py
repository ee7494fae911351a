"""Multi-process training on the engines the field trusts: torchrun + accelerate (DDP, FSDP, DeepSpeed).

`tunewise train CONFIG --nproc N` re-launches itself under torchrun on this machine; multi-node runs use
torchrun directly (see docs/distributed.md). Inside, transformers' Trainer drives accelerate; tunewise
only makes sure rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
import subprocess
import sys


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    import torch.distributed as dist

    if world_size() > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(value: float) -> float:
    import torch
    import torch.distributed as dist

    if world_size() > 1 and dist.is_available() and dist.is_initialized():
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())
    return value


def launch(argv: list[str], nproc: int) -> int:
    """Run `tunewise <argv>` under torchrun with `nproc` processes on this machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "tunewise", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)


def trainer_kwargs(dcfg) -> dict:
    """TrainingArguments for the configured strategy (only used when several processes run)."""
    import torch

    kw: dict = {}
    if dcfg.backend != "auto":
        kw["ddp_backend"] = dcfg.backend
    elif not torch.cuda.is_available():
        kw["ddp_backend"] = "gloo"
    if world_size() > 1:
        kw["ddp_find_unused_parameters"] = False
    if dcfg.strategy == "fsdp":
        opts = dcfg.fsdp + (" offload" if dcfg.fsdp_offload and "offload" not in dcfg.fsdp else "")
        kw["fsdp"] = opts
    elif dcfg.strategy == "deepspeed":
        kw["deepspeed"] = dcfg.deepspeed
    return kw
