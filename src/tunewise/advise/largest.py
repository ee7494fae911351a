"""The largest model of a family that each method fits in N GB: the memory estimate (train/memory.py) run over
the family's sizes (sizes.yaml, built on the meta device: no download, no weights) with this run's data shape
and settings. `tunewise advise` adds it for the configured model's family with this machine's memory, and
`--budgets 8,16,24` for other sizes; bench/SWEEP.md holds the estimate against measured peaks per size.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml


def _methods() -> tuple[str, ...]:
    """The methods whose memory decides the largest model: low-rank on a full-precision base, on a quantised base,
    and every weight trained (config/methods.py)."""
    from tunewise.config.methods import FACTS

    pick = [next(m for m, f in FACTS.items() if f.low_rank and not f.quantised_base),
            next(m for m, f in FACTS.items() if f.quantised_base),
            next(m for m, f in FACTS.items() if f.trains == "weights")]  # the first listed: full
    return tuple(pick)


METHODS = _methods()


@lru_cache(maxsize=1)
def families() -> dict:
    return yaml.safe_load((Path(__file__).parent / "sizes.yaml").read_text(encoding="utf-8"))


def family_of(*names: str | None) -> str | None:
    """The family (a key of sizes.yaml) a model id, alias or path belongs to, or None."""
    for name in names:
        low = str(name or "").lower()
        for key, fam in families().items():
            if any(m in low for m in fam["match"]):
                return key
    return None


@lru_cache(maxsize=32)
def size_facts(family: str, size: str):
    from transformers import AutoConfig

    from tunewise.models.facts import facts_from_config

    shape = dict(families()[family]["sizes"][size])
    conf = AutoConfig.for_model(shape.pop("model_type"), dtype="bfloat16", **shape)  # as published
    return facts_from_config(conf)


def budget_hardware(hw, gib: float):
    """This machine's kind with `gib` of memory: RAM on a CPU, each GPU's memory on a GPU machine."""
    from tunewise.train import memory as mem
    from tunewise.hardware import cpu_only, with_gpus

    if hw.cuda:
        return with_gpus(gib, count=len(hw.gpus), bf16=hw.bf16, ram_gib=hw.ram_bytes / mem.GiB)
    return cpu_only(ram_gib=gib, available_gib=gib, cores=hw.cpu_cores)


def largest(family: str, hw, shape_for, mp, target: int, methods: tuple[str, ...] = METHODS) -> dict:
    """{method: {"size", "per_device_batch_size", "gradient_checkpointing", "total_gib"} or None} for the largest
    size of `family` each method fits on `hw` (tunewise/hardware.Hardware). shape_for(facts, batch) -> memory.Shape of
    this run's data and settings; mp: memory.MethodParams."""
    from tunewise.train import memory as mem

    out: dict = {}
    for m in methods:
        out[m] = None
        for size in families()[family]["sizes"]:  # smallest first
            facts = size_facts(family, size)
            plan = mem.fit_batch(facts, m, mp, shape_for(facts, target), hw, target)
            if plan is None:
                break
            out[m] = {"size": size, "per_device_batch_size": plan[0], "gradient_checkpointing": plan[1],
                      "total_gib": round(plan[2].needed / mem.GiB, 2)}
    return out


def table(family: str, hw, budgets_gib: list[float], shape_for, mp, target: int) -> dict:
    """{"family", "label", "rows": [{"budget_gib", "here", method: cell}]}: this machine's memory first (here=True),
    then each budget."""
    fam = families()[family]
    rows = [{"budget_gib": round(hw_budget_gib(hw), 1), "here": True, **largest(family, hw, shape_for, mp, target)}]
    for gib in budgets_gib:
        rows.append({"budget_gib": gib, "here": False,
                     **largest(family, budget_hardware(hw, gib), shape_for, mp, target)})
    return {"family": family, "label": fam["label"], "sizes": list(fam["sizes"]), "rows": rows}


def hw_budget_gib(hw) -> float:
    from tunewise.train import memory as mem

    return (min(g.memory_bytes for g in hw.gpus) if hw.cuda else hw.available_ram_bytes) / mem.GiB


def cell(c: dict | None, lang: str = "en") -> str:
    if c is None:
        return "无" if lang == "zh" else "none"
    gc = (" + 检查点" if lang == "zh" else " + checkpointing") if c["gradient_checkpointing"] else ""
    return f"{c['size']} (batch {c['per_device_batch_size']}{gc}, {c['total_gib']:.1f} GiB)"
