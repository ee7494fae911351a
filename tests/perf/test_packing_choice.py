"""train.packing: auto packs a batch only where that costs less than padding it (train/collate.PackingCost): a packed
row's attention grows with the square of the whole row, so examples of like length, long ones above all, cost
more packed. Both forms compute the same loss; a run that mixes them trains like an all-padded one."""

import pytest
import torch

from tunewise.train.collate import ATTENTION_WEIGHT, PackCollator, PackingCost

# per-token and per-pair costs of the two real models this rule was measured on (PackingCost.of)
SMOLLM2 = PackingCost(2.0 * 106.2e6, ATTENTION_WEIGHT * 4 * 9 * 64 * 30)
GEMMA3_270M = PackingCost(2.0 * 100.0e6, ATTENTION_WEIGHT * 4 * 4 * 256 * 18)


def test_long_examples_of_like_length_pad_and_mixed_lengths_pack():
    assert SMOLLM2.pads_cheaper([505, 521])  # the tool-calling set: measured 1.37x faster padded
    assert not GEMMA3_270M.pads_cheaper([60, 120, 200, 475])  # the headline benchmark's mix: 1.32x faster packed
    assert not SMOLLM2.pads_cheaper([40, 300])  # padding would nearly double the tokens
    assert not SMOLLM2.pads_cheaper([512])  # one example: nothing to choose


def test_costs_come_from_the_models_shape(tiny_model_dirs):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["tiny-llama"])
    conf = model.config
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    body = sum(p.numel() for p in model.parameters()) - emb.numel() - (0 if head is emb else head.numel())
    cost = PackingCost.of(model)
    assert cost.per_token == 2.0 * body
    heads, layers = conf.num_attention_heads, conf.num_hidden_layers
    assert cost.per_pair == ATTENTION_WEIGHT * 4 * heads * (conf.hidden_size // heads) * layers



def test_a_4bit_model_costs_what_its_full_precision_twin_does(tiny_model_dirs):
    """bitsandbytes packs two 4-bit weights to a byte, so a qlora model's tensors report half their elements; the
    cost is read from the config and counts the true parameters."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = tiny_model_dirs["tiny-llama"]
    full = PackingCost.of(AutoModelForCausalLM.from_pretrained(path))
    q4 = AutoModelForCausalLM.from_pretrained(path, quantization_config=BitsAndBytesConfig(load_in_4bit=True))
    assert sum(p.numel() for p in q4.parameters()) < sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    cost = PackingCost.of(q4)
    assert (cost.per_token, cost.per_pair) == (full.per_token, full.per_pair)

def _feats(lengths):
    return [{"input_ids": list(range(3, 3 + n)), "labels": [-100] * (n // 2) + list(range(3 + n // 2, 3 + n))}
            for n in lengths]


def test_the_collator_chooses_per_batch():
    like, mixed = _feats([505, 521]), _feats([40, 300])
    auto = PackCollator(0, cost=SMOLLM2)
    padded = auto(like)
    assert padded["input_ids"].shape == (2, 521) and "attention_mask" in padded and "position_ids" not in padded
    packed = auto(mixed)
    assert packed["input_ids"].shape == (1, 340) and "position_ids" in packed
    assert PackCollator(0)(like)["input_ids"].shape == (1, 1026)  # train.packing: true packs every batch
    rounded = PackCollator(0, round_rows=True, cost=SMOLLM2)(like)  # bf16 on a CPU: rows keep few shapes
    assert rounded["input_ids"].shape[0] == 1


def _losses(tmp_path, demo_jsonl, name, packing):
    from conftest import read_metrics, tiny_config, write_config

    from tunewise.cli import main

    cfg = tiny_config(tmp_path / name, demo_jsonl, train={"packing": packing, "max_steps": 6, "logging_steps": 1,
                                                         "per_device_batch_size": 4, "gradient_accumulation_steps": 2,
                                                         "eval_steps": 100})
    cfg["data"]["val_size"] = 0
    assert main(["train", str(write_config(tmp_path / f"{name}.yaml", cfg))]) == 0
    return [r["loss"] for r in read_metrics(tmp_path / name / "runs" / "t") if "loss" in r]


def test_a_run_mixing_packed_and_padded_batches_trains_like_an_all_padded_one(tmp_path, tiny_model_dirs, demo_jsonl,
                                                                              monkeypatch):
    seen = []

    def alternate(self, lengths):  # every other batch padded, within one optimizer step too (accumulation 2)
        seen.append(len(seen) % 2 == 0)
        return seen[-1]

    padded = _losses(tmp_path, demo_jsonl, "padded", False)
    monkeypatch.setattr(PackingCost, "pads_cheaper", alternate)
    mixed = _losses(tmp_path, demo_jsonl, "mixed", "auto")
    assert len(seen) >= 12 and True in seen and False in seen
    assert len(mixed) == len(padded) == 6
    assert mixed == pytest.approx(padded, rel=2e-4)
    assert torch.isfinite(torch.tensor(mixed)).all()
