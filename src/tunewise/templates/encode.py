"""Conversation + template -> token ids and labels. Raw text -> packed pretraining blocks.

Labels are -100 everywhere except assistant turns (or everywhere with train_on_prompt). The
assistant span includes the end-of-turn token, so the model is always taught to stop.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from dataclasses import dataclass, field

from tunewise.templates import ChatTemplate

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated_tokens: int = 0


@dataclass
class EncodeStats:
    examples: int = 0
    truncated_examples: int = 0
    truncated_tokens: int = 0
    dropped_no_labels: int = 0
    total_tokens: int = 0
    supervised_tokens: int = 0
    lengths: list[int] = field(default_factory=list)
    stop_unsupervised: int = 0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "lengths"}
        if self.lengths:
            s = sorted(self.lengths)
            d.update(min_length=s[0], max_length=s[-1], mean_length=round(sum(s) / len(s), 1),
                     p95_length=s[int(0.95 * (len(s) - 1))])
        return d


def encode_messages(tokenizer, template: ChatTemplate, messages: list[dict], *, max_length: int,
                    train_on_prompt: bool = False, tools: list[dict] | None = None) -> Encoded:
    text, spans = template.assistant_spans(messages, tools)
    ids, labels = _labelled(tokenizer, text, spans, train_on_prompt)
    return _cut(ids, labels, max_length)


def _cut(ids: list[int], labels: list[int], max_length: int) -> Encoded:
    cut = max(0, len(ids) - max_length)
    if cut:
        ids, labels = ids[:max_length], labels[:max_length]
    return Encoded(ids, labels, cut)


def _labelled(tokenizer, text: str, spans: list[tuple[int, int]], train_on_prompt: bool = False):
    """(token ids, labels) of `text`: a token is supervised when it starts inside one of the character spans."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    return ids, _labels(ids, enc["offset_mapping"], spans, train_on_prompt)


def _labels(ids: list[int], offsets, spans: list[tuple[int, int]], train_on_prompt: bool) -> list[int]:
    if train_on_prompt:
        return list(ids)
    starts = [o[0] for o in offsets]
    if any(map(operator.gt, starts, starts[1:])):  # offsets that go back (unusual): test every span for every token
        return [tid if any(a <= st < b for a, b in spans) else IGNORE for tid, st in zip(ids, starts)]
    # Token starts in order: each span's tokens are one slice, found by bisection, copied in C.
    labels = [IGNORE] * len(ids)
    for a, b in spans:
        lo, hi = bisect_left(starts, a), bisect_left(starts, b)
        labels[lo:hi] = ids[lo:hi]
    return labels


def _tokenised(tokenizer, template: ChatTemplate, records: list[dict], batch: int = 512):
    """(token ids, offsets, assistant spans) of each record, tokenised `batch` texts per call."""
    for start in range(0, len(records), batch):
        rendered = [template.assistant_spans(r["messages"], r.get("tools")) for r in records[start:start + batch]]
        enc = tokenizer([text for text, _ in rendered], add_special_tokens=False, return_offsets_mapping=True,
                        return_attention_mask=False, return_token_type_ids=False)
        for ids, offsets, (_, spans) in zip(enc["input_ids"], enc["offset_mapping"], rendered):
            yield list(ids), offsets, spans


def encode_records(tokenizer, template: ChatTemplate, records: list[dict], *, max_length: int,
                   train_on_prompt: bool = False) -> tuple[list[Encoded], EncodeStats]:
    """Encode SFT records; examples left with no supervised token (all cut off) are dropped and counted.

    The texts are tokenised in one batched call (the same tokens as one call each, without the per-call overhead)."""
    stats = EncodeStats()
    out = []
    stop_ids = set(template.stop_token_ids) - {IGNORE}  # so a label equal to a stop id is a supervised one
    for ids, offsets, spans in _tokenised(tokenizer, template, records):
        e = _cut(ids, _labels(ids, offsets, spans, train_on_prompt), max_length)
        stats.examples += 1
        if e.truncated_tokens:
            stats.truncated_examples += 1
            stats.truncated_tokens += e.truncated_tokens
        sup = len(e.labels) - e.labels.count(IGNORE)  # list methods in C, not a loop over the tokens
        if sup == 0:
            stats.dropped_no_labels += 1
            continue
        if stop_ids and stop_ids.isdisjoint(e.labels) and not e.truncated_tokens:  # no supervised stop token
            stats.stop_unsupervised += 1
        stats.total_tokens += len(e.input_ids)
        stats.supervised_tokens += sup
        stats.lengths.append(len(e.input_ids))
        out.append(e)
    return out, stats


def encode_pretrain(tokenizer, records: list[dict], *, block_size: int) -> tuple[list[Encoded], EncodeStats]:
    """Continued pretraining: documents + EOS concatenated and cut into full blocks; loss on every token."""
    stats = EncodeStats()
    stream: list[int] = []
    # transformers 5 tokenizers no longer expose add_bos_token reliably (Gemma's says False yet adds
    # <bos>): ask the tokenizer what it does.
    add_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    for rec in records:
        ids = tokenizer(rec["text"], add_special_tokens=False)["input_ids"]
        if add_bos:
            ids = [tokenizer.bos_token_id] + ids
        stream += ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
        stats.examples += 1
    out = []
    for i in range(0, len(stream), block_size):
        block = stream[i: i + block_size]
        if len(block) < max(8, block_size // 8) and out:
            stats.truncated_tokens += len(block)  # a tiny tail is not worth a padded row
            continue
        out.append(Encoded(block, list(block)))
        stats.lengths.append(len(block))
        stats.total_tokens += len(block)
        stats.supervised_tokens += len(block)
    return out, stats


def render_preview(tokenizer, enc: Encoded, *, color: bool = True) -> str:
    """Decode an example with the supervised part marked: [[...]] (and green when color is on)."""
    parts, cur, cur_sup = [], [], None
    for tid, lab in zip(enc.input_ids, enc.labels):
        sup = lab != IGNORE
        if cur_sup is not None and sup != cur_sup:
            parts.append((cur_sup, cur))
            cur = []
        cur.append(tid)
        cur_sup = sup
    if cur:
        parts.append((cur_sup, cur))
    out = []
    for sup, ids in parts:
        text = tokenizer.decode(ids, skip_special_tokens=False)
        if sup:
            out.append(f"[green][[{_esc(text)}]][/green]" if color else f"[[{text}]]")
        else:
            out.append(_esc(text) if color else text)
    return "".join(out)


def _esc(s: str) -> str:
    return s.replace("[", "\\[")


# ------------------------------------------------------------------------------------------- preference
def encode_answer(tokenizer, template: ChatTemplate, messages: list[dict], *, max_length: int,
                  tools: list[dict] | None = None) -> Encoded | None:
    """A conversation with only its *last* assistant turn supervised (its content and end-of-turn), as the
    preference stages score it; the turns before it are the prompt. None when it is longer than max_length:
    a preference example is never cut, since a cut answer loses the end-of-turn it is compared on."""
    text, spans = template.assistant_spans(messages, tools)
    ids, labels = _labelled(tokenizer, text, spans[-1:])
    return Encoded(ids, labels) if len(ids) <= max_length else None


@dataclass
class PreferenceEncodeStats(EncodeStats):
    pairs: int = 0
    desirable: int = 0
    undesirable: int = 0
    dropped_too_long: int = 0
    dropped_prompt_differs: int = 0


def _prompt_len(e: Encoded) -> int:
    return next(i for i, y in enumerate(e.labels) if y != IGNORE)


def encode_preference(tokenizer, template: ChatTemplate, records: list[dict], *, stage: str, max_length: int,
                      first_index: int = 0) -> tuple[list[dict], PreferenceEncodeStats]:
    """Preference records (data/prepare.py's contract: an SFT record whose last assistant turn is the chosen
    answer, plus `rejected` text, or plus a boolean `label` for kto) -> token examples.

    Pairs: {"index", "record" (its position in `records`), "chosen": Encoded, "rejected": Encoded}, both rendered with the template SFT uses, the same
    prompt tokens in both, the end-of-turn supervised once in each. KTO: {"index", "answer": Encoded, "label"}.
    Examples longer than max_length are dropped (counted), never truncated."""
    stats = PreferenceEncodeStats()
    out: list[dict] = []
    for pos, rec in enumerate(records):
        stats.examples += 1
        msgs = rec["messages"]
        if stage == "kto":
            e = encode_answer(tokenizer, template, msgs, max_length=max_length)
            if e is None:
                stats.dropped_too_long += 1
                continue
            label = bool(rec["label"])
            stats.desirable += label
            stats.undesirable += not label
            parts = [e]
            out.append({"index": first_index + len(out), "record": pos, "answer": e, "label": label})
        else:
            c = encode_answer(tokenizer, template, msgs, max_length=max_length)
            r = encode_answer(tokenizer, template, [*msgs[:-1], {"role": "assistant", "content": rec["rejected"]}],
                              max_length=max_length)
            if c is None or r is None:
                stats.dropped_too_long += 1
                continue
            pc, pr = _prompt_len(c), _prompt_len(r)
            if pc != pr or c.input_ids[:pc] != r.input_ids[:pr]:
                stats.dropped_prompt_differs += 1  # the tokenizer merged the prompt's end with the answer's start
                continue
            stats.pairs += 1
            parts = [c, r]
            out.append({"index": first_index + len(out), "record": pos, "chosen": c, "rejected": r})
        for e in parts:
            stats.total_tokens += len(e.input_ids)
            stats.supervised_tokens += sum(1 for y in e.labels if y != IGNORE)
            stats.lengths.append(len(e.input_ids))
    if stage == "kto" and len(out) > 1:
        # KTO's reference point is the KL between policy and reference, estimated on mismatched examples: each
        # prompt with the next example's answer (fixed here, so a precomputed reference covers them too)
        for i, e in enumerate(out):
            a, b = e["answer"], out[(i + 1) % len(out)]["answer"]
            pa, pb = _prompt_len(a), _prompt_len(b)
            ids, labels = a.input_ids[:pa] + b.input_ids[pb:], [IGNORE] * pa + b.labels[pb:]
            e["kl"] = Encoded(ids[:max_length], labels[:max_length])
    return out, stats
