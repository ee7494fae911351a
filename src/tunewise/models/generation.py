"""Batched greedy/sampled generation that stops on the template's stop tokens (no LoadedModel needed).

Training's generation check and the infer stage share this: the same left padding, the same stop rule,
the same "did it stop on its own?" answer.
"""

from __future__ import annotations

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


def _generate_ids(model, prompts, *, stop_ids, pad_id, max_new_tokens, temperature, top_k, top_p, repetition_penalty,
                  batch_size, streamer):
    out = []
    device = next(model.parameters()).device
    for b in range(0, len(prompts), batch_size):
        chunk = prompts[b:b + batch_size]
        n = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), n), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):  # left padding so every answer starts at column n
            ids[i, n - len(p):] = torch.tensor(p)
            mask[i, n - len(p):] = 1
        sample = temperature > 0
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=temperature if sample else None, top_k=top_k if sample and top_k else None,
            top_p=top_p if sample else None, repetition_penalty=repetition_penalty,
            eos_token_id=list(stop_ids), pad_token_id=pad_id, streamer=streamer, use_cache=True,
        )
        for row in gen[:, n:].tolist():
            new, stopped = [], False
            for t in row:
                if t in stop_ids:
                    stopped = True
                    break
                new.append(t)
            out.append((new, stopped))
    return out
