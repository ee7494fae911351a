"""Continued pretraining (train.stage: pretrain) on raw text, then SFT from its result, through the CLI."""

from __future__ import annotations

import json

from conftest import read_metrics, tiny_config, write_config
from tunewise.cli import main
from tunewise.config.schema import Config


def test_raw_text_is_packed_into_full_blocks_with_loss_on_every_token(tiny_model_dirs):
    from tunewise.data.prepare import PreparedData
    from tunewise.models.load import load_tokenizer
    from tunewise.train.data import encode_for_training

    tok = load_tokenizer(tiny_model_dirs["tiny-llama"])
    docs = [{"text": f"Document {i}: fine-tuning adapts a pretrained model. 微调让模型适应任务。"} for i in range(12)]
    cfg = Config.model_validate({"train": {"stage": "pretrain"}, "data": {"max_length": 32}})
    train, _, stats = encode_for_training(cfg, tok, None, PreparedData(docs, []))
    bos = [tok.bos_token_id] if tok("a")["input_ids"][:1] == [tok.bos_token_id] else []  # as the tokenizer itself does
    stream = []
    for d in docs:
        stream += bos + tok(d["text"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    blocks = [e.input_ids for e in train.examples]
    assert all(len(b) == 32 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 32
    assert sum(blocks, []) == stream[:sum(map(len, blocks))]          # documents back to back, none lost inside
    assert all(e.labels == e.input_ids for e in train.examples)      # causal-LM loss on every token
    assert stats["train"]["supervised_tokens"] == stats["train"]["total_tokens"] == sum(map(len, blocks))


def test_pretrain_full_then_sft_replays_raw_text(tmp_path, tiny_model_dirs):
    txt = tmp_path / "domain.txt"
    txt.write_text("\n\n".join(f"Paragraph {i}: the reactor coolant loop runs at 290 degrees. 反应堆冷却回路温度为290度。"
                               for i in range(40)), encoding="utf-8")
    jsonl = tmp_path / "manual.jsonl"
    jsonl.write_text("".join(json.dumps({"text": f"Manual page {i}: check the coolant pump before start-up."}) + "\n"
                             for i in range(20)), encoding="utf-8")
    pt_cfg = tiny_config(tmp_path, txt, method={"name": "full"}, data={"max_length": 48, "val_size": 0.1},
                         train={"stage": "pretrain", "max_steps": 8, "learning_rate": 3e-3, "logging_steps": 1, "eval_steps": 4})
    pt_cfg["data"]["datasets"].append({"path": str(jsonl)})
    assert main(["train", str(write_config(tmp_path / "pt.yaml", pt_cfg)), "--set", "run.name=pt"]) == 0
    pt = tmp_path / "runs" / "pt"
    tok = json.loads((pt / "data" / "stats.json").read_text())["tokens"]["train"]
    assert tok["max_length"] == 48 and tok["supervised_tokens"] == tok["total_tokens"]
    sources = {json.loads(x)["source"] for x in (pt / "data" / "train.jsonl").read_text().splitlines()}
    assert sources == {"domain", "manual"}  # txt paragraphs and jsonl `text` records
    losses = [m["loss"] for m in read_metrics(pt) if "loss" in m]
    assert losses[-1] < losses[0]
    assert (pt / "model" / "model.safetensors").exists()

    # SFT from the pretraining result, with replay of its raw text (kept as language-model blocks)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"instruction": f"Coolant temperature {i}?", "output": "290 degrees."}) + "\n"
                          for i in range(20)), encoding="utf-8")
    sft_cfg = tiny_config(tmp_path, qa, model=str(pt), data={"val_size": 0, "replay_ratio": 0.5},
                          train={"max_steps": 2})
    assert main(["train", str(write_config(tmp_path / "sft.yaml", sft_cfg)), "--set", "run.name=sft"]) == 0
    sft = tmp_path / "runs" / "sft"
    summary = json.loads((sft / "train_summary.json").read_text())
    assert summary["base_model"] == str((pt / "model").resolve())   # SFT started from the pretrained weights
    stats = json.loads((sft / "data" / "stats.json").read_text())
    assert sum(v["records"] for k, v in stats["mix"].items() if k.startswith("replay:")) == 10
    assert stats["tokens"]["train"]["text_blocks"] > 0
    assert (sft / "adapter" / "adapter_model.safetensors").exists()


def test_plain_text_in_sft_is_still_refused(tmp_path, tiny_model_dirs, capsys):
    txt = tmp_path / "notes.txt"
    txt.write_text("Some raw notes.\n\nMore raw notes.\n\nAnd more.", encoding="utf-8")
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, txt, data={"val_size": 0}, train={"max_steps": 1}))
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "train.stage: pretrain" in err and "Traceback" not in err
