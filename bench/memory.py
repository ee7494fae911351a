"""`python -m bench.memory`: predicted vs measured peak training memory, written to bench/MEMORY.md.

Each case runs a few real training steps in a fresh process (tunewise.advise.measure) and reads its
peak RSS (ru_maxrss); the prediction is `tunewise advise`'s estimate for the same config on this
machine. Default cases: Gemma 3 270M (gemma3-270m, fp32 on CPU) with LoRA and with full fine-tuning
on the bundled demo data, plus a small Llama-shaped model (full fine-tuning) built on the fly.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
GiB = 1024 ** 3


def _demo(path: Path) -> Path:
    from tunewise.samples.demo import write_demo_dataset

    return write_demo_dataset(path)


def small_llama(out: Path) -> Path:
    """A Llama-shaped model big enough that its tensors, not the interpreter, dominate (19.6M params)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tunewise.models.tiny import build_tokenizer

    if (out / "model.safetensors").exists():
        return out
    tok = build_tokenizer()
    conf = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                       num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(conf).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def case_config(folder: Path, model: str, method: str, batch: int, max_length: int, template: str | None) -> Path:
    data = _demo(folder / "demo.jsonl")
    cfg = {"model": {"name_or_path": model},
           "data": {"datasets": [str(data)], "val_size": 0, "max_length": max_length, "clean": {"dedup_near": False}},
           "method": {"name": method, "lora_r": 16, "lora_alpha": 32},
           "train": {"per_device_batch_size": batch, "gradient_accumulation_steps": 1}}
    if template:
        cfg["template"] = {"name": template}
    path = folder / f"{Path(model).name}-{method}-b{batch}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def predict(config: Path) -> dict:
    from tunewise.advise.advise import advise_config
    from tunewise.hardware import detect_hardware
    from tunewise.config import load_config

    cfg = load_config(config)
    r = advise_config(cfg, detect_hardware())
    return r["memory"][cfg.method.name]


def run(cases: list[tuple], steps: int, out_md: Path) -> list[dict]:
    from tunewise.train import memory as mem
    from tunewise.advise.measure import measure

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, model, method, batch, max_length, template in cases:
            if model == "small-llama":
                model = str(small_llama(tmp / "small-llama"))
            cfg = case_config(tmp, model, method, batch, max_length, template)
            p = predict(cfg)
            t0 = time.time()
            m = measure(cfg, steps)
            pred_total, meas = p["total"], m["peak"]
            pred_train = p["total"] - mem.CPU_OVERHEAD  # the estimate without the interpreter itself
            row = {"case": label, "method": method, "batch": batch, "longest": m["longest"],
                   "pred_total": pred_total, "measured_peak": meas, "err_total": pred_total / meas - 1,
                   "pred_delta": pred_train, "measured_delta": m["peak_delta"], "err_delta": pred_train / m["peak_delta"] - 1,
                   "base_rss": m["base_rss"], "trainable": m["trainable_params"], "seconds": round(time.time() - t0)}
            rows.append(row)
            print(f"{label:<28} predicted {pred_total / GiB:6.2f} GiB  measured {meas / GiB:6.2f} GiB  "
                  f"({100 * row['err_total']:+.0f}%)   above imports: {pred_train / GiB:.2f} vs {m['peak_delta'] / GiB:.2f} GiB "
                  f"({100 * row['err_delta']:+.0f}%)", flush=True)
    write_md(rows, steps, out_md)
    return rows


def write_md(rows: list[dict], steps: int, out: Path) -> None:
    from tunewise.train import memory as mem

    import torch
    import transformers

    lines = ["# Peak training memory: `tunewise advise` estimate vs measured", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
             f"transformers {transformers.__version__}; CPU, fp32. Each case: {steps} training steps in a fresh process "
             "(`tunewise.advise.measure`), peak = ru_maxrss; 'above imports' subtracts the RSS after importing "
             "torch/transformers/peft/tunewise.", "",
             "| case | method | batch | longest row | predicted | measured peak | error | predicted above imports | measured above imports | error | trainable params |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['method']} | {r['batch']} | {r['longest']} | {r['pred_total'] / GiB:.2f} GiB | "
                     f"{r['measured_peak'] / GiB:.2f} GiB | {100 * r['err_total']:+.0f}% | {r['pred_delta'] / GiB:.2f} GiB | "
                     f"{r['measured_delta'] / GiB:.2f} GiB | {100 * r['err_delta']:+.0f}% | {r['trainable']:,} |")
    lines += ["", "Calibration stated in `src/tunewise/train/memory.py`: a constant per-process overhead of "
              f"{mem.CPU_OVERHEAD / 2**20:.0f} MiB (measured RSS after imports; the tokenizer is freed before training), "
              f"activation coefficients A_HIDDEN={mem.A_HIDDEN}, A_INTER={mem.A_INTER}, A_KV={mem.A_KV} (counted, then checked here). "
              "GPU numbers (bf16, CUDA context) are not measured on this machine.", ""]
    out.write_text("\n".join(lines), encoding="utf-8")


CASES = {
    "gemma3-lora": ("Gemma 3 270M, LoRA r16", "gemma3-270m", "lora", 8, 128, "gemma"),
    "gemma3-full": ("Gemma 3 270M, full", "gemma3-270m", "full", 8, 128, "gemma"),
    "small-full": ("Llama-shaped 19.6M, full", "small-llama", "full", 8, 128, None),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "MEMORY.md"))
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run([CASES[c] for c in a.cases], a.steps, Path(a.out))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    sys.exit(main())
