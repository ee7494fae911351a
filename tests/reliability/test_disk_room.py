"""Free disk is checked before training starts: a disk that cannot hold one checkpoint and the result stops
the run at once with a clear error (not at its first save, after the training time is spent); one that cannot
hold every checkpoint kept at once gets a warning. Found in CI: a full fine-tune's 2 GB optimizer state filled
the disk at the end of training."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch

from conftest import tiny_config, write_config
from tunewise.errors import RunError
from tunewise.train.checkpoints import checkpoint_bytes, disk_room


class _Tiny(torch.nn.Module):
    def __init__(self, train_all: bool):
        super().__init__()
        self.emb = torch.nn.Embedding(100, 10)          # 1,000 parameters
        self.head = torch.nn.Linear(10, 100, bias=False)
        self.head.weight = self.emb.weight              # tied: saved once
        self.lora = torch.nn.Linear(10, 10, bias=False)  # 100 parameters
        for p in (self.emb.weight,):
            p.requires_grad_(train_all)


def test_checkpoint_size_counts_saved_weights_and_optimizer_state():
    full, full_result = checkpoint_bytes(_Tiny(True), adapter_only=False, optimizer="adamw")
    assert full_result == 1100 * 4                       # tied weights once
    assert full == 1100 * 4 + 1100 * 8 + (1 << 20)       # AdamW: two fp32 moments per trainable parameter
    lora, lora_result = checkpoint_bytes(_Tiny(False), adapter_only=True, optimizer="adamw")
    assert lora_result == 100 * 4 and lora == 100 * 12 + (1 << 20)
    sgd, _ = checkpoint_bytes(_Tiny(False), adapter_only=True, optimizer="sgd")
    assert sgd == 100 * 8 + (1 << 20)


def test_too_little_disk_for_one_checkpoint_is_an_error_and_for_all_kept_a_warning(tmp_path):
    model = _Tiny(True)
    ckpt, result = checkpoint_bytes(model, adapter_only=False, optimizer="adamw")
    kw = dict(adapter_only=False, optimizer="adamw", total_steps=100, save_steps=10, keep=3, keeps_best=True)
    with pytest.raises(RunError) as e:
        disk_room(tmp_path / "runs" / "r", model, free=ckpt + result - 1, **kw)
    assert "not enough free disk" in str(e.value) and "run.root" in e.value.fix
    warn = disk_room(tmp_path, model, free=ckpt + result, **kw)
    assert "4 checkpoints" in warn and "save_total_limit" in warn        # 3 kept + the one being written
    assert disk_room(tmp_path, model, free=4 * ckpt + result, **kw) is None
    # a run that saves twice never holds more than two checkpoints, whatever the limit
    assert disk_room(tmp_path, model, free=2 * ckpt + result, **{**kw, "total_steps": 20}) is None


def test_train_on_a_full_disk_stops_before_training_with_a_clear_error(tmp_path, demo_jsonl, monkeypatch, capsys):
    from tunewise.cli import main
    from tunewise.train import checkpoints

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 1000, 1000))
    cfg = tiny_config(tmp_path, demo_jsonl, train={"max_steps": 4, "early_stopping": False})
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 2
    out = capsys.readouterr()
    assert "not enough free disk" in out.err and "Traceback" not in out.err
    assert "training 4 steps" not in out.out + out.err and not list(tmp_path.rglob("checkpoint-*"))
