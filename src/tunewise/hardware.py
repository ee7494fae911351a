"""What this machine has, probed once into a plain dataclass.

The memory estimate (train/memory.py) and every computation in `tunewise.advise` take a `Hardware` as data, so a
test can hand them a fake 24 GB GPU on a CPU-only machine (STYLE rule 3). Only `detect_hardware` touches the system.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from tunewise.cpu import usable_cores

GiB = 1024 ** 3


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int


@dataclass(frozen=True)
class Hardware:
    ram_bytes: int                     # total RAM
    available_ram_bytes: int           # RAM free for a new process right now
    cpu_cores: int
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)
    bf16: bool = False                 # bf16 training supported (CUDA with bf16)

    @property
    def cuda(self) -> bool:
        return bool(self.gpus)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gpus"] = [asdict(g) for g in self.gpus]
        d["cuda"] = self.cuda
        d["ram_gib"] = round(self.ram_bytes / GiB, 1)
        d["available_ram_gib"] = round(self.available_ram_bytes / GiB, 1)
        return d


def cpu_only(ram_gib: float = 16, available_gib: float | None = None, cores: int = 2) -> Hardware:
    """A CPU machine described by numbers (for tests and what-if questions)."""
    avail = ram_gib if available_gib is None else available_gib
    return Hardware(int(ram_gib * GiB), int(avail * GiB), cores)


def with_gpus(memory_gib: float, count: int = 1, *, bf16: bool = True, ram_gib: float = 64, name: str = "GPU") -> Hardware:
    """A machine with `count` identical GPUs (for tests and what-if questions)."""
    return Hardware(int(ram_gib * GiB), int(ram_gib * GiB), 16,
                    tuple(Gpu(name, int(memory_gib * GiB)) for _ in range(count)), bf16)


def detect_hardware() -> Hardware:
    """Probe RAM, cores, CUDA devices and bf16 support of this machine."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        ram, avail = int(vm.total), int(vm.available)
    except ImportError:  # pragma: no cover - psutil is a dependency; /proc as a fallback
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    cores = usable_cores()  # the same count the thread choice starts from (affinity, cgroup quota)
    gpus: list[Gpu] = []
    bf16 = False
    try:
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append(Gpu(p.name, int(p.total_memory)))
            bf16 = bool(torch.cuda.is_bf16_supported())
    except Exception:  # a broken CUDA install should not stop advice for the CPU
        gpus = []
    return Hardware(ram, avail, cores, tuple(gpus), bf16)
