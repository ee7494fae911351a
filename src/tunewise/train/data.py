"""Records -> token datasets for the Trainer (SFT conversations or packed pretraining blocks)."""

from __future__ import annotations

from torch.utils.data import Dataset

from tunewise.data.prepare import is_mixed_in
from tunewise.errors import DataError
from tunewise.templates.encode import Encoded, encode_pretrain, encode_records


class TokenDataset(Dataset):
    def __init__(self, examples: list[Encoded], stats: dict | None = None):
        self.examples = examples
        self.stats = stats  # the encoding's token counts (templates/encode stats as a dict), where known

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        e = self.examples[i]
        return {"input_ids": e.input_ids, "labels": e.labels}

    @property
    def lengths(self) -> list[int]:
        return [len(e.input_ids) for e in self.examples]


def encode_records_for(cfg, tokenizer, template, records):
    if cfg.train.stage == "pretrain":
        texts = [r if "text" in r else {"text": "\n".join(m["content"] for m in r["messages"])} for r in records]
        return encode_pretrain(tokenizer, texts, block_size=cfg.data.max_length)
    bad = next((r for r in records if "messages" not in r and not is_mixed_in(r)), None)
    if bad is not None:
        raise DataError("plain-text records cannot be used for supervised fine-tuning", where=bad.get("where"),
                        fix="set train.stage: pretrain for raw text, or give conversations (alpaca/sharegpt/messages)")
    chats = [r for r in records if "messages" in r]
    out, stats = encode_records(tokenizer, template, chats, max_length=cfg.data.max_length,
                                train_on_prompt=cfg.data.train_on_prompt)
    texts = [r for r in records if "messages" not in r]
    if texts:
        # Replayed raw text of a previous continued-pretraining run keeps its language-model loss on every
        # token (that is what it was trained with), in blocks as long as the SFT examples may be.
        blocks, bstats = encode_pretrain(tokenizer, texts, block_size=cfg.data.max_length)
        out += blocks
        for k in ("examples", "truncated_tokens", "total_tokens", "supervised_tokens"):
            setattr(stats, k, getattr(stats, k) + getattr(bstats, k))
        stats.lengths += bstats.lengths
        stats.text_blocks = len(blocks)
    return out, stats


def encode_preference_for(cfg, tokenizer, template, records, first_index: int = 0):
    """Preference records -> pairs or KTO examples (train/preference.py), with a clear error for SFT data."""
    from tunewise.templates.encode import encode_preference

    stage = cfg.train.stage
    need = "label" if stage == "kto" else "rejected"
    bad = next((r for r in records if "messages" not in r or need not in r), None)
    if bad is not None:
        what = ("a boolean 'label' (desirable or not)" if stage == "kto" else
                "a rejected answer beside the chosen one")
        raise DataError(f"train.stage is {stage}, but this record has no {what}", where=bad.get("where"),
                        fix="give preference data (chosen/rejected pairs; kto: answers with a label), e.g. a "
                        "LLaMA-Factory dataset with \"ranking\": true, or set train.stage: sft for plain conversations")
    return encode_preference(tokenizer, template, records, stage=stage, max_length=cfg.data.max_length,
                             first_index=first_index)


def encode_for_training(cfg, tokenizer, template, prepared):
    from tunewise.config.schema import PREFERENCE_STAGES

    if cfg.train.stage in PREFERENCE_STAGES:
        from tunewise.train.preference import PreferenceDataset

        train_ex, train_stats = encode_preference_for(cfg, tokenizer, template, prepared.train)
        val_ex, val_stats = (encode_preference_for(cfg, tokenizer, template, prepared.val, first_index=len(train_ex))
                             if prepared.val else ([], None))
        if not train_ex:
            raise DataError(f"no preference example fits in data.max_length={cfg.data.max_length} "
                            f"({train_stats.dropped_too_long} longer; they are never cut: a cut answer loses its end)",
                            fix="raise data.max_length (`tunewise advise CONFIG` reads the lengths)")
        stats = {"train": train_stats.to_dict(), "val": val_stats.to_dict() if val_stats else None}
        return PreferenceDataset(train_ex, stats["train"]), PreferenceDataset(val_ex, stats["val"]), stats
    train_enc, train_stats = encode_records_for(cfg, tokenizer, template, prepared.train)
    val_enc, val_stats = encode_records_for(cfg, tokenizer, template, prepared.val) if prepared.val else ([], None)
    if not train_enc:
        raise DataError(
            "no training example has a supervised token left",
            fix=f"raise data.max_length (now {cfg.data.max_length}) — prompts longer than it leave no answer to learn",
        )
    stats = {"train": train_stats.to_dict(), "val": val_stats.to_dict() if val_stats else None}
    return TokenDataset(train_enc, stats["train"]), TokenDataset(val_enc, stats["val"]), stats
