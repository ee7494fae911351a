"""The Configure tab's logic: form values -> the validated Config -> YAML, plus the data preview.

The YAML the board saves is `dump_config` of the Config that `load_config` validated, so it is exactly
what `tunewise train` takes (and `load_config` of that file gives the same Config back).
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

from tunewise.config import dump_config, load_config
from tunewise.config.schema import Config

MODEL_ALIASES = ["tiny-llama", "tiny-qwen2", "tiny-gemma3", "gemma3-270m", "smollm2-135m-instruct"]

# The parameters the form shows, in order: (dotted key, widget kind). Everything else is reachable
# through the "more settings" box (section.key=value lines) and listed in the all-parameters table.
FORM_PARAMS: list[tuple[str, str]] = [
    ("train.stage", "choice"),
    ("method.name", "choice"),
    ("method.lora_r", "int"),
    ("method.lora_alpha", "float"),
    ("method.lora_dropout", "float"),
    ("train.learning_rate", "float"),
    ("train.num_epochs", "float_or_none"),
    ("train.max_steps", "int_or_none"),
    ("train.per_device_batch_size", "int"),
    ("train.gradient_accumulation_steps", "int_or_none"),
    ("train.lr_scheduler", "choice"),
    ("train.warmup_ratio", "float"),
    ("train.weight_decay", "float"),
    ("train.logging_steps", "int"),
    ("train.eval_steps", "int_or_none"),
    ("train.early_stopping", "bool"),
    ("train.packing", "auto_bool"),
    ("train.gradient_checkpointing", "auto_bool"),
    ("train.seed", "int"),
    ("data.max_length", "int"),
    ("data.val_size", "float"),
    ("data.train_on_prompt", "bool"),
    ("template.name", "choice"),
    ("preference.beta", "float_or_none"),
    ("preference.loss_type", "choice"),
]


def choices_for(key: str) -> list[str]:
    if key == "method.name":
        from tunewise import methods

        return [m.name for m in methods.all_methods()]
    if key == "template.name":
        from tunewise.templates import registry_names

        return ["auto", "tokenizer"] + registry_names()
    from tunewise.ui.knowledge import schema_entries

    return [str(x) for x in schema_entries()[key].get("allowed", [])]


def form_default(key: str) -> Any:
    """The value the form starts with: the schema default, LR shown as the resolved default."""
    from tunewise.ui.knowledge import schema_entries

    if key == "train.learning_rate":
        return 2e-4
    v = schema_entries()[key]["default"]
    return 0 if v is None and key in ("train.max_steps", "train.eval_steps", "train.num_epochs", "train.gradient_accumulation_steps") else v


def _coerce(kind: str, v: Any) -> Any:
    if kind == "int_or_none":
        return None if v in (None, "", 0) else int(v)
    if kind == "float_or_none":  # 0 or empty: the automatic value (train.num_epochs)
        return None if v in (None, "", 0) else float(v)
    if kind == "int":
        return None if v in (None, "") else int(v)
    if kind == "float":
        return None if v in (None, "") else float(v)
    if kind == "bool":
        return bool(v)
    if kind == "auto_bool":  # "auto", "true", "false" (a dropdown)
        return v if v in (None, "", "auto") else str(v).lower() == "true"
    return v


def form_to_dict(*, name: str, root: str, model: str, data_path: str, values: dict[str, Any]) -> dict:
    """Nested config dict from the form's values (keys as in FORM_PARAMS)."""
    kinds = dict(FORM_PARAMS)
    data: dict = {"run": {"name": (name or "").strip() or None, "root": str(Path(root).resolve())},
                  "model": {"name_or_path": (model or "").strip() or "tiny-llama"},
                  "data": {"datasets": [{"path": data_path.strip()}] if (data_path or "").strip() else []}}
    for key, value in values.items():
        section, field = key.split(".", 1)
        v = _coerce(kinds.get(key, ""), value)
        if v is None and kinds.get(key) not in ("int_or_none", "float_or_none") and key != "train.learning_rate":
            continue  # an emptied box means "use the default"
        data.setdefault(section, {})[field] = v
    return data


def parse_more(text: str) -> list[str]:
    """The "more settings" box: one section.key=value per line; blank lines and # comments ignored."""
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def build_config(form: dict, more: str = "") -> Config:
    """Validate exactly as `tunewise train` does (load_config: schema, overrides, derived defaults)."""
    return load_config(None, parse_more(more), base=form)


def save_config(cfg: Config, root: str | Path) -> Path:
    """Write the config YAML where the board keeps its configs: <root>/.board/<run name>.yaml."""
    from tunewise.fileio import write_text

    path = Path(root).resolve() / ".board" / f"{cfg.run.name}.yaml"
    write_text(path, dump_config(cfg))
    return path


def store_upload(src: str | Path, root: str | Path) -> Path:
    """Copy an uploaded file out of gradio's temporary cache into <root>/.board/data/ (it must outlive it)."""
    src = Path(src)
    dst = Path(root).resolve() / ".board" / "data" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def write_demo_data(root: str | Path) -> Path:
    from tunewise.samples.demo import write_demo_dataset

    return write_demo_dataset(Path(root).resolve() / ".board" / "data" / "demo.jsonl")


# ----------------------------------------------------------------------------- data preview
def segments(tokenizer, enc) -> list[tuple[str, bool]]:
    """Decoded text of an encoded example, split where supervision switches on or off."""
    parts: list[tuple[bool, list[int]]] = []
    for tid, lab in zip(enc.input_ids, enc.labels):
        sup = lab != -100
        if parts and parts[-1][0] == sup:
            parts[-1][1].append(tid)
        else:
            parts.append((sup, [tid]))
    return [(tokenizer.decode(ids, skip_special_tokens=False), sup) for sup, ids in parts]


def preview(cfg: Config, n: int = 3, stats_cap: int = 5000) -> dict:
    """Examples with the supervised span marked, the data report and token lengths (like `data preview`)."""
    from tunewise.data.commands import encode_sample
    from tunewise.data.report import format_summary

    tokenizer, template, records, encoded, stats = encode_sample(cfg, stats_cap)
    st_lengths = [len(e.input_ids) for e in encoded]
    examples = []
    for i, enc in enumerate(encoded[:n]):
        where = records[i].get("where", "") if cfg.train.stage != "pretrain" else ""
        examples.append({"where": where, "tokens": len(enc.input_ids),
                         "supervised": sum(1 for x in enc.labels if x != -100),
                         "segments": segments(tokenizer, enc)})
    return {"template": f"{template.name} ({template.source})", "stop": list(template.stop_strings),
            "examples": examples, "summary": format_summary(stats), "lengths": st_lengths, "stats": stats}


def preview_html(p: dict, lang: str) -> str:
    zh = lang == "zh"
    head = (f"模板 <b>{html.escape(p['template'])}</b>；停止符 {html.escape(str(p['stop']))}。"
            "<mark class='tw-sup'>绿色</mark> 部分参与损失计算（被训练），其余只作为上下文。") if zh else (
            f"template <b>{html.escape(p['template'])}</b>; stop tokens {html.escape(str(p['stop']))}. "
            "The <mark class='tw-sup'>green</mark> part is supervised (the loss is computed on it); the rest is context.")
    out = [f"<div class='tw-preview'><p>{head}</p>"]
    from tunewise.templates.system import SystemChoice, describe

    if (sysd := (p.get("stats") or {}).get("system")) and (note := describe(SystemChoice(**sysd), "zh" if zh else "en")):
        out.append(f"<p class='tw-note'>{html.escape(note)}</p>")
    for i, ex in enumerate(p["examples"], 1):
        label = (f"样本 {i} — {ex['tokens']} 个词元，其中 {ex['supervised']} 个被监督" if zh
                 else f"example {i} — {ex['tokens']} tokens, {ex['supervised']} supervised")
        body = "".join(f"<mark class='tw-sup'>{html.escape(t)}</mark>" if sup else html.escape(t)
                       for t, sup in ex["segments"])
        out.append(f"<div class='tw-example'><div class='tw-ex-head'>{html.escape(label)}"
                   f" <small>{html.escape(ex['where'])}</small></div><pre class='tw-ex-body'>{body}</pre></div>")
    out.append("</div>")
    return "".join(out)
