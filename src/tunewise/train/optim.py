"""train.optimizer: the optimisers a newcomer may choose, what each maps to in transformers, and where each applies.

Each entry is data: the transformers `optim` name (None: keep transformers' own AdamW default), its
`optim_args`, the optimiser state per trainable parameter (for the memory estimate) and what it needs. `check_optimizer` gets the hardware as plain facts, so the CPU rules are tested without a GPU.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from tunewise.errors import ConfigError


@dataclass(frozen=True)
class Optimizer:
    name: str
    optim: str | None          # TrainingArguments.optim; None keeps transformers' default (fused AdamW where torch has it)
    states: float              # optimiser state per trainable parameter, in values of the parameter's dtype
    state_bytes: float | None = None  # ... or in bytes, for states kept in their own format (8-bit)
    needs_bitsandbytes: bool = False
    needs_cuda: bool = False   # paged optimisers page their state between GPU and CPU memory


OPTIMIZERS: dict[str, Optimizer] = {
    "adamw": Optimizer("adamw", None, 2),                     # two moments
    "sgd": Optimizer("sgd", "sgd", 1),                        # one momentum buffer
    # factored second moment: row and column sums of each matrix (r + n values for an r x n LoRA matrix), no first
    "adafactor": Optimizer("adafactor", "adafactor", 0.1),
    "adamw_8bit": Optimizer("adamw_8bit", "adamw_bnb_8bit", 2, state_bytes=2, needs_bitsandbytes=True),  # two 8-bit moments
    "paged_adamw_8bit": Optimizer("paged_adamw_8bit", "paged_adamw_8bit", 2, state_bytes=2, needs_bitsandbytes=True,
                                  needs_cuda=True),
}


def state_bytes(name: str, param_bytes: int) -> float:
    """Optimiser state per trainable parameter, in bytes, for parameters of `param_bytes` each."""
    opt = OPTIMIZERS[name]
    return opt.state_bytes if opt.state_bytes is not None else opt.states * param_bytes


def check_optimizer(name: str, *, cuda: bool, has_bitsandbytes: bool) -> Optimizer:
    """The optimiser for train.optimizer on this machine, or a ConfigError that says why not and what to use."""
    opt = OPTIMIZERS[name]
    if opt.needs_cuda and not cuda:
        raise ConfigError(
            f"train.optimizer={name} pages the optimiser state between GPU and CPU memory when the GPU runs short; "
            "this machine trains on the CPU, where the state already lives in RAM and there is nothing to page",
            where="train.optimizer", fix="use train.optimizer: adamw_8bit (the same 8-bit states, on CPU too) or adamw")
    if opt.needs_bitsandbytes and not has_bitsandbytes:
        raise ConfigError(f"train.optimizer={name} needs the bitsandbytes package", where="train.optimizer",
                          fix="pip install bitsandbytes, or use train.optimizer: adamw")
    return opt


def machine_optimizer(name: str) -> Optimizer:
    """check_optimizer with this machine's facts."""
    import torch

    return check_optimizer(name, cuda=torch.cuda.is_available(),
                           has_bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None)


def training_kwargs(t) -> dict:
    """TrainingArguments kwargs for train.optimizer (and train.momentum for sgd)."""
    opt = OPTIMIZERS[t.optimizer]
    if opt.optim is None:
        return {}
    out = {"optim": opt.optim}
    if opt.name == "sgd":
        out["optim_args"] = f"momentum={t.momentum}"
    return out
