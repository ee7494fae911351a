"""One peer's training run, in its own process so peak memory is its own. Prints one JSON line.

Every peer sees the same examples, model, LoRA (r=16 on all linear layers), effective batch, max_length,
epochs, learning rate and seed. Validation loss is computed afterwards by the same function for all.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LF_PYTHON = Path(os.environ.get("TUNEWISE_LF_PYTHON", ROOT / ".venv-llamafactory" / "bin" / "python"))
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
# Extra Trainer callbacks for the plain and TRL peers (bench/sweep.py adds its step clock here).
CALLBACKS: list = []


def _method(spec) -> str:
    """lora (the default), full, or qlora (4-bit NF4 double-quantised base, as tunewise's qlora loads it)."""
    return spec.get("method", "lora")


def _base_model(spec, path):
    from tunewise.models.load import load_model

    if _method(spec) != "qlora":
        return load_model(path)
    from transformers import BitsAndBytesConfig

    return load_model(path, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32))


def _load(spec):
    from tunewise.models.load import load_tokenizer, resolve_model

    path = resolve_model(spec["model"]).path
    return path, load_tokenizer(path)


def _encoded(spec, tok, records):
    from tunewise.templates import ChatTemplate
    from tunewise.templates.encode import encode_records

    tpl = ChatTemplate.from_json(spec["template"])
    return encode_records(tok, tpl, records, max_length=spec["max_length"])[0]


def _val_loss(model, tok, val_enc) -> float:
    from tunewise.evaluate.runner import mean_loss
    from tunewise.infer.generate import LoadedModel

    model.eval()
    return mean_loss(LoadedModel(model, tok, None, "bench"), val_enc, batch_size=8)


def _args(spec, out, **extra):
    return dict(output_dir=str(out), per_device_train_batch_size=spec["batch_size"], gradient_accumulation_steps=1,
                num_train_epochs=spec["epochs"], learning_rate=spec["lr"], lr_scheduler_type="linear", warmup_steps=0,
                logging_steps=10, save_strategy="no", report_to=[], seed=spec["seed"], data_seed=spec["seed"],
                use_cpu=True, disable_tqdm=True, max_steps=spec.get("max_steps", -1), **extra)


def run_tunewise(spec, out, train, val, packing: bool | str = "auto", frozen_dtype: str = "auto", stop_rows: bool = True,
                 precision: str = "auto"):
    from tunewise.config import load_config
    from tunewise.fileio import write_jsonl
    from tunewise.train.workflow import train as tw_train

    write_jsonl(out / "train.jsonl", train)
    cfg = load_config(None, base={
        "run": {"root": str(out), "name": "tw"}, "model": {"name_or_path": spec["model"]},
        "data": {"datasets": [{"path": str(out / "train.jsonl")}], "val_size": 0, "max_length": spec["max_length"],
                 "shuffle": False, "clean": {"dedup_exact": False, "dedup_near": False}},
        "template": {"name": spec["template_name"]},
        "method": {"name": "lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "train_stop_tokens": stop_rows},
        "train": {"num_epochs": spec["epochs"], "learning_rate": spec["lr"], "per_device_batch_size": spec["batch_size"],
                  "gradient_accumulation_steps": 1, "lr_scheduler": "linear", "warmup_ratio": 0.0, "logging_steps": 10,
                  "seed": spec["seed"], "packing": packing, "max_steps": spec.get("max_steps"), "frozen_dtype": frozen_dtype,
                  "precision": precision},
    })
    run = tw_train(cfg, overwrite=True)
    _training_done()
    summary = json.loads((run / "train_summary.json").read_text())
    from peft import PeftModel

    from tunewise.models.load import load_model

    path, tok = _load(spec)
    model = PeftModel.from_pretrained(load_model(path), run / "adapter")
    # train_runtime_s is trainer.train() only, timed like the other peers
    return summary["train_runtime_s"], summary["global_step"], model, tok


def run_plain(spec, out, train, val):
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    path, tok = _load(spec)
    model = _base_model(spec, path)
    if _method(spec) == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if _method(spec) != "full":
        model = get_peft_model(model, LoraConfig(**LORA))
    enc = _encoded(spec, tok, train)
    ds = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e.input_ids)} for e in enc]
    trainer = Trainer(model=model, args=TrainingArguments(**_args(spec, out)), train_dataset=ds,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
                      callbacks=list(CALLBACKS))
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    _training_done()
    return wall, trainer.state.global_step, model, tok


def run_trl(spec, out, train, val, best: bool, bf16: bool = True):
    """TRL's SFTTrainer; best: its speed settings here. bf16=False: float32 arithmetic."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from tunewise.templates import ChatTemplate

    path, tok = _load(spec)
    tok.chat_template = ChatTemplate.from_json(spec["template"]).chat_template
    # Prompt-completion rows: TRL's default then puts the loss on the answer only, as tunewise and the plain
    # peer do, so validation losses compare like for like.
    ds = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in train])
    extra = dict(max_length=spec["max_length"])
    args = _args(spec, out)
    if best:  # TRL's own speed settings that apply on a CPU: padding-free best-fit-decreasing packing
        extra.update(packing=True, packing_strategy="bfd", padding_free=True)
        # One packed row of max_length holds about batch_size examples of these lengths, so rows per step are
        # chosen to see as many examples per optimizer step as the other peers.
        mean_len = spec["train_tokens_per_epoch"] / max(1, len(train))
        args["per_device_train_batch_size"] = max(1, round(spec["batch_size"] * mean_len / spec["max_length"]))
    model = _base_model(spec, path)
    # SFTConfig's own default is bf16 mixed precision (autocast), also on a CPU, so each choice is set explicitly:
    # best takes bf16 only where this CPU multiplies it fast, by tunewise's own rule (without bf16 matrix units
    # autocast runs at about a tenth of fp32's speed); bf16=False is float32 arithmetic; defaults keep TRL's.
    if best:
        args["bf16"] = bool(bf16 and bf16_pays(model))
    elif not bf16:
        args["bf16"] = False
    cfg = SFTConfig(**args, **extra)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok,
                         peft_config=None if _method(spec) == "full" else LoraConfig(**LORA), callbacks=list(CALLBACKS))
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    _training_done()
    return wall, trainer.state.global_step, trainer.model, tok


def bf16_pays(model) -> bool:
    """Whether `train.precision: auto` would take bf16 for this model on this machine (train/precision.py)."""
    from tunewise.train.precision import resolve

    return resolve("auto", model).precision == "bf16"


def run_llamafactory(spec, out, train, val):
    """LLaMA-Factory's own CLI in its own virtual environment (`make bench-venvs`), with its matching gemma template.

    Its process is a child of this one, so its peak memory is RUSAGE_CHILDREN's; validation loss is computed
    here from the adapter it saved, by the same function as for every other peer.
    """
    import yaml

    cli = LF_PYTHON.parent / "llamafactory-cli"
    if not cli.exists():
        raise SystemExit(f"LLaMA-Factory is not installed at {LF_PYTHON.parent.parent}: run `make bench-venvs`")
    path, tok = _load(spec)
    data_dir, result = out / "data", out / "result"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "train.jsonl").write_text("".join(json.dumps({"messages": r["messages"]}, ensure_ascii=False) + "\n"
                                                  for r in train), encoding="utf-8")
    (data_dir / "dataset_info.json").write_text(json.dumps({"bench": {
        "file_name": "train.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}}}))
    cfg = {"model_name_or_path": str(path), "stage": "sft", "do_train": True, "finetuning_type": "lora",
           "lora_rank": LORA["r"], "lora_alpha": LORA["lora_alpha"], "lora_dropout": LORA["lora_dropout"],
           "lora_target": "all", "dataset": "bench", "dataset_dir": str(data_dir), "template": "gemma",
           "cutoff_len": spec["max_length"], "overwrite_cache": True, "output_dir": str(result),
           "per_device_train_batch_size": spec["batch_size"], "gradient_accumulation_steps": 1,
           "learning_rate": spec["lr"], "num_train_epochs": spec["epochs"], "lr_scheduler_type": "linear",
           "warmup_steps": 0, "logging_steps": 10, "save_strategy": "no", "report_to": "none", "seed": spec["seed"],
           "data_seed": spec["seed"], "bf16": False, "use_cpu": True, "disable_tqdm": True,
           "max_steps": spec.get("max_steps", -1), "plot_loss": False, "overwrite_output_dir": True}
    (out / "lf.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", DISABLE_VERSION_CHECK="1", CUDA_VISIBLE_DEVICES="", WANDB_DISABLED="true")
    p = subprocess.run([str(cli), "train", str(out / "lf.yaml")], env=env, capture_output=True, text=True)
    (out / "lf.log").write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"llamafactory-cli failed:\n{(p.stderr or p.stdout)[-2000:]}")
    global PEAK_MB
    PEAK_MB = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # its whole run is training
    state = json.loads((result / "trainer_state.json").read_text())
    wall = json.loads((result / "train_results.json").read_text())["train_runtime"]
    from peft import PeftModel

    from tunewise.models.load import load_model

    return wall, state["global_step"], PeftModel.from_pretrained(load_model(path), result), tok


PEAK_MB = None  # the training's peak RSS: set as training ends, before validation loads another copy of the model


def _training_done() -> None:
    """Peak RSS so far (VmHWM never falls): loading plus training, not the validation pass that follows.

    VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a peer started by a large parent (the sweep's,
    after a model build) would report the parent's peak; VmHWM belongs to this process's own address space."""
    from tunewise.fileio import peak_rss_bytes

    global PEAK_MB
    PEAK_MB = peak_rss_bytes() / 2**20


def main() -> None:
    peer, spec_path = sys.argv[1], Path(sys.argv[2])
    spec = json.loads(spec_path.read_text())
    torch.manual_seed(spec["seed"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    out = spec_path.parent / peer
    out.mkdir(parents=True, exist_ok=True)
    train = [json.loads(x) for x in Path(spec["train"]).read_text().splitlines()]
    val = [json.loads(x) for x in Path(spec["val"]).read_text().splitlines()]
    fn = {"tunewise": run_tunewise, "tunewise_nopack": lambda *a: run_tunewise(*a, packing=False),
          "tunewise_bf16base": lambda *a: run_tunewise(*a, frozen_dtype="bfloat16"), "plain": run_plain,
          "tunewise_nostoprows": lambda *a: run_tunewise(*a, stop_rows=False),
          "tunewise_fp32": lambda *a: run_tunewise(*a, precision="fp32"),
          "trl_best_fp32": lambda *a: run_trl(*a, best=True, bf16=False),
          "trl_default": lambda *a: run_trl(*a, best=False),
          "trl_best": lambda *a: run_trl(*a, best=True), "llamafactory": run_llamafactory}[peer]
    wall, steps, model, tok = fn(spec, out, train, val)
    epochs_tokens = spec["train_tokens"]  # the same examples for every peer: count real tokens once
    val_enc = _encoded(spec, tok, val)
    vloss = _val_loss(model, tok, val_enc)
    rss_mb = PEAK_MB
    print("BENCH " + json.dumps({"peer": peer, "wall_s": wall, "tokens": epochs_tokens, "tokens_per_s": epochs_tokens / wall,
                                 "val_loss": vloss, "peak_rss_mb": rss_mb,
                                 "optimizer_steps": steps}))


if __name__ == "__main__":
    main()
