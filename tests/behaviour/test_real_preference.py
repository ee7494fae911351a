"""DPO on a real model, after an SFT run and continuing its run directory (#24): on held-out preference pairs
the trained model ranks the chosen answers above the rejected ones (accuracy above 0.5, a wider margin than the
base model's) and its answers do not grow longer or stop stopping."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli, write_config


@pytest.mark.real_model
def test_dpo_after_sft_prefers_the_chosen_answers_without_growing_them(tmp_path, real_home):
    from tunewise.samples.preference import preference_pairs, write_preference_dataset

    data = tmp_path / "data"
    info = write_preference_dataset(data)
    sft = [{"instruction": p["instruction"], "input": "", "output": p["chosen"]} for p in preference_pairs()]
    (data / "sft.json").write_text(json.dumps(sft, ensure_ascii=False), encoding="utf-8")
    runs = tmp_path / "runs"
    common = {"per_device_batch_size": 4, "gradient_accumulation_steps": 1, "logging_steps": 4, "generation_check": False}
    sft_cfg = {"run": {"root": str(runs), "name": "sft"}, "model": {"name_or_path": "smollm2-135m-instruct"},
               "data": {"datasets": [str(data / "sft.json")], "val_size": 0, "max_length": 96},
               "train": {"max_steps": 8, **common}}
    code, _, err = run_cli("train", str(write_config(tmp_path / "sft.yaml", sft_cfg)))
    assert code == 0, err[-3000:]
    dpo_cfg = {"run": {"root": str(runs), "name": "dpo"}, "model": {"name_or_path": str(runs / "sft")},
               "data": {"dataset_info": str(info), "datasets": [{"name": "answer_pairs"}], "val_size": 0.2,
                        "max_length": 96},
               "train": {"stage": "dpo", "max_steps": 24, "eval_steps": 12, **common}}
    code, _, err = run_cli("train", str(write_config(tmp_path / "dpo.yaml", dpo_cfg)))
    assert code == 0, err[-3000:]
    assert "reference model's log-probabilities, computed once" in err  # a continued adapter: precomputed
    rows = [json.loads(line) for line in (runs / "dpo" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval_rewards/margins" in r]
    assert evals and evals[-1]["eval_rewards/margins"] > 0 and evals[-1]["eval_rewards/accuracies"] > 0.5

    code, _, err = run_cli("eval", str(runs / "dpo"), "--data", str(data / "heldout.json"), "--no-forgetting",
                           "--max-new-tokens", "48")
    assert code == 0, err[-3000:]
    rep = json.loads((runs / "dpo" / "eval" / "report.json").read_text())
    before, after = rep["before"]["sets"]["heldout"], rep["after"]["sets"]["heldout"]
    assert after["pairs"] == 12 and after["pair_accuracy"] > 0.5
    assert after["pair_margin_per_token"] > before["pair_margin_per_token"]
    assert after["avg_answer_tokens"] <= 1.2 * before["avg_answer_tokens"]
    assert after["no_stop_rate"] <= before["no_stop_rate"]
