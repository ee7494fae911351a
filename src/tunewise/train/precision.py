"""Training precision: what `train.precision: auto` means on this machine, measured rather than assumed.

On a GPU, auto is bf16 where the GPU supports it (as before). On a CPU it used to be fp32 always. But CPUs with
bf16 matrix units (Intel AMX, AVX512-BF16) multiply bf16 several times as fast as fp32: measured on the Xeon of
bench/RESULTS.md, 1,272 against 336 GFLOP/s. So on a CPU, auto times one matmul of the model's own MLP shape in
fp32 and under bf16 autocast (a fraction of a second, once per process) and takes bf16 when it is at least
MIN_SPEEDUP times as fast. Models narrower than MIN_WIDTH stay fp32 without measuring: their matmuls are too
small for the bf16 units to pay, and the tiny test models keep exact fp32 results.

bf16 here is mixed precision as on a GPU: trainable weights, gradients and optimizer states stay fp32, the
matmuls of the forward and backward run in bf16 (torch.autocast), the loss's softmax in fp32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

MIN_SPEEDUP = 2.0  # bf16 must be at least this many times as fast as fp32 for auto to take it on a CPU
MIN_WIDTH = 512    # hidden size below which a CPU run stays fp32 without measuring


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # fp32 | bf16 | fp16
    why: str

    def line(self, lang: str = "en") -> str:
        return (f"训练精度: {self.precision} ({self.why})" if lang == "zh"
                else f"precision: {self.precision} ({self.why})")


SPEEDUP_CACHE = "precision.json"  # under TUNEWISE_HOME: the measured speed-up per CPU, thread count and shape
REPEATS = 7  # timings of each side, alternating, after a warm-up


def bf16_speedup(k: int, n: int, rows: int = 512) -> float:
    """How many times as fast a (rows x k) @ (k x n) matmul runs under bf16 autocast as in fp32 on this CPU, with
    the threads torch uses now. The weight is fp32 as in training, so the cast autocast makes on every use is counted.

    Measured once per CPU, thread count and shape, then kept in $TUNEWISE_HOME/precision.json: on a CPU whose
    ratio sits near MIN_SPEEDUP (an AMD EPYC with AVX-512 BF16 measured 1.87-2.27 at SmolLM2's shape and 1.92-2.10
    at Gemma 3's, run to run), a fresh measurement per run made the same config train in bf16 one time and fp32
    the next. Delete the file to measure again, or set train.precision."""
    import torch

    return kept_speedup(k, n, rows, torch.get_num_threads())


@lru_cache(maxsize=8)
def kept_speedup(k: int, n: int, rows: int, threads: int) -> float:
    """bf16_speedup at a thread count: from precision.json, or measured now and kept there."""
    import torch

    key = f"{cpu_signature()} | torch {torch.__version__} | threads {threads} | {rows}x{k}x{n}"
    path = speedup_cache_path()
    kept = _read_cache(path)
    if isinstance(kept.get(key), (int, float)):
        return float(kept[key])
    x = round(measure_bf16_speedup(k, n, rows), 4)
    try:
        from tunewise.fileio import write_json

        write_json(path, {**_read_cache(path), key: x})
    except OSError:
        pass  # a read-only home: measured again next run
    return x


def measure_bf16_speedup(k: int, n: int, rows: int = 512, repeats: int = REPEATS) -> float:
    """The speed-up timed now: fp32 and bf16 alternate, so a burst of other work slows both sides alike rather
    than one (each side's best time counts)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, k, generator=gen)
    w = torch.randn(n, k, generator=gen)

    def fp32():
        return torch.nn.functional.linear(x, w)

    def low():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.nn.functional.linear(x, w)

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    with torch.no_grad():
        fp32(), low()
        pairs = [(timed(fp32), timed(low)) for _ in range(repeats)]
    return min(a for a, _ in pairs) / max(min(b for _, b in pairs), 1e-9)


def speedup_cache_path():
    from tunewise.models.cache import home

    return home() / SPEEDUP_CACHE


def _read_cache(path) -> dict:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@lru_cache(maxsize=1)
def cpu_signature() -> str:
    """This CPU as the measurement depends on it: its model name and a digest of its feature flags (one model name
    covers several generations: "AMD EPYC" with and without AVX-512 BF16)."""
    import hashlib
    import platform

    name, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not name and line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif not flags and line.startswith(("flags", "Features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                if name and flags:
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    return f"{name} [{hashlib.sha1(flags.encode()).hexdigest()[:10]}]"


def model_shape(model) -> tuple[int, int] | None:
    """(hidden size, MLP width) of a transformers model (inside peft's wrappers too), or None."""
    conf = getattr(model, "config", None)
    hidden = getattr(conf, "hidden_size", None)
    if not isinstance(hidden, int):
        return None
    inner = getattr(conf, "intermediate_size", None)
    return hidden, inner if isinstance(inner, int) else 4 * hidden


def resolve(precision: str, model=None, *, shape: tuple[int, int] | None = None, cuda: bool | None = None,
            cuda_bf16: bool | None = None, world: int = 1, speedup=None) -> PrecisionChoice:
    """The precision a run trains in, with the reason. `precision`: train.precision as configured; the model, or its
    (hidden size, MLP width) as `shape` where no model is loaded (advise); world: the number of training processes
    (on a CPU each would measure on its own and could disagree, so they take fp32)."""
    if precision != "auto":
        return PrecisionChoice(precision, "train.precision")
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
        cuda_bf16 = cuda and torch.cuda.is_bf16_supported()
    if cuda:
        return PrecisionChoice("bf16" if cuda_bf16 else "fp32",
                               "auto: the GPU supports bf16" if cuda_bf16 else "auto: the GPU has no bf16")
    if world > 1:
        return PrecisionChoice("fp32", "auto on CPUs with several training processes (set train.precision: bf16 to "
                                       "use bf16 in all of them)")
    if shape is None and model is not None:
        shape = model_shape(model)
    if shape is None:
        return PrecisionChoice("fp32", "auto on a CPU: model shape unknown")
    hidden, inner = shape
    if hidden < MIN_WIDTH:
        return PrecisionChoice("fp32", f"auto on a CPU: hidden size {hidden} is below {MIN_WIDTH}, too small for bf16 to pay")
    x = (speedup or bf16_speedup)(hidden, inner)
    if x >= MIN_SPEEDUP:
        return PrecisionChoice("bf16", f"auto: this CPU multiplies bf16 {x:.1f}x as fast as fp32 at this model's shape "
                                       "(bf16 matrix units; measured once, kept in precision.json); weights, gradients "
                                       "and optimizer states stay fp32")
    return PrecisionChoice("fp32", f"auto: bf16 is only {x:.1f}x as fast as fp32 on this CPU (needs {MIN_SPEEDUP:g}x; "
                                   "measured once, kept in precision.json)")


def frozen_dtype(configured: str, precision: str, adapter: bool, stored: str | None = None) -> str:
    """train.frozen_dtype after 'auto': bfloat16 for an adapter method (its frozen base is left out of the result)
    trained in bf16 mixed precision, whose matmuls round the frozen weights to bf16 anyway, or whose checkpoint
    stores its weights in bfloat16 (`stored`, models/load.stored_dtype: kept as stored, nothing is rounded and
    fp32 arithmetic sees exactly the values it would after a float32 load); else float32."""
    if configured != "auto":
        return configured
    return "bfloat16" if adapter and (precision == "bf16" or stored == "bfloat16") else "float32"


def flags(choice: PrecisionChoice) -> dict:
    """transformers TrainingArguments' precision flags."""
    return {"bf16": choice.precision == "bf16", "fp16": choice.precision == "fp16"}
