"""Incremental training: `model.name_or_path: runs/<previous>` continues that run's adapter or weights on new
data, mixes back data.replay_ratio of its training data and data.general_ratio of general data.

Continuation runs use a learning rate of 1e-9, so after their steps the weights still equal what they
started from (to 1e-6): that shows exactly what each run continued from.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config, write_config
from tunewise.cli import main


def _write(path, n, prefix):
    path.write_text("".join(json.dumps({"instruction": f"{prefix} question {i}", "output": f"{prefix} answer {i}"}) + "\n"
                            for i in range(n)), encoding="utf-8")
    return path


def _train(tmp_path, name, data_path, model="tiny-llama", **sections):
    sections.setdefault("train", {})
    sections["train"] = {"max_steps": 2, "eval_steps": 2, **sections["train"]}
    cfg = write_config(tmp_path / f"{name}.yaml", tiny_config(tmp_path, data_path, model, **sections))
    assert main(["train", str(cfg), "--set", f"run.name={name}"]) == 0
    return tmp_path / "runs" / name


def _sources(run):
    lines = (run / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(x)["source"] for x in lines if x.strip()]


def _close(a: dict, b: dict, keys=None):
    keys = keys or a.keys()
    return all(torch.allclose(a[k], b[k], atol=1e-6) for k in keys)


@pytest.fixture
def lora_run(tmp_path, tiny_model_dirs, demo_jsonl):
    return _train(tmp_path, "first", demo_jsonl, data={"val_size": 0})


def test_lora_continues_adapter_with_replay_and_general_counts(tmp_path, lora_run):
    new = _write(tmp_path / "new.jsonl", 40, "new")
    general = _write(tmp_path / "general.jsonl", 7, "general")  # fewer than asked: sampled with repetition
    second = _train(tmp_path, "second", new, model=str(lora_run), train={"learning_rate": 1e-9},
                    data={"val_size": 0, "replay_ratio": 0.25, "general": [str(general)], "general_ratio": 0.5})
    src = _sources(second)
    assert src.count("new") == 40
    assert sum(s.startswith("replay:") for s in src) == 10      # 0.25 x 40
    assert sum(s.startswith("general:") for s in src) == 20     # 0.5 x 40
    old = {json.dumps(json.loads(x)["messages"]) for x in (lora_run / "data" / "train.jsonl").read_text().splitlines()}
    replayed = [json.loads(x) for x in (second / "data" / "train.jsonl").read_text().splitlines()
                if json.loads(x)["source"].startswith("replay:")]
    assert all(json.dumps(r["messages"]) in old for r in replayed)  # replay is the previous run's own training data
    a = load_file(lora_run / "adapter" / "adapter_model.safetensors")
    b = load_file(second / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and _close(a, b)  # started from the previous adapter (a fresh one has lora_B = 0)
    assert any(k.endswith("lora_B.weight") and a[k].abs().sum() > 0 for k in a)

    # a third run replays only original data of the second (not its replayed or general records)
    third = _train(tmp_path, "third", _write(tmp_path / "more.jsonl", 10, "more"), model=str(second),
                   data={"val_size": 0, "replay_ratio": 4.0})
    replay3 = [s for s in _sources(third) if s.startswith("replay:")]
    assert len(replay3) == 40 and set(replay3) == {"replay:new"}


def test_full_runs_continue_weights_and_fold_lora(tmp_path, tiny_model_dirs, demo_jsonl, lora_run):
    base = load_file(tiny_model_dirs["tiny-llama"] / "model.safetensors")
    full = _train(tmp_path, "full1", demo_jsonl, method={"name": "full"}, train={"learning_rate": 1e-3},
                  data={"val_size": 0})
    w1 = load_file(full / "model" / "model.safetensors")
    assert not _close(w1, base)
    # full on top of a full run: starts from its weights
    full2 = _train(tmp_path, "full2", _write(tmp_path / "n.jsonl", 16, "n"), model=str(full), method={"name": "full"},
                   train={"learning_rate": 1e-9}, data={"val_size": 0, "replay_ratio": 0.5})
    assert _close(load_file(full2 / "model" / "model.safetensors"), w1)
    assert sum(s.startswith("replay:") for s in _sources(full2)) == 8
    summary = json.loads((full2 / "train_summary.json").read_text())
    assert summary["base_model"] == str((full / "model").resolve())

    # full on top of a LoRA run: the adapter is folded into the weights first
    folded = _train(tmp_path, "folded", demo_jsonl, model=str(lora_run), method={"name": "full"},
                    train={"learning_rate": 1e-9}, data={"val_size": 0, "replay_ratio": 0})
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dirs["tiny-llama"]),
                                       lora_run / "adapter").merge_and_unload().state_dict()
    got = load_file(folded / "model" / "model.safetensors")
    assert _close(got, merged, keys=got.keys()) and not _close(got, base)


def test_method_that_cannot_continue_the_previous_adapter_says_how(tmp_path, lora_run, capsys):
    cfg = write_config(tmp_path / "p.yaml", tiny_config(tmp_path, lora_run / "data" / "train.jsonl", str(lora_run),
                                                        method={"name": "prompt"}, train={"max_steps": 1}))
    assert main(["train", str(cfg), "--set", "run.name=p"]) == 2
    err = capsys.readouterr().err
    assert "cannot continue a run whose result is a lora adapter" in err and "method.name: lora or qlora" in err
    assert "Traceback" not in err
