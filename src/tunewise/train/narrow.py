"""Frozen weights kept narrow (bfloat16) in memory and computed wide (float32).

LoRA-style methods never change the base model's matrices, yet a float32 base holds 4 bytes per weight.
Keeping the frozen matrices in bfloat16 halves that (Gemma 3 270M: 1.07 GB -> 0.54 GB). The arithmetic
stays float32: a weight is widened just before its matmul (the large vocabulary matrix a block of rows at
a time), so CPUs, where bf16 matmuls run at about half the fp32 rate, pay only for the widening (about 10%
of a Gemma 3 270M LoRA run on this project's 2-core machine, bench/RESULTS.md). What changes is
the frozen weights themselves, rounded to bf16's 8 significant bits, as when a GPU run loads its base in
bf16. The trained adapter is saved as usual; the base on disk is untouched.

Modules are narrowed by switching their class to a subclass whose forward widens the weight (the
parameters, hooks and peft wrappers around them stay as they are).
"""

from __future__ import annotations

import mmap
import threading

import torch
import torch.nn.functional as F
from torch import nn

from tunewise.compat import file_mappings, madvise_dontneed

NARROW = {"bfloat16": torch.bfloat16}
BLOCK = 8192  # rows of a large matrix widened at once (8192 x hidden floats, 21 MB for Gemma 3; measured fastest here)
_scratch = threading.local()


def _wide(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """w converted to `dtype`, in a per-thread scratch buffer reused from call to call on CPU.

    A fresh allocation each time costs more than the conversion itself (page faults: 79 ms against 29 ms for
    Gemma 3's head); the result is used by one matmul and dropped, so one buffer serves every layer.
    """
    if w.device.type != "cpu":
        return w.to(dtype)
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.numel() < w.numel() or buf.dtype != dtype:
        buf = _scratch.buf = torch.empty(w.numel(), dtype=dtype)
    return buf[:w.numel()].view(w.shape).copy_(w)


def widen_mm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w.T in x's dtype for a (possibly narrow) 2-D x and weight w."""
    if w.dtype == x.dtype:
        return x @ w.t()
    if w.shape[0] <= BLOCK:
        return x @ _wide(w, x.dtype).t()
    return widen_logits(x, w).contiguous()


def widen_logits(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x @ w.T + b for a large narrow w (a vocabulary head), as a [rows_x, rows_w] view of a [rows_w, rows_x] buffer.

    Each block of widened rows multiplies straight into its own contiguous slice of the buffer, so the logits
    are written once (a [rows_x, rows_w] result would need a copy per block). Reductions over the returned
    view's last dimension run down the buffer's columns, which is as fast.
    """
    out = x.new_empty(w.shape[0], x.shape[0])
    xt = x.t()
    for i in range(0, w.shape[0], BLOCK):
        torch.mm(_wide(w[i:i + BLOCK], x.dtype), xt, out=out[i:i + BLOCK])
    if b is not None:
        out += b.to(out.dtype)[:, None]
    return out.t()


def widen_mm_t(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """g @ w (the input gradient of x @ w.T) for a (possibly narrow) weight, widening BLOCK rows at a time."""
    if w.dtype == g.dtype:
        return g @ w
    if w.shape[0] <= BLOCK:
        return g @ _wide(w, g.dtype)
    out = g.new_zeros(g.shape[0], w.shape[1])
    for i in range(0, w.shape[0], BLOCK):
        out.addmm_(g[:, i:i + BLOCK], _wide(w[i:i + BLOCK], g.dtype))
    return out


class _WideLinear(torch.autograd.Function):
    """x @ W.T + b for a frozen narrow W: only the narrow W is kept for backward, never a widened copy."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(w)
        shape = x.shape
        y = widen_mm(x.reshape(-1, shape[-1]), w)
        if b is not None:
            y += b.to(y.dtype)
        return y.reshape(*shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        dx = widen_mm_t(grad.reshape(-1, grad.shape[-1]), w) if ctx.needs_input_grad[0] else None
        return (None if dx is None else dx.reshape(*grad.shape[:-1], w.shape[1])), None, None


class NarrowLinear(nn.Linear):
    """An nn.Linear whose frozen weight is stored narrow and widened to the input's dtype for each matmul.
    Under autocast to the weight's own dtype (bf16 mixed precision, train/precision.py) the matmul takes the
    narrow weight as it is: autocast would round a widened copy straight back to it."""

    def forward(self, x):
        dev = x.device.type
        if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == self.weight.dtype:
            return F.linear(x, self.weight, self.bias)
        return _WideLinear.apply(x, self.weight, self.bias)


class NarrowEmbedding(nn.Embedding):
    """An nn.Embedding (optionally scaled, as Gemma's) with a narrow frozen table; rows come out wide."""

    wide = torch.float32

    def forward(self, ids):
        out = F.embedding(ids, self.weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq,
                          self.sparse).to(self.wide)
        scale = getattr(self, "embed_scale", None)
        return out * scale.to(out.dtype) if scale is not None else out


def _embedding_ok(m: nn.Module) -> bool:
    """Plain embeddings, and the scaled ones whose forward is `embedding * embed_scale` (Gemma family)."""
    if type(m) is nn.Embedding:
        return True
    return isinstance(m, nn.Embedding) and type(m).__name__.endswith("ScaledWordEmbedding") and torch.is_tensor(
        getattr(m, "embed_scale", None))


def _drop_file_pages(t: torch.Tensor, maps: list[tuple[int, int]]) -> None:
    """Unmap the file pages under a tensor read from a memory-mapped checkpoint and no longer used.

    They would otherwise stay in the process's resident set (and its peak) until the whole file is unmapped.
    Only pages of a .safetensors mapping lying wholly inside the tensor are dropped: were they read again,
    the kernel would load them back from the file, so nothing can be lost.
    """
    page = mmap.PAGESIZE
    start = t.data_ptr()
    end = start + t.numel() * t.element_size()
    if not any(a <= start and end <= b for a, b in maps):
        return
    a, b = -(-start // page) * page, end // page * page
    if b > a:
        madvise_dontneed(a, b - a)


def _narrowed(old: torch.Tensor, narrow: torch.dtype, maps) -> torch.Tensor:
    """`old` converted to `narrow` a block of rows at a time, each block's file pages dropped once copied, so a
    memory-mapped checkpoint never becomes resident all at once (Gemma 3's embedding alone is 671 MB in fp32)."""
    new = torch.empty(old.shape, dtype=narrow, device=old.device)
    if old.dim() == 0 or old.device.type != "cpu":
        return new.copy_(old)
    rows = max(1, BLOCK * 1024 // max(1, old[0].numel()))
    for i in range(0, old.shape[0], rows):
        new[i:i + rows] = old[i:i + rows]
        _drop_file_pages(old[max(0, i - rows):i + rows], maps)  # the previous block too: their shared page
    return new


def narrow_frozen(model: nn.Module, dtype: str = "bfloat16") -> int:
    """Store the frozen weights of Linear and Embedding modules in `dtype`; returns the bytes saved.

    A weight shared by several modules (tied embeddings and head) is narrowed only when it is frozen and every
    module holding it can compute wide.
    """
    narrow = NARROW[dtype]
    holders: dict[int, tuple[nn.Parameter, list[nn.Module]]] = {}
    blocked: set[int] = set()
    for m in model.modules():
        w = m._parameters.get("weight")  # owned here, not a wrapper's alias (peft's LoRA layers expose .weight)
        if not isinstance(w, nn.Parameter):
            continue
        ok = (type(m) in (nn.Linear, NarrowLinear) or _embedding_ok(m)) and not w.requires_grad and w.is_floating_point()
        holders.setdefault(id(w), (w, []))[1].append(m)
        if not ok:
            blocked.add(id(w))
    saved, maps = 0, file_mappings()
    for key, (w, mods) in holders.items():
        if key in blocked or (w.element_size() <= narrow.itemsize and w.dtype != narrow):  # narrower still
            continue
        if w.dtype == narrow:  # loaded narrow as the checkpoint stores it (train/assemble.loads_narrow)
            wide = torch.float32
            saved += w.numel() * (wide.itemsize - w.element_size())
        else:
            old = w.data
            w.data = _narrowed(old, narrow, maps)
            saved += old.numel() * (old.element_size() - w.element_size())
            wide = old.dtype
            del old
        for m in mods:
            if isinstance(m, nn.Embedding):
                m.__class__ = NarrowEmbedding
                m.wide = wide
            else:
                m.__class__ = NarrowLinear
    return saved


def widen_all_but_matrices(model: nn.Module) -> None:
    """Right after a narrow load (train/assemble.loads_narrow): every floating tensor made float32 except the weights
    of Linear and Embedding modules, which narrow_frozen takes as they are. Buffers the model computes as it is built
    (Gemma's embedding scale, rotary frequencies) are taken from a float32 build of the same config with no weights,
    since a narrow build rounds them; norms and biases are widened exactly. The result is the float32 model with only
    those matrices narrow."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    try:
        with init_empty_weights(include_buffers=False):
            ref = AutoModelForCausalLM.from_config(model.config, dtype=torch.float32)
        wide = dict(ref.named_buffers())
        del ref
    except Exception as e:  # noqa: BLE001  (an architecture that cannot be rebuilt from its config: widen as loaded)
        from tunewise.console import say

        wide = {}
        say(f"[tunewise] note: the model's computed buffers are widened from bfloat16 as loaded "
            f"(rebuilding them in float32 failed: {type(e).__name__})")
    for name, buf in list(model.named_buffers()):
        if buf.is_floating_point() and buf.dtype != torch.float32:
            owner, _, leaf = name.rpartition(".")
            mod = model.get_submodule(owner) if owner else model
            src = wide.get(name)
            mod._buffers[leaf] = src.clone() if src is not None and src.shape == buf.shape else buf.float()
    for m in model.modules():
        for leaf, p in m._parameters.items():
            if p is None or not p.is_floating_point() or p.dtype == torch.float32:
                continue
            if leaf == "weight" and (isinstance(m, nn.Linear) or _embedding_ok(m)):
                continue
            p.data = p.data.float()
    if getattr(model.config, "dtype", None) is not None:
        model.config.dtype = torch.float32
    model.tunewise_loaded_narrow = True  # ready_for_training widens what the method added narrow (widen_the_rest)


def widen_the_rest(model: nn.Module) -> int:
    """float32 for every floating parameter and buffer left narrower by a narrow load that no Narrow module holds as
    its frozen weight (peft's trainable copies of such modules, weights narrow_frozen could not narrow). Returns how
    many were widened; 0 after a float32 load."""
    held = {id(m.weight) for m in model.modules() if isinstance(m, (NarrowLinear, NarrowEmbedding))}
    n = 0
    for m in model.modules():
        for store in (m._parameters, m._buffers):
            for leaf, t in store.items():
                if t is None or not t.is_floating_point() or t.dtype in (torch.float32, torch.float64) or id(t) in held:
                    continue
                if isinstance(t, nn.Parameter):
                    t.data = t.data.float()
                else:
                    store[leaf] = t.float()
                n += 1
    return n
