"""Batched greedy/sampled generation that stops on the template's stop tokens (no LoadedModel needed).

Training's generation check and the infer stage share this: the same left padding, the same stop rule,
the same "did it stop on its own?" answer.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch

SKINNY_ROWS = 16  # up to this many positions at once, the head runs as W @ x.T (see skinny_head)


def _plain_linear(m) -> bool:
    """An nn.Linear, or training's NarrowLinear (a frozen weight kept in bf16: train/narrow.py)."""
    return type(m) is torch.nn.Linear or type(m).__name__ == "NarrowLinear"


def _head_linear(model):
    """The nn.Linear that computes the output logits (inside peft's wrappers too), or None."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None
    if _plain_linear(head):
        return head
    # Never `head.weight` on a wrapper: peft's TrainableTokensWrapper answers it by building the whole merged
    # vocabulary matrix (Gemma 3: 670 MB copied, 2 s of every generate call here). The head is the widest Linear
    # inside (a LoRA on the head holds narrow ones).
    return max((m for m in head.modules() if _plain_linear(m)), key=lambda m: m.weight.shape[0], default=None)


@contextmanager
def skinny_head(model):
    """Decoding on a CPU: the output head as W @ x.T for a few positions at a time.

    A decode step multiplies a handful of hidden states by the whole vocabulary matrix (Gemma 3: 262k x 640,
    670 MB in fp32), so it is bound by reading that matrix. On the CPUs measured here the BLAS call behind
    F.linear(x, W) for 4-8 rows took 2-3x as long as the same product written W @ x.T (4 rows: 313 -> 101 ms,
    8 rows: 392 -> 171 ms for Gemma's head); the result is the same up to float rounding. Inside this block the
    head takes the faster form when grads are off and there are at most SKINNY_ROWS positions.
    """
    lin = _head_linear(model)
    if lin is None or lin.weight.device.type != "cpu" or lin.weight.dim() != 2:
        yield
        return
    plain = lin.forward

    def forward(x):
        rows = x.numel() // x.shape[-1]
        # a bf16 head under bf16 autocast (training's generation check in mixed precision) multiplies as it is
        low = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == lin.weight.dtype
        if torch.is_grad_enabled() or rows > SKINNY_ROWS or (x.dtype != lin.weight.dtype and not low):
            return plain(x)
        out = (lin.weight @ x.reshape(rows, x.shape[-1]).T).T
        if lin.bias is not None:
            out = out + lin.bias
        return out.reshape(*x.shape[:-1], lin.weight.shape[0])

    lin.forward = forward
    try:
        yield
    finally:
        del lin.forward  # back to the class's forward


@torch.no_grad()
def generate_ids(model, prompts: list[list[int]], *, stop_ids: list[int], pad_id: int, max_new_tokens: int,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 batch_size: int = 8, streamer=None) -> list[tuple[list[int], bool]]:
    """One (new token ids, stopped) per prompt. Ids stop before the first stop token; stopped is False when
    the answer ran to max_new_tokens."""
    with skinny_head(model):
        return _generate_ids(model, prompts, stop_ids=stop_ids, pad_id=pad_id, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                             batch_size=batch_size, streamer=streamer)


SHARED_PREFIX_MIN = 16  # tokens: a batch whose prompts all begin alike computes that beginning once (shared_prefix)


def shared_prefix(model, chunk: list[list[int]], max_new_tokens: int) -> int:
    """How many leading tokens every prompt of `chunk` has in common and that may be computed once for all of them,
    or 0.

    Prompts of one run usually begin alike: the system prompt, the tool definitions (the tool-calling set's ~400 of
    ~450 tokens), the template's header. Computed once and copied to every row of the batch, their key/value
    cache costs one row's prefill instead of one per prompt. The rows then hold [shared | padding | own part], the
    padding masked out; positions come from the attention mask, so every token keeps the position it has alone.
    Not for prompt-learning adapters (their virtual tokens are a key/value cache of their own), nor where a
    sliding-window layer could see the padding in the middle take the place of a real token (prompt and answer
    longer than the window; within it every layer sees every earlier token, as it does alone)."""
    if len(chunk) < 2:
        return 0
    shortest = min(len(p) for p in chunk)
    first = chunk[0]
    n = 0
    while n < shortest - 1 and all(p[n] == first[n] for p in chunk):  # each row keeps one token of its own
        n += 1
    if n < SHARED_PREFIX_MIN:
        return 0
    conf = getattr(model, "active_peft_config", None)
    if conf is not None and getattr(conf, "is_prompt_learning", False):
        return 0
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    window = getattr(text, "sliding_window", None)
    sliding = any("sliding" in t for t in (getattr(text, "layer_types", None) or [])) or (
        window and getattr(text, "use_sliding_window", True))
    if sliding and window and max(len(p) for p in chunk) + max_new_tokens > window:
        return 0
    return n


def _prefix_cache(model, prefix: list[int], rows: int, device):
    """The key/value cache of `prefix`, computed once, copied for `rows` rows."""
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.get_base_model().forward
                                                                             if hasattr(model, "get_base_model")
                                                                             else model.forward).parameters else {}
    cache = model(input_ids=torch.tensor([prefix], device=device), use_cache=True, **kwargs).past_key_values
    cache.batch_repeat_interleave(rows)
    return cache


def _generate_ids(model, prompts, *, stop_ids, pad_id, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                  batch_size, streamer):
    out: list = [None] * len(prompts)
    device = next(model.parameters()).device
    # Longest first, so a batch holds prompts of like length and pads little; answers go back in the caller's order.
    # A streamer prints as it goes, so it keeps the caller's order.
    order = list(range(len(prompts)))
    if streamer is None:
        order.sort(key=lambda i: -len(prompts[i]))
    for b in range(0, len(order), batch_size):
        rows = order[b:b + batch_size]
        chunk = [prompts[i] for i in rows]
        shared = shared_prefix(model, chunk, max_new_tokens) if streamer is None else 0
        own = max(len(p) for p in chunk) - shared
        n = shared + own
        ids = torch.full((len(chunk), n), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):  # [shared | padding | own part]: every answer starts at column n
            start = n - (len(p) - shared)
            ids[i, :shared], mask[i, :shared] = torch.tensor(p[:shared], dtype=torch.long), 1
            ids[i, start:], mask[i, start:] = torch.tensor(p[shared:], dtype=torch.long), 1
        extra = {"past_key_values": _prefix_cache(model, chunk[0][:shared], len(chunk), device)} if shared else {}
        sample = temperature > 0
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature if sample else None, top_k=top_k if sample and top_k else None,
            top_p=top_p if sample else None, repetition_penalty=repetition_penalty,
            eos_token_id=list(stop_ids), pad_token_id=pad_id, streamer=streamer, use_cache=True, **extra,
        )
        for i, row in zip(rows, gen[:, n:].tolist()):
            new, stopped = [], False
            for t in row:
                if t in stop_ids:
                    stopped = True
                    break
                new.append(t)
            out[i] = (new, stopped)
    return out
