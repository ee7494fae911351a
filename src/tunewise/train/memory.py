"""Peak training memory, per tuning method, from model facts + training shape + hardware (all data).

The terms, per process (per device):
  weights      parameters at their dtype (4-bit NF4 for qlora's frozen linears)
  trainable    the method's own parameters (LoRA A/B in fp32, as peft keeps them), plus copies of
               modules_to_save
  gradients    one value per trainable parameter, at the trainable dtype
  optimizer    AdamW: two moments per trainable parameter, at the trainable dtype; the other train.optimizer
               choices by their state per parameter (train/optim.py: sgd one buffer, 8-bit AdamW two bytes,
               adafactor its factored row and column sums)
  activations  saved for backward: per layer ~ tokens x (A_HIDDEN x hidden + A_INTER x intermediate
               + A_KV x kv_dim) x bytes, plus attention scores for eager attention and one extra layer
               for the backward pass; with gradient checkpointing only each layer's input is kept
  preference   a pair stage (dpo, orpo, simpo) runs the chosen and the rejected answer in one batch: twice the rows;
               the reference is the same model with its adapter off (a no-grad forward, nothing kept) or a table of
               precomputed log-probabilities, never a second copy of the weights
  logits       tunewise's fast_loss makes logits only at supervised positions, in chunks of
               train.loss_chunk_size, turned into their own gradient in place, so this is
               ~min(supervised, chunk) x vocab x 4 bytes, not 3 x batch x seq x vocab
  overhead     CPU: the Python/torch/transformers process itself (resident before the model loads; the
               tokenizer, ~1.4 KB per vocabulary entry, is freed before training starts); GPU: CUDA
               context and kernels
  loading      qlora on a CPU: the peak can come while loading, not training. bitsandbytes quantises as
               transformers reads the memory-mapped checkpoint: the 4-bit weights, the unquantised rest (embeddings,
               norms) at the load dtype plus its checkpoint-dtype copy, and the layers being quantised in float32.
               Each page of the file read would also stay resident until the load ends (Qwen2.5-3B: 10.2 GB while
               loading, 4.1 GB training; bench/SWEEP.md); on Linux tunewise pages them out as it goes
               (models/load.checkpoint_pages_released: 4.2 GB), elsewhere they are counted. `total` is the larger
               of the two peaks (what peak RSS shows); the file's pages are clean and the kernel drops them under
               pressure, so `needed` (what must be free: `fits`, the largest-model table) leaves them out
The constants marked "measured" were calibrated against bench/memory.py (see bench/MEMORY.md).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

from tunewise.hardware import GiB, Hardware
from tunewise.models.facts import ModelFacts
from tunewise.config.methods import FACTS
from tunewise.methods.sizes import module_params, targets
from tunewise.train.optim import state_bytes

METHODS = tuple(FACTS)  # every registered method (config/methods.py)
MiB = 1024 ** 2

# Saved-activation coefficients per token and layer (in units of one activation value). From counting the
# tensors autograd keeps in a pre-norm decoder block (norm in/out, q/k/v, rotary q/k, attention output,
# residuals, MLP gate/up/activation/product), then checked against measured peaks (bench/memory.py).
A_HIDDEN = 12
A_INTER = 5
A_KV = 4
CPU_OVERHEAD = int(520 * MiB)   # measured: RSS of a process after importing torch, transformers, peft, tunewise
GPU_OVERHEAD = int(600 * MiB)   # CUDA context + cuBLAS workspace (typical; not measured on this machine)
FIT_SHARE = 0.9                 # use at most this share of the budget: allocators fragment, other programs run
NF4_BYTES = 0.5 + 0.0161        # 4 bits + double-quantised absmax per 64-value block
INT8_BYTES = 1.0 + 0.0313       # 8 bits + per-row/outlier state
# measured (RSS by phase, bench/SWEEP.md): while a quantised base loads on a CPU, about this many layers' linear
# weights are in float32 at once beside what is kept (Qwen2.5-0.5B / 1.5B / 3B)
QUANT_LOAD_LAYERS = 2
# models/load.checkpoint_pages_released pages a converting load's checkpoint out as it goes (madvise MADV_PAGEOUT, Linux)
PAGES_RELEASED_WHILE_LOADING = sys.platform.startswith("linux")


@dataclass(frozen=True)
class Shape:
    """What one training step looks like on one device."""
    batch: int                          # train.per_device_batch_size
    seq: int                            # longest row in a batch (min of data.max_length and the longest example)
    supervised_share: float = 0.5       # share of tokens with a label
    gradient_checkpointing: bool = False
    precision: str = "fp32"             # fp32 | bf16 | fp16 (resolved, not 'auto')
    weight_dtype: str = "float32"       # float32 | bfloat16 | float16 (resolved, not 'auto')
    frozen_dtype: str = "float32"       # train.frozen_dtype: frozen weights of adapter methods kept in this dtype
    fast_loss: bool = True
    loss_chunk_size: int = 128
    eager_attention: bool = False
    nproc: int = 1
    rows_per_example: int = 1           # preference pairs: 2 (the chosen and the rejected answer, one batch)
    strategy: str = "ddp"               # ddp | fsdp | deepspeed
    optimizer: str = "adamw"            # train.optimizer

    @classmethod
    def from_config(cls, cfg, *, batch: int, seq: int, supervised_share: float, gradient_checkpointing: bool,
                    precision: str, weight_dtype: str, frozen_dtype: str, nproc: int) -> "Shape":
        """A run's shape: the config's own knobs, plus what is resolved for the run or the machine (the batch and
        row length asked about, the data's supervised share, the dtypes with 'auto' resolved, the processes)."""
        from tunewise.config.schema import PAIR_STAGES

        t = cfg.train
        return cls(batch=batch, seq=seq, supervised_share=supervised_share, gradient_checkpointing=gradient_checkpointing,
                   precision=precision, weight_dtype=weight_dtype, frozen_dtype=frozen_dtype, fast_loss=t.fast_loss,
                   loss_chunk_size=t.loss_chunk_size, eager_attention=cfg.model.attn_implementation == "eager",
                   nproc=nproc, rows_per_example=2 if t.stage in PAIR_STAGES else 1,
                   strategy=cfg.distributed.strategy, optimizer=t.optimizer)


@dataclass(frozen=True)
class MethodParams:
    """The method knobs that change memory (a plain copy of method.* so the estimate needs no Config)."""
    lora_r: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] | str = "all-linear"
    modules_to_save: tuple[str, ...] = ()
    use_dora: bool = False
    quant_bits: int = 4
    freeze_trainable_layers: int = 2
    freeze_extra_modules: tuple[str, ...] = ()
    num_virtual_tokens: int = 20
    adapter_size: int = 64
    prefix_projection: bool = False
    prefix_projection_size: int = 256
    adapter_placement: str = "pfeiffer"

    @classmethod
    def from_config(cls, m) -> "MethodParams":
        tm = m.target_modules if isinstance(m.target_modules, str) else tuple(m.target_modules)
        return cls(m.lora_r, m.lora_dropout, tm, tuple(m.modules_to_save), m.use_dora, m.quant_bits,
                   m.freeze_trainable_layers, tuple(m.freeze_extra_modules), m.num_virtual_tokens, m.adapter_size,
                   getattr(m, "prefix_projection", False), getattr(m, "prefix_projection_size", 256),
                   getattr(m, "adapter_placement", "pfeiffer"))


@dataclass(frozen=True)
class Estimate:
    method: str
    trainable_params: int
    weights: int
    trainable: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    budget: int                # what one process may use, bytes
    device: str                # "cpu" or "cuda"
    loading: int = 0           # the peak while loading, where it can exceed training's (qlora on a CPU), else 0
    reclaimable: int = 0       # of `loading`: the checkpoint's clean page cache, which the kernel drops under pressure

    @property
    def training(self) -> int:
        """The peak while training: the sum of the terms."""
        return self.weights + self.trainable + self.gradients + self.optimizer + self.activations + self.logits + self.overhead

    @property
    def total(self) -> int:
        """The peak per process / device, bytes (what peak RSS shows): the larger of training and loading."""
        return max(self.training, self.loading)

    @property
    def needed(self) -> int:
        """What must be free for the run: the peak without the page cache the kernel can drop."""
        return max(self.training, self.loading - self.reclaimable)

    @property
    def fits(self) -> bool:
        return self.needed <= FIT_SHARE * self.budget

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(total=self.total, fits=self.fits, training=self.training, needed=self.needed)
        for k in ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "overhead", "total", "budget",
                  "loading", "reclaimable", "training", "needed"):
            d[k + "_gib"] = round(d[k] / GiB, 3)
        return d


_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "fp32": 4, "bf16": 2, "fp16": 2}


def trainable_params(facts: ModelFacts, method: str, mp: MethodParams) -> int:
    """Parameters the optimiser updates for this method (what `tunewise train` prints as trainable): the
    method's own estimator, registered with it (methods/sizes.py)."""
    from tunewise import methods

    if method not in METHODS:
        raise ValueError(f"unknown method {method}")
    return methods.get(method).trainable_params(facts, mp)


def _weights_bytes(facts: ModelFacts, method: str, mp: MethodParams, wb: int) -> int:
    """The base model's weights; adapter methods' frozen ones at `wb`, already narrowed by train.frozen_dtype."""
    if not FACTS[method].quantised_base:
        return facts.params * wb
    quant = _quantised_params(facts)
    per = NF4_BYTES if mp.quant_bits == 4 else INT8_BYTES
    return int(quant * per + (facts.params - quant) * wb)


def _quantised_params(facts: ModelFacts) -> int:
    return sum(x.in_features * x.out_features for x in facts.linears if x.layer is not None)


def quantised_load_peak(facts: ModelFacts, mp: MethodParams, wb: int,
                        released: bool | None = None) -> tuple[int, int]:
    """(peak bytes while a quantised base loads on a CPU, without the interpreter; of it, the checkpoint's page
    cache). Calibrated by RSS per phase at Qwen2.5-0.5B, 1.5B and 3B (bench/SWEEP.md): the quantised weights, the
    rest at the load dtype `wb` plus its checkpoint-dtype copy, QUANT_LOAD_LAYERS layers' linears in float32, and,
    unless its pages are `released` as the load goes (PAGES_RELEASED_WHILE_LOADING), the whole file."""
    released = PAGES_RELEASED_WHILE_LOADING if released is None else released
    quant = _quantised_params(facts)
    rest = facts.params - quant
    file = facts.params * facts.source_dtype_bytes
    per = NF4_BYTES if mp.quant_bits == 4 else INT8_BYTES
    layer = sum(x.in_features * x.out_features for x in facts.linears if x.layer == 0)
    kept = quant * per + rest * (wb + (facts.source_dtype_bytes if facts.source_dtype_bytes != wb else 0))
    if released:
        file = 0
    return int(file + kept + QUANT_LOAD_LAYERS * layer * 4), int(file)


def activation_bytes(facts: ModelFacts, method: str, mp: MethodParams, s: Shape) -> tuple[int, int]:
    """(saved activations, logits) in bytes for one forward+backward on one device."""
    tokens = s.batch * s.rows_per_example * s.seq
    ab = _BYTES[s.precision] if s.precision != "fp32" else _BYTES[s.weight_dtype]
    kv_dim = facts.kv_heads * facts.head_dim
    q_dim = facts.heads * facts.head_dim
    per_tok = A_HIDDEN * facts.hidden + A_INTER * facts.intermediate + A_KV * kv_dim + 2 * q_dim
    mf = FACTS[method]
    if mf.low_rank and mp.lora_dropout > 0:
        # peft's dropout makes a new copy of each targeted module's input, kept for lora_A's backward
        per_tok += sum(x.in_features for x in targets(facts, mp.target_modules) if x.layer == 0)
    seq_eff = s.seq + (mp.num_virtual_tokens if mf.virtual_tokens else 0)  # (prefix keys/values: tiny next to the rows)
    layer = tokens * per_tok * ab * seq_eff // max(s.seq, 1)
    if s.eager_attention:
        layer += 2 * s.batch * s.rows_per_example * facts.heads * seq_eff * seq_eff * ab  # scores + probabilities
    if s.gradient_checkpointing:
        acts = facts.layers * tokens * facts.hidden * ab + 2 * layer
    else:
        acts = facts.layers * layer + layer  # + one layer of gradients in flight during backward
    acts += 4 * tokens * facts.hidden * ab  # embeddings out, final norm in/out, gathered hidden states
    # logits: prefix/prompt go through peft's own forward, which makes the full logits
    fast = s.fast_loss and not mf.virtual_tokens
    if fast:  # one fp32 chunk, made into its gradient in place (train/trainer.py FusedLinearCE)
        rows = min(max(1, int(tokens * s.supervised_share)), s.loss_chunk_size)
        per_row = 4
    else:  # logits, log-softmax and their gradient for every position
        rows, per_row = tokens, 3 * 4
    logits = rows * facts.vocab * (per_row + (ab if ab != 4 else 0))
    return int(acts), int(logits)


def estimate(facts: ModelFacts, method: str, mp: MethodParams, shape: Shape, hw: Hardware) -> Estimate:
    """Peak memory of one training process for `method` (pure arithmetic over the inputs)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method}")
    wb = _BYTES[shape.weight_dtype]
    n_train = trainable_params(facts, method, mp)
    mf = FACTS[method]
    tb = 4 if mf.adapter_like else wb  # peft keeps adapter weights in fp32 even on a bf16 base
    # train.frozen_dtype narrows the frozen matrices of adapter methods (norms stay wide: a rounding error here)
    weights = _weights_bytes(facts, method, mp, min(wb, _BYTES[shape.frozen_dtype]) if mf.adapter_like else wb)
    trainable = n_train * tb if mf.adapter_like else 0  # full/freeze train the weights in place
    if mf.low_rank and mp.modules_to_save:
        trainable += module_params(facts, mp.modules_to_save) * (tb - 4 + wb)  # peft keeps the original too
    grads = n_train * tb
    optim = int(n_train * state_bytes(shape.optimizer, tb))  # AdamW: two moments at the trainable dtype
    shard = shape.nproc if shape.strategy == "fsdp" and shape.nproc > 1 else 1
    loading = reclaimable = 0
    if mf.quantised_base and not hw.cuda:
        loading, reclaimable = quantised_load_peak(facts, mp, wb)
        loading += CPU_OVERHEAD
    weights, grads, optim = weights // shard, grads // shard, optim // shard
    if shape.nproc > 1 and shape.strategy == "ddp":
        grads *= 2  # DDP's gradient buckets hold a second copy while reducing
    acts, logits = activation_bytes(facts, method, mp, shape)
    if shape.precision != "fp32" and shape.fast_loss and not mf.virtual_tokens and mf.adapter_like \
            and min(wb, _BYTES[shape.frozen_dtype]) > _BYTES[shape.precision]:
        # the fused loss multiplies a low-precision copy of the frozen head, made once (train/trainer.py low_copy)
        logits += facts.vocab * facts.hidden * _BYTES[shape.precision]
    device = "cuda" if hw.cuda else "cpu"
    overhead = GPU_OVERHEAD if hw.cuda else CPU_OVERHEAD
    if hw.cuda:
        budget = min(g.memory_bytes for g in hw.gpus)
    else:
        budget = hw.available_ram_bytes // max(shape.nproc, 1)  # N processes share the RAM
    return Estimate(method, n_train, weights, trainable, grads, optim, acts, logits, overhead, budget, device, loading,
                    reclaimable)


def resolved_dtypes(precision: str, dtype: str, hw: Hardware, facts: ModelFacts | None = None,
                    nproc: int = 1) -> tuple[str, str]:
    """(precision, weight dtype) after 'auto' is resolved the way training resolves it, for this hardware (on a
    CPU with the model's facts: bf16 where this CPU multiplies it fast at the model's shape, train/precision.py)."""
    if precision == "auto" and not hw.cuda and facts is not None:
        from tunewise.train.precision import resolve

        precision = resolve("auto", shape=(facts.hidden, facts.intermediate), cuda=False, world=nproc).precision
    if precision == "auto":
        precision = "bf16" if hw.cuda and hw.bf16 else "fp32"
    if dtype == "auto":
        dtype = "bfloat16" if hw.cuda and hw.bf16 else "float32"
    return precision, dtype


# train.gradient_checkpointing: auto turns checkpointing on when the run without it is estimated to need more than
# this share of what one process may use. It leaves the rest to the machine's other programs and to the estimate's
# error (bench/SWEEP.md: within ±15% of measured peaks), and below it the speed of not recomputing wins: each layer's
# forward runs twice (Qwen2.5-1.5B LoRA on a 2-core CPU, bench/SWEEP.md: 11.9 -> 9.1-10.4 tokens/s, 11.4 -> 4.3 GB).
AUTO_CHECKPOINT_SHARE = 0.5


def checkpointing_pays(e: Estimate) -> bool:
    """Whether a run estimated at `e` takes more than AUTO_CHECKPOINT_SHARE of what its process may use while
    training (the loading peak is the same either way)."""
    return e.training > AUTO_CHECKPOINT_SHARE * e.budget


def auto_checkpointing(facts: ModelFacts, method: str, mp: MethodParams, shape: Shape, hw: Hardware) -> tuple[bool, Estimate, Estimate]:
    """train.gradient_checkpointing: auto for one run: (on; the estimate without checkpointing; the estimate of the
    choice). On when the run without it takes more than AUTO_CHECKPOINT_SHARE of the budget; never for prefix
    tuning, whose key/value cache cannot be recomputed.

    Every decoder layer is checkpointed. Checkpointing one layer in n (transformers' every_n_layers) was measured at
    Qwen2.5-1.5B LoRA on a CPU (bench/SWEEP.md, session 14): one in 2 ran at 10.2 tokens/s and peaked at 6,073 MB,
    every layer at 10.4 tokens/s and 4,257 MB: no faster, and more memory."""
    without = estimate(facts, method, mp, _replace(shape, gradient_checkpointing=False), hw)
    if method == "prefix" or not checkpointing_pays(without):
        return False, without, without
    return True, without, estimate(facts, method, mp, _replace(shape, gradient_checkpointing=True), hw)


def fit_batch(facts: ModelFacts, method: str, mp: MethodParams, shape: Shape, hw: Hardware, target: int) -> tuple[int, bool, Estimate] | None:
    """Largest power-of-two per-device batch <= target that fits, first without gradient checkpointing.

    Returns (batch, gradient_checkpointing, estimate) or None when even batch 1 with checkpointing does not fit.
    """
    for gc in (False, True):
        b = 1 << max(0, int(math.log2(max(1, target))))
        while b >= 1:
            e = estimate(facts, method, mp, _replace(shape, batch=b, gradient_checkpointing=gc), hw)
            if e.fits:
                return b, gc, e
            b //= 2
    return None


def _replace(s: Shape, **kw) -> Shape:
    from dataclasses import replace

    return replace(s, **kw)


def fmt_bytes(n: int) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / MiB:.0f} MiB"
