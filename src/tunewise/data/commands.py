"""`tunewise data prepare` and `tunewise data preview`."""

from __future__ import annotations

import sys
from pathlib import Path

from tunewise.runs import run_dir_for


def prepare_command(cfg, out: str | None = None) -> Path:
    from tunewise.data.prepare import prepare
    from tunewise.fileio import read_json, write_json
    from tunewise.train.data import encode_for_training
    from tunewise.train.workflow import tokenizer_and_template

    target = Path(out) if out else run_dir_for(cfg)
    prepared = prepare(cfg, target)
    _, tokenizer, template = tokenizer_and_template(cfg)
    train_ds, _, enc = encode_for_training(cfg, tokenizer, template, prepared)
    from tunewise.data.report import format_summary, length_histogram, write_length_histogram

    lengths = [len(e.input_ids) for e in train_ds.examples]
    stats = {**read_json(target / "data" / "stats.json"), "tokens": enc, "length_histogram": length_histogram(lengths)}
    write_json(target / "data" / "stats.json", stats)
    write_length_histogram(lengths, target / "data" / "lengths.png", cfg.data.max_length)
    print(format_summary(stats), file=sys.stderr)
    return target / "data"


def encode_sample(cfg, n: int):
    """The first n training records as training encodes them: (tokenizer, template, records, encoded, stats).

    `data preview` and the web board's preview both show exactly this.
    """
    from tunewise.data.prepare import prepare
    from tunewise.templates.encode import encode_pretrain, encode_records
    from tunewise.train.workflow import tokenizer_and_template

    prepared = prepare(cfg, None)
    _, tokenizer, template = tokenizer_and_template(cfg)
    records = prepared.train[:n]
    if cfg.train.stage == "pretrain":
        encoded, st = encode_pretrain(tokenizer, records, block_size=cfg.data.max_length)
    else:
        encoded, st = encode_records(tokenizer, template, records, max_length=cfg.data.max_length,
                                     train_on_prompt=cfg.data.train_on_prompt)
    return tokenizer, template, records, encoded, {**prepared.stats, "tokens": {"train": st.to_dict()}}


def preview_command(cfg, n: int = 3, color: bool = True) -> None:
    from rich.console import Console

    from tunewise.templates.encode import render_preview

    tokenizer, template, records, encoded, _ = encode_sample(cfg, n)
    console = Console(highlight=False, no_color=not color, soft_wrap=True)
    console.print(f"template: [bold]{template.name}[/bold] ({template.source}); stop tokens: {template.stop_strings}")
    console.print("supervised tokens (the loss is computed on them) are shown as [[...]]" + (" in green" if color else ""))
    for i, (rec, enc) in enumerate(zip(records, encoded)):
        console.rule(f"example {i + 1} — {rec.get('where', '')} — {len(enc.input_ids)} tokens, "
                     f"{sum(1 for x in enc.labels if x != -100)} supervised")
        console.print(render_preview(tokenizer, enc, color=color))
