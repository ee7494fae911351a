"""TunewiseTrainer: transformers Trainer with a faster loss, token accounting and a NaN guard.

The loss is the one place we override: logits are computed only at positions that carry a label,
in chunks. For a 262k-vocabulary model the full logits tensor is most of the step's time and memory;
SFT labels cover only the answers, so most of it is wasted. The result equals the plain loss.
"""

from __future__ import annotations

import math
import time
import weakref
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import Trainer

from tunewise.compat import malloc_trim, omp_parallel, openmp_runtime
from tunewise.methods.tokenrows import head_rows
from tunewise.templates.encode import IGNORE
from tunewise.train.narrow import NarrowLinear, widen_logits, widen_mm_t


def causal_lm(model):
    """The *ForCausalLM module under any peft wrapper, or None if the fast path does not apply."""
    try:
        from peft import PeftModel, PromptLearningConfig
    except ImportError:  # pragma: no cover
        PeftModel = None
    m = model
    if isinstance(m, torch.nn.parallel.DistributedDataParallel) or type(m).__name__.startswith(("FullyShardedDataParallel", "DeepSpeed")):
        return None  # wrappers sync gradients in their own forward: use the plain path through it
    if PeftModel is not None and isinstance(m, PeftModel):
        if isinstance(m.peft_config.get(m.active_adapter), PromptLearningConfig):
            return None  # prefix/prompt tuning feed virtual tokens through the wrapper's forward
        m = m.get_base_model()
    if not hasattr(m, "get_decoder") or m.get_output_embeddings() is None:
        return None
    return m


def head_cross_entropy(h: torch.Tensor, y: torch.Tensor, lm_head, softcap: float | None,
                       reduction: str = "sum") -> torch.Tensor:
    """Cross-entropy of the head's (soft-capped) logits of hidden states h against targets y, in float32."""
    logits = lm_head(h).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, y, reduction=reduction)


class FusedLinearCE(torch.autograd.Function):
    """sum_i CE(softcap(h_i W^T + b), y_i), one chunk of rows at a time, with the gradients made in forward.

    The loss is a scalar, so d loss / d h (and d / dW when the head trains) is known as soon as a chunk's
    softmax is: forward keeps only those gradients, and backward just scales them. Only one chunk's logits
    ever exist (chunk x vocab floats, reused in place for the softmax and its gradient), and nothing is
    recomputed, unlike a checkpointed chunk loop, which runs the head twice.

    rows_idx / rows_w: a few rows of W replaced by trainable ones (method.train_stop_tokens, methods/tokenrows.py):
    their logits are written into their columns and their gradient comes from the same softmax.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, y, chunk: int, softcap, rows_idx=None, rows_w=None, low=None):
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if want_w:
            low = None  # a trained head multiplies in its own precision
        want_b = bias is not None and ctx.needs_input_grad[2]
        want_r = rows_w is not None and ctx.needs_input_grad[7]
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if want_b else None
        grad_r = torch.zeros(rows_w.shape, dtype=torch.float32, device=rows_w.device) if want_r else None
        if rows_w is not None:
            rw = rows_w.float()
            rows_shift = (rw - weight[rows_idx].float()) if want_h else None  # W_eff = W + (rows - W[idx]) at idx
            rows_b = None if bias is None else bias[rows_idx].float()
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        # A frozen head stored narrower than the activations (train.frozen_dtype) is widened a block of rows at
        # a time, unless mixed precision multiplies it in its own dtype (low); a head as wide as them goes through
        # F.linear as before.
        narrow = low is None and weight.element_size() < h.element_size()
        # A float32 head writes every chunk's logits into one buffer (no fresh chunk x vocab allocation, and the
        # page faults that come with it, per chunk).
        reuse = low is not None or (not narrow and weight.dtype == torch.float32 and h.dtype == torch.float32)
        buf = torch.empty((min(chunk, h.shape[0]), weight.shape[0]), dtype=torch.float32, device=h.device) if reuse else None
        for i in range(0, h.shape[0], chunk):
            hc, yc = h[i:i + chunk], y[i:i + chunk]
            if low is not None:  # mixed precision: the matmul in low precision, the logits and softmax in float32
                z = buf[:hc.shape[0]]
                z.copy_(torch.mm(hc.to(low.dtype), low.t()))
                if bias is not None:
                    z.add_(bias)
            elif reuse:
                z = torch.mm(hc, weight.t(), out=buf[:hc.shape[0]])
                if bias is not None:
                    z.add_(bias)
            else:
                z = widen_logits(hc, weight, bias) if narrow else F.linear(hc, weight, bias).float()
            if rows_w is not None:
                z[:, rows_idx] = F.linear(hc.float(), rw, rows_b)
            t = None
            if softcap:
                t = torch.tanh(z.div_(softcap))
                z = torch.mul(t, softcap, out=z)
            # log-sum-exp and softmax from one exp pass, in place: max, subtract, exp, sum
            zy = z.gather(1, yc[:, None]).squeeze(1)
            m = z.amax(dim=1, keepdim=True)
            z.sub_(m).exp_()
            se = z.sum(dim=1, keepdim=True)
            total += (m.squeeze(1) + se.log().squeeze(1) - zy).sum()
            if not (want_h or want_w or want_b or want_r):
                continue
            g = z.div_(se)  # softmax, in place
            g[torch.arange(g.shape[0], device=g.device), yc] -= 1.0
            if t is not None:  # d softcap(z) / dz = 1 - tanh^2
                g.mul_(t.mul_(t).neg_().add_(1.0))
            if want_b:
                grad_b += g.sum(0)
            if want_h:
                if low is not None:
                    gh = (g.to(low.dtype) @ low).float()
                else:
                    gh = widen_mm_t(g, weight) if narrow else g.to(weight.dtype) @ weight
                if rows_w is not None:
                    gh = gh + (g[:, rows_idx] @ rows_shift).to(gh.dtype)
                grad_h[i:i + chunk] = gh
            if want_w:
                grad_w.addmm_(g.t(), hc.float())
            if want_r:
                grad_r.addmm_(g[:, rows_idx].t(), hc.float())
        ctx.save_for_backward(grad_h, None if grad_w is None else grad_w.to(weight.dtype),
                              None if grad_b is None else grad_b.to(bias.dtype),
                              None if grad_r is None else grad_r.to(rows_w.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_out):
        gh, gw, gb, gr = (None if g is None else g * grad_out.to(g.dtype) for g in ctx.saved_tensors)
        return gh, gw, gb, None, None, None, None, gr, None


def _fusable(head) -> bool:
    """A plain Linear head (no adapter or hook of its own): its weight and bias are all the head computes."""
    return type(head) in (torch.nn.Linear, NarrowLinear) and not head._forward_hooks and not head._forward_pre_hooks


def supervised_loss(model, inputs: dict, chunk_size: int = 128, num_items: torch.Tensor | int | None = None,
                    mixed: torch.dtype | None = None):
    """Causal-LM loss computed from hidden states at supervised positions only.

    Returns the loss summed over supervised tokens divided by `num_items` (the count over the whole
    accumulated batch, as Trainer provides) or by the local count. mixed: bf16/fp16 mixed precision (the
    Trainer's bf16/fp16): the decoder runs under autocast and a frozen head multiplies a low-precision copy of
    its weight (low_copy); the logits, softmax and loss stay float32.
    """
    lm = causal_lm(model)
    labels = inputs["labels"]
    kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
    device = kwargs["input_ids"].device.type
    with torch.autocast(device, dtype=mixed) if mixed is not None else nullcontext():
        hidden = lm.get_decoder()(**kwargs, use_cache=False).last_hidden_state
    with torch.autocast(device, enabled=False) if mixed is not None else nullcontext():
        return _head_loss(lm, hidden, labels, chunk_size, num_items, mixed)


def _head_loss(lm, hidden, labels, chunk_size, num_items, mixed):
    if mixed is not None:
        hidden = hidden.float()  # the decoder's output under autocast; the head below runs outside it
    y = labels[:, 1:]
    mask = y != IGNORE
    h = hidden[:, :-1][mask]
    y = y[mask]
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    head = lm.get_output_embeddings()
    rows = head_rows(head)  # a head with trainable token rows (method.train_stop_tokens)
    if rows is not None and _fusable(rows[0]):
        base, idx, rw = rows
        low = low_copy(base.weight, mixed) if mixed is not None else None
        total = FusedLinearCE.apply(h, base.weight, base.bias, y, chunk_size, softcap, idx, rw, low)
    elif _fusable(head):
        low = low_copy(head.weight, mixed) if mixed is not None and not head.weight.requires_grad else None
        total = FusedLinearCE.apply(h, head.weight, head.bias, y, chunk_size, softcap, None, None, low)
    elif h.shape[0] <= chunk_size:
        total = head_cross_entropy(h, y, head, softcap)
    else:
        total = h.new_zeros((), dtype=torch.float32)
        for i in range(0, h.shape[0], chunk_size):
            # Recompute each chunk's logits in backward instead of keeping them all alive.
            total = total + checkpoint(head_cross_entropy, h[i:i + chunk_size], y[i:i + chunk_size], head, softcap,
                                       use_reentrant=False)
    denom = num_items if num_items is not None else mask.sum()
    if torch.is_tensor(denom):
        denom = denom.to(total.device)
    return total / denom


_LOW_COPIES: dict[int, tuple] = {}  # id(weight) -> (weak reference to it, its version, dtype, the copy)


def low_copy(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`weight` in `dtype`, made once and kept while the weight is unchanged (a frozen head: Gemma 3's 262k x 640
    is 335 MB in bf16, against 670 MB cast on every chunk of every step otherwise)."""
    if weight.dtype == dtype:
        return weight
    have = _LOW_COPIES.get(id(weight))
    if have is not None and have[0]() is weight and have[1] == weight._version and have[2] == dtype:
        return have[3]
    for key in [k for k, v in _LOW_COPIES.items() if v[0]() is None]:  # weights gone since
        del _LOW_COPIES[key]
    with torch.no_grad():
        low = weight.detach().to(dtype)
    _LOW_COPIES[id(weight)] = (weakref.ref(weight), weight._version, dtype, low)
    return low


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so they leave the process's RSS."""
    import gc

    gc.collect()
    malloc_trim()  # not glibc: freed memory is reused, just not returned


def _on_every_thread(fn) -> bool:
    """Run fn() on each of torch's intra-op threads (an OpenMP parallel region); False where that cannot be done.

    The flush-to-zero mode is per thread, and torch's worker threads took theirs when they were created.
    """
    lib = openmp_runtime(prefer=str(Path(torch.__file__).parent))  # torch's own runtime, not another wheel's copy
    if lib is None:
        return False
    torch.zeros(1 << 16).add_(1)  # a parallel region first, so the pool exists at full size
    omp_parallel(lib, fn, torch.get_num_threads())
    return True


@contextmanager
def flush_denormals(on: bool = True):
    """Denormal floats count as zero inside the block (x86 FTZ/DAZ), the process default outside it.

    Late in a CPU run, tiny LoRA gradients, softmax tails and Adam moments turn denormal and every multiply
    on them takes a slow microcode path; flushing them changes values below ~1e-38 only. The mode is set on
    every torch thread: set on the calling thread alone, the worker threads' share of each op stayed slow
    (measured with a bf16 frozen base: steps 1.30 -> 1.70 s over a run, flat at 1.10-1.15 s with every thread).
    """
    if not on or not torch.set_flush_denormal(True):  # False where the CPU has no such mode
        yield
        return
    _on_every_thread(lambda: torch.set_flush_denormal(True))
    try:
        yield
    finally:
        _on_every_thread(lambda: torch.set_flush_denormal(False))
        torch.set_flush_denormal(False)


def l1_penalty(model, coef: float) -> torch.Tensor:
    """coef x sum |w| over trainable parameters."""
    return coef * sum(p.abs().sum() for p in model.parameters() if p.requires_grad)


def l2_penalty(model, coef: float) -> torch.Tensor:
    """coef x sum w^2 over trainable parameters (an L2 term in the loss, not decoupled weight decay)."""
    return coef * sum(p.pow(2).sum() for p in model.parameters() if p.requires_grad)


class TunewiseTrainer(Trainer):
    def __init__(self, *args, fast_loss: bool = True, loss_chunk_size: int = 128, l1: float = 0.0,
                 generation_check=None, l2: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.l1, self.l2 = l1, l2
        self.generation_check = generation_check  # train.behaviour.GenerationCheck or None
        self._gen_rates: dict | None = None
        self.gen_fresh_steps: set[int] = set()  # steps whose evaluation measured its generation rates (not carried)
        self.fast_loss = fast_loss and causal_lm(self.model) is not None
        self.loss_chunk_size = loss_chunk_size
        self.tokens_seen = 0
        self.nan_step: int | None = None
        self._t_last = time.perf_counter()
        self._tok_last = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pad = inputs.pop("pad_tokens", None)  # a packed row's padding segment (collate.PackCollator)
        held = inputs.pop("example_tokens", None)  # a shared-prefix row: the tokens its examples hold
        if model.training:
            mask = inputs.get("attention_mask")
            if held is not None:
                self.tokens_seen += int(held.sum())
            elif mask is not None:
                self.tokens_seen += int(mask.sum())
            else:
                self.tokens_seen += int(inputs["input_ids"].numel()) - (0 if pad is None else int(pad.sum()))
        if not self.fast_loss or causal_lm(model) is None:
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            loss, outputs = out if return_outputs else (out, None)
            scaled = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        else:
            # In evaluation each batch is averaged on its own (Trainer's count would span all devices).
            count = num_items_in_batch if (self.model_accepts_loss_kwargs and model.training) else None
            mixed = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None
            loss = supervised_loss(model, inputs, self.loss_chunk_size, count, mixed)
            outputs, scaled = {"loss": loss}, count is not None
        loss = self.with_penalty(model, loss, scaled)
        return (loss, outputs) if return_outputs else loss

    def with_penalty(self, model, loss, scaled: bool):
        """The loss plus train.l1 / train.l2 while training. Added once per optimizer step: when the data loss is
        already split across accumulation steps (`scaled`), the penalty is split the same way."""
        if (self.l1 <= 0 and self.l2 <= 0) or not model.training:
            return loss
        penalty = (l1_penalty(model, self.l1) if self.l1 > 0 else 0) + (l2_penalty(model, self.l2) if self.l2 > 0 else 0)
        return loss + penalty / (self.current_gradient_accumulation_steps if scaled else 1)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not torch.isfinite(loss).all() and self.nan_step is None:
            # Stop before the next save so the last good checkpoint stays the newest one.
            self.nan_step = self.state.global_step + 1
            self.control.should_training_stop = True
            self.control.should_save = False
        return loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "eval_loss" in logs and self.generation_check is not None:
            # The generation check runs once the validation loss is known, so its rates join this evaluation's
            # metrics, where the best-checkpoint choice and early stopping read `eval_guarded_loss`. An evaluation
            # whose loss is below the best guarded loss so far could become the best checkpoint: its rates are
            # measured unless the latest ones were clean (no penalty). Any other (the penalties only add) may carry
            # the latest rates forward when the checks have used up their share of the time
            # (train.generation_check_budget).
            from tunewise.train.distributed import all_reduce_sum

            best = self.state.best_metric
            candidate = best is None or logs["eval_loss"] < best
            # each process has its own clock: all take the same decision, or their rates (and early stopping) differ
            within = all_reduce_sum(float(self.generation_check.within_budget())) > 0
            self._gen_rates = self.generation_check.at_evaluation(self.model, candidate=candidate, within_budget=within)
            if self.generation_check.fresh:
                self.gen_fresh_steps.add(self.state.global_step)
        if "eval_loss" in logs and self._gen_rates is not None:
            from tunewise.train.behaviour import guarded_loss

            # In place: Trainer.evaluate logs the same dict it returns and hands to the callbacks.
            logs.update(self._gen_rates)
            logs["eval_guarded_loss"] = guarded_loss(logs["eval_loss"], self._gen_rates)
        if "loss" in logs:
            now = time.perf_counter()
            dt = now - self._t_last
            if dt > 0:
                from tunewise.train.distributed import all_reduce_sum

                tokens = all_reduce_sum(float(self.tokens_seen - self._tok_last))  # all ranks' tokens
                logs["tokens_per_s"] = round(tokens / dt, 1)
            self._t_last, self._tok_last = now, self.tokens_seen
            if self.nan_step is not None:
                logs["loss"] = math.nan
        super().log(logs, *args, **kwargs)

    # peft refuses to load prompt-learning adapters as trainable (resume) and fails on prefix projection
    # (best model, peft issue #2256); these load the saved virtual tokens into the live model instead.
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from tunewise.methods.prompt_learning import is_prompt_learning, load_checkpoint

        m = model if model is not None else self.model
        if is_prompt_learning(m):
            return load_checkpoint(m, resume_from_checkpoint, for_training=True)
        return super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        from tunewise.methods.prompt_learning import is_prompt_learning, load_checkpoint

        if is_prompt_learning(self.model) and self.state.best_model_checkpoint:
            return load_checkpoint(self.model, self.state.best_model_checkpoint, for_training=False)
        return super()._load_best_model()

    def _save_checkpoint(self, model, trial):
        if self.nan_step is not None:
            return  # never save weights that saw a NaN
        from tunewise.train.checkpoints import save_checkpoint

        save_checkpoint(self, super()._save_checkpoint, model, trial)  # staged, sealed, then renamed into place

    def _get_output_dir(self, trial) -> str:
        from tunewise.train.checkpoints import output_dir

        return output_dir(self, super()._get_output_dir(trial))
