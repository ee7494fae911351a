"""Generation that behaves like training: the run's template, its stop tokens, its sampling settings."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from tunewise.cpu import use_threads
from tunewise.runs import RunDir
from tunewise.templates import ChatTemplate


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    template: ChatTemplate
    label: str


def load_run_model(run: str | Path | RunDir, *, tuned: bool = True, checkpoint: str | Path | None = None) -> LoadedModel:
    """The base model (tuned=False) or the trained one (adapter applied / full weights), in eval mode."""

    rd = RunDir.open(run)
    cfg = rd.config
    pick_threads(cfg)
    if tuned:
        from tunewise.methods import load_trained

        # Every method's result (peft adapter, bottleneck adapter, full weights, a checkpoint) loads one way.
        model = load_trained(rd, checkpoint=checkpoint, dtype=cfg.model.dtype)
    else:
        model = load_start(rd)
    model.eval()
    return LoadedModel(model, rd.tokenizer, rd.template, "tuned" if tuned else "base")


def load_start(rd: RunDir):
    """The model a run started from: its base model, or, for a run that continued an adapter run
    (model.name_or_path: runs/<previous>), that run's trained model, so "before" in eval (and `chat --base`) is what
    this run changed, not the untouched base under both. A continued full-weight run starts from the previous
    run's saved weights, which is already the resolved model."""
    from tunewise.models.load import load_model

    cfg = rd.config
    prev = rd.resolved_model.previous_run
    if prev is not None and not (prev / "model").exists():
        from tunewise.methods import load_trained

        return load_trained(prev, dtype=cfg.model.dtype)
    return load_model(rd.resolved_model.path, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code)


def pick_threads(cfg) -> None:
    """Generation, like training, on the cores left free (chosen once per process, said once)."""
    threads, new = use_threads(cfg.train.num_threads)
    if new:
        print(f"[tunewise] {threads.line()}", file=sys.stderr)


def build_prompt(lm: LoadedModel, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    text = lm.template.render(messages, add_generation_prompt=True, tools=tools)
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate(lm: LoadedModel, conversations: list[list[dict]], *, max_new_tokens: int = 128, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, batch_size: int = 8,
             streamer=None, seed: int | None = None, tools: list[list[dict] | None] | None = None) -> list[dict]:
    """Generate one answer per conversation. Returns text, token ids, whether it stopped on its own. `tools`: the
    tools each conversation offers (one entry per conversation, None for none), rendered as in training."""
    from tunewise.models.generation import generate_ids

    tok = lm.tokenizer
    stop_ids = list(lm.template.stop_token_ids) or [tok.eos_token_id]
    pad = tok.pad_token_id if tok.pad_token_id is not None else stop_ids[0]
    if seed is not None:
        torch.manual_seed(seed)
    tools = tools or [None] * len(conversations)
    prompts = [build_prompt(lm, c, t) for c, t in zip(conversations, tools)]
    try:
        res = generate_ids(lm.model, prompts, stop_ids=stop_ids, pad_id=pad, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                           batch_size=batch_size, streamer=streamer)
    except RuntimeError as e:
        if "inf" not in str(e) and "nan" not in str(e):
            raise
        from tunewise.errors import RunError

        raise RunError(f"the {lm.label} model's outputs are not finite numbers ({e}): its weights blew up in training",
                       where=lm.label, fix="use an earlier checkpoint (--checkpoint) or train again with a lower "
                       "train.learning_rate") from None
    return [{"text": tok.decode(new, skip_special_tokens=True).strip(), "token_ids": new, "stopped": stopped,
             "hit_max_new_tokens": not stopped, "num_new_tokens": len(new)} for new, stopped in res]
