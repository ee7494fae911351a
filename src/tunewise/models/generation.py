"""Batched greedy/sampled generation that stops on the template's stop tokens (no LoadedModel needed).

Training's generation check and the infer stage share this: the same left padding, the same stop rule,
the same "did it stop on its own?" answer.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def generate_ids(model, prompts: list[list[int]], *, stop_ids: list[int], pad_id: int, max_new_tokens: int,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 batch_size: int = 8, streamer=None) -> list[tuple[list[int], bool]]:
    """One (new token ids, stopped) per prompt. Ids stop before the first stop token; stopped is False when
    the answer ran to max_new_tokens."""
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
