"""The remaining knobs: inspect, L1, NEFTune, dropout overrides, schedulers with restarts, augmentation."""

import json
import random

import pytest
import torch

from conftest import read_metrics, run_cli, tiny_config, write_config
from tunewise.cli import main
from tunewise.config import load_config


@pytest.mark.parametrize("model,tied,template", [("tiny-llama", False, False), ("tiny-qwen2", True, True),
                                                 ("tiny-gemma3", True, False)])
def test_inspect_json(tiny_model_dirs, model, tied, template):
    code, out, err = run_cli("inspect", model, "--json")
    assert code == 0, err
    s = json.loads(out)
    from transformers import AutoModelForCausalLM

    real = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[model])
    assert s["parameters"]["total"] == sum(p.numel() for p in real.parameters())
    assert s["parameters"]["tied_embeddings"] is tied
    assert s["layers"] == 2 and s["hidden_size"] == 64 and s["kv_heads"] == 2
    names = {m["name"]: m for m in s["linear_modules"]}
    assert names["q_proj"]["count"] == 2 and names["q_proj"]["kind"] == "attention"
    assert set(s["lora_targets_hint"]) >= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert s["chat_template"] is template


def test_inspect_human_output_names_lora_targets(tiny_model_dirs):
    code, out, _ = run_cli("inspect", "tiny-llama")
    assert code == 0 and "q_proj" in out and "base model" in out


def _trainer(tmp_path, demo_jsonl, **train):
    from tunewise.data.prepare import prepare
    from tunewise.models.load import tokenizer_and_template
    from tunewise.train.assemble import build_trainer, load_for_training
    from tunewise.train.collate import PadCollator
    from tunewise.train.data import encode_for_training

    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train=train)))
    resolved, tok, tpl = tokenizer_and_template(cfg)
    tr, va, _ = encode_for_training(cfg, tok, tpl, prepare(cfg, None))
    torch.manual_seed(0)
    model = load_for_training(cfg, resolved)  # the assembly `tunewise train` uses
    trainer, _plan = build_trainer(cfg, model, tr, None, out=tmp_path / "run", pad_id=tok.pad_token_id, report=False)
    batch = PadCollator(tok.pad_token_id)([tr[i] for i in range(4)])
    return trainer, model, batch, trainer.args


def test_l1_adds_exactly_the_penalty(tmp_path, tiny_model_dirs, demo_jsonl):
    trainer, model, batch, _ = _trainer(tmp_path, demo_jsonl, l1=0.01)
    model.train()
    with_l1 = float(trainer.compute_loss(model, dict(batch)))
    trainer.l1 = 0.0
    without = float(trainer.compute_loss(model, dict(batch)))
    expected = 0.01 * float(sum(p.abs().sum() for p in model.parameters() if p.requires_grad))
    assert expected > 0 and with_l1 - without == pytest.approx(expected, rel=1e-4)
    model.eval()  # evaluation loss stays the pure data loss
    trainer.l1 = 0.01
    assert float(trainer.compute_loss(model, dict(batch))) == pytest.approx(without, rel=1e-5)


def test_l2_adds_exactly_the_squared_penalty_and_only_in_training(tmp_path, tiny_model_dirs, demo_jsonl):
    trainer, model, batch, _ = _trainer(tmp_path, demo_jsonl, l2=0.01)
    model.train()
    with_l2 = float(trainer.compute_loss(model, dict(batch)))
    trainer.l2 = 0.0
    without = float(trainer.compute_loss(model, dict(batch)))
    expected = 0.01 * float(sum(p.pow(2).sum() for p in model.parameters() if p.requires_grad))
    assert expected > 0 and with_l2 - without == pytest.approx(expected, rel=1e-4)
    model.eval()
    trainer.l2 = 0.01
    assert float(trainer.compute_loss(model, dict(batch))) == pytest.approx(without, rel=1e-5)


@pytest.mark.parametrize("name,cls,state", [("adamw", "AdamW", "exp_avg"), ("sgd", "SGD", "momentum_buffer"),
                                            ("adafactor", "Adafactor", "exp_avg_sq_row"), ("adamw_8bit", "AdamW", "state1")])
def test_each_optimizer_reaches_the_trainer_and_steps(tmp_path, tiny_model_dirs, demo_jsonl, name, cls, state):
    trainer, model, batch, args = _trainer(tmp_path, demo_jsonl, optimizer=name, momentum=0.8, weight_decay=0.01)
    opt = trainer.create_optimizer()
    assert type(opt).__name__ == cls and (name != "adamw_8bit" or type(opt).__module__.startswith("bitsandbytes"))
    if name == "sgd":
        assert opt.defaults["momentum"] == 0.8
    assert any(g["weight_decay"] == 0.01 for g in opt.param_groups)  # decoupled decay reaches every choice
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.train()
    trainer.compute_loss(model, dict(batch)).backward()
    opt.step()
    p = next(p for p in model.parameters() if p.requires_grad)
    assert state in opt.state[p]  # the optimiser's own state: it is the chosen one that stepped
    assert any(not torch.equal(before[n], q) for n, q in model.named_parameters() if n in before)


def test_paged_optimizer_is_refused_on_cpu_with_the_alternative(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    from tunewise.errors import ConfigError
    from tunewise.train.optim import check_optimizer

    with pytest.raises(ConfigError) as e:
        check_optimizer("paged_adamw_8bit", cuda=False, has_bitsandbytes=True)
    assert e.value.where == "train.optimizer" and "adamw_8bit" in e.value.fix and "CPU" in str(e.value)
    assert check_optimizer("paged_adamw_8bit", cuda=True, has_bitsandbytes=True).optim == "paged_adamw_8bit"
    with pytest.raises(ConfigError, match="train.optimizer=adamw_8bit needs the bitsandbytes package") as e:
        check_optimizer("adamw_8bit", cuda=True, has_bitsandbytes=False)
    assert e.value.where == "train.optimizer" and "bitsandbytes" in e.value.fix
    assert check_optimizer("adamw_8bit", cuda=False, has_bitsandbytes=True).optim == "adamw_bnb_8bit"
    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, train={"optimizer": "paged_adamw_8bit"}))
    assert main(["train", str(cfg)]) == 2  # refused before any work
    assert "nothing to page" in capsys.readouterr().err and not (tmp_path / "runs" / "t" / "data").exists()


def test_optimizer_changes_the_memory_estimate():
    from tunewise.hardware import cpu_only
    from tunewise.train.memory import MethodParams, Shape, estimate
    from tunewise.models.facts import synthetic_facts

    facts = synthetic_facts(layers=4, hidden=256, intermediate=688, heads=4, vocab=32000, tied=False)
    est = {o: estimate(facts, "full", MethodParams(), Shape(batch=4, seq=128, optimizer=o), cpu_only(64))
           for o in ("adamw", "sgd", "adafactor", "adamw_8bit")}
    n = est["adamw"].trainable_params
    assert est["adamw"].optimizer == 8 * n and est["sgd"].optimizer == 4 * n and est["adamw_8bit"].optimizer == 2 * n
    assert est["adafactor"].optimizer < est["adamw_8bit"].optimizer
    assert est["sgd"].total < est["adamw"].total


def test_neftune_noise_only_in_training_mode(tmp_path, tiny_model_dirs, demo_jsonl):
    from transformers.integrations.neftune import activate_neftune, deactivate_neftune

    trainer, model, batch, args = _trainer(tmp_path, demo_jsonl, neftune_alpha=5.0)
    assert args.neftune_noise_alpha == 5.0 and trainer.neftune_noise_alpha == 5.0
    handle = activate_neftune(trainer.model, 5.0, trainer.accelerator)
    emb = trainer.model.get_input_embeddings()
    ids = batch["input_ids"][:1]
    emb.train()
    a, b = emb(ids), emb(ids)
    assert not torch.equal(a, b)
    emb.eval()
    assert torch.equal(emb(ids), emb(ids))
    deactivate_neftune(trainer.model, handle, trainer.accelerator)


def test_dropout_overrides(tmp_path, tiny_model_dirs, capsys):
    from tunewise.train.assemble import dropout_overrides

    cfg = load_config(write_config(tmp_path / "c.yaml", {"model": {"name_or_path": "tiny-llama", "attention_dropout": 0.1,
                                                                   "hidden_dropout": 0.2}}))
    kw = dropout_overrides(cfg.model, tiny_model_dirs["tiny-llama"])
    assert kw == {"attention_dropout": 0.1}
    assert "hidden_dropout=0.2 ignored" in capsys.readouterr().err
    from tunewise.models.load import load_model

    assert load_model(tiny_model_dirs["tiny-llama"], **kw).config.attention_dropout == 0.1


def test_cosine_with_restarts_and_polynomial(tmp_path, tiny_model_dirs, demo_jsonl):
    cfg = tiny_config(tmp_path, demo_jsonl, train={"lr_scheduler": "cosine_with_restarts", "scheduler_cycles": 2,
                                                    "max_steps": 12, "logging_steps": 1, "warmup_steps": 0,
                                                    "warmup_ratio": 0.0, "early_stopping": False})
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    lrs = [r["lr"] for r in read_metrics(tmp_path / "runs" / "t") if "lr" in r]
    rises = sum(1 for a, b in zip(lrs, lrs[1:]) if b > a * 1.5)
    assert rises >= 1  # the learning rate restarts
    cfg["train"].update(lr_scheduler="polynomial")
    cfg["run"]["name"] = "poly"
    assert main(["train", str(write_config(tmp_path / "p.yaml", cfg))]) == 0
    lrs = [r["lr"] for r in read_metrics(tmp_path / "runs" / "poly") if "lr" in r]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))


def test_augmentation_zh_en_deterministic_prompts_only():
    from tunewise.config.schema import AugmentConfig
    from tunewise.data.augment import augment_records, random_deletion, synonym_replacement, load_synonyms

    cfg = AugmentConfig(enabled=True, prob=0.3, copies=2)
    recs = [{"messages": [{"role": "user", "content": "请帮助我解释这个问题，我非常喜欢学习。"},
                          {"role": "assistant", "content": "好的，我来回答。"}], "source": "zh"},
            {"messages": [{"role": "user", "content": "Please help me explain this good question quickly."},
                          {"role": "assistant", "content": "Sure, here is a short answer."}], "source": "en"}]
    a = augment_records(recs, cfg, seed=7)
    b = augment_records(recs, cfg, seed=7)
    assert a == b and len(a) >= 3
    assert all(x["augmented"] for x in a)
    for x in a:
        orig = next(r for r in recs if r["source"] == x["source"])
        assert x["messages"][1] == orig["messages"][1]  # answers untouched
        assert x["messages"][0]["content"] != orig["messages"][0]["content"]
    assert augment_records(recs, cfg, seed=8) != a
    syn = load_synonyms()
    out = synonym_replacement("我非常喜欢", 1.0, random.Random(0), syn)
    assert out != "我非常喜欢" and out.startswith("我")
    assert len(random_deletion("one two three four five six", 0.5, random.Random(1)).split()) < 6
    assert augment_records(recs, AugmentConfig(), seed=1) == []  # off by default


def test_augmented_count_in_data_report(tmp_path, tiny_model_dirs, demo_jsonl):
    from tunewise.data.prepare import prepare

    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_config(
        tmp_path, demo_jsonl, data={"augment": {"enabled": True, "copies": 1, "prob": 0.2}})))
    p = prepare(cfg, None)
    n_aug = p.stats["augmented"]
    assert n_aug > 0 and sum(1 for r in p.train if r.get("augmented")) == n_aug
    assert not any(r.get("augmented") for r in p.val)
