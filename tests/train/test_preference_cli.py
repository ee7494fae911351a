"""A preference run as a LLaMA-Factory user makes one: SFT first, then DPO on `ranking: true` data from
dataset_info.json, continuing the SFT run directory; preview, curves, eval and export work on it."""

import json

import pytest
from conftest import read_metrics, write_config

from tunewise.cli import main

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Delhi", "Seoul", "Hanoi", "Dakar", "Accra"]


def _dataset_info(root):
    sft = [{"instruction": f"Tell me about {c}.", "input": "", "output": f"Sure! {c} is a lovely city."} for c in CITIES]
    pairs = [{"instruction": f"Question {i}: what do you think of {c}?", "input": "",
              "chosen": f"Sure! {c} is a lovely city.", "rejected": "No. Go away."}
             for i, c in enumerate(CITIES * 4)]
    (root / "sft.json").write_text(json.dumps(sft, ensure_ascii=False), encoding="utf-8")
    (root / "pairs.json").write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    info = {"my_sft": {"file_name": "sft.json"},
            "my_pairs": {"file_name": "pairs.json", "ranking": True,
                         "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}}
    (root / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return root / "dataset_info.json"


def _config(root, name, dataset, **train):
    return write_config(root / f"{name}.yaml", {
        "run": {"root": str(root / "runs"), "name": name},
        "model": {"name_or_path": "tiny-llama"},
        "data": {"datasets": [{"name": dataset}], "dataset_info": str(root / "dataset_info.json"), "val_size": 0.2,
                 "max_length": 64, "clean": {"dedup_near": False}},
        "method": {"name": "lora", "lora_r": 8, "lora_alpha": 16},
        "train": {"per_device_batch_size": 4, "gradient_accumulation_steps": 1, "logging_steps": 2, "eval_steps": 6,
                  "max_steps": 12, "generation_check": False, **train},
    })


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dirs, module_home):
    root = tmp_path_factory.mktemp("pref")
    _dataset_info(root)
    assert main(["train", str(_config(root, "sft", "my_sft", learning_rate=2e-3))]) == 0
    cfg = _config(root, "dpo", "my_pairs", stage="dpo", learning_rate=5e-3)
    assert main(["train", str(cfg), "--set", f"model.name_or_path={root / 'runs' / 'sft'}"]) == 0
    return root


def test_dpo_continues_the_sft_run_and_logs_its_rewards(runs, capsys):
    run = runs / "runs" / "dpo"
    rows = read_metrics(run)
    steps = [r for r in rows if "loss" in r]
    assert steps and all("rewards/margins" in r and "logps/chosen" in r for r in steps)
    evals = [r for r in rows if "val_loss" in r]
    assert evals and "eval_rewards/accuracies" in evals[-1]
    assert evals[-1]["eval_rewards/accuracies"] > 0.5
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["global_step"] == 12 and (run / "adapter" / "adapter_config.json").exists()
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats["tokens"]["train"]["pairs"] > 0 and stats["tokens"]["train"]["dropped_prompt_differs"] == 0


def test_preview_marks_both_answers_with_one_end_of_turn_each(runs, capsys):
    cfg = _config(runs, "dpo", "my_pairs", stage="dpo")
    assert main(["data", "preview", str(cfg), "-n", "1", "--no-color"]) == 0
    out = capsys.readouterr().out
    assert "example 1 — chosen" in out and "example 2 — rejected" in out
    chosen, rejected = out.split("example 2 — rejected")
    assert "[[Sure!" in chosen and "[[No. Go away." in rejected
    assert chosen.count("<|eot_id|>]]") == 1 and rejected.count("<|eot_id|>]]") == 1


def test_curves_eval_and_export_work_on_the_preference_run(runs, capsys):
    run = runs / "runs" / "dpo"
    assert main(["curves", str(run)]) == 0
    assert json.loads((run / "diagnosis.json").read_text())["verdict"]
    from PIL import Image

    # curves.png gains a panel for the rewards (accuracy, margins) beside the loss
    sft_png = runs / "runs" / "sft" / "curves.png"
    assert Image.open(run / "curves.png").size[1] > Image.open(sft_png).size[1]
    assert main(["eval", str(run), "--no-forgetting", "--max-samples", "6"]) == 0
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["after"]["sets"]["val"]["pair_accuracy"] >= report["before"]["sets"]["val"]["pair_accuracy"]
    assert main(["export", str(run), "--gguf", "f16", "--verify-tokens", "8", "--verify-prompts", "2"]) == 0
    assert json.loads((run / "export" / "verify.json").read_text())["status"] == "PASS"


def test_pair_data_under_sft_names_the_stage(runs, capsys):
    cfg = _config(runs, "oops", "my_pairs")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "train.stage: dpo" in err
