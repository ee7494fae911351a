"""Continued pretraining -> SFT, multi-task mixing with task tags, incremental training with replay."""

import json

from conftest import read_metrics, tiny_config, write_config
from tunewise.cli import main


def _records(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_pretrain_then_sft_from_previous_run(tmp_path, tiny_model_dirs, demo_jsonl):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i}: tunewise trains models on small machines. 微调让模型适应任务。"
                                  for i in range(60)), encoding="utf-8")
    pt = write_config(tmp_path / "pt.yaml", tiny_config(
        tmp_path, corpus, data={"max_length": 64, "val_size": 0.1}, train={"stage": "pretrain", "max_steps": 6}))
    assert main(["train", str(pt), "--set", "run.name=pt"]) == 0
    pt_run = tmp_path / "runs" / "pt"
    stats = json.loads((pt_run / "data" / "stats.json").read_text())
    tok = stats["tokens"]["train"]
    # packed into full blocks, loss on every token
    assert tok["supervised_tokens"] == tok["total_tokens"] and tok["max_length"] == 64
    assert tok["examples"] > 0 and len(_records(pt_run / "data" / "train.jsonl")[0]) >= 1

    sft = write_config(tmp_path / "sft.yaml", tiny_config(
        tmp_path, demo_jsonl, model=str(pt_run), train={"max_steps": 4}, data={"replay_ratio": 0.0}))
    assert main(["train", str(sft), "--set", "run.name=sft"]) == 0
    sft_run = tmp_path / "runs" / "sft"
    from safetensors.torch import load_file

    a = load_file(pt_run / "adapter" / "adapter_model.safetensors")
    b = load_file(sft_run / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert any(not (a[k] == b[k]).all() for k in a)  # continued from the pretraining adapter, and changed


def test_multitask_mix_and_task_tags(tmp_path, tiny_model_dirs):
    a = tmp_path / "qa.jsonl"
    b = tmp_path / "sum.jsonl"
    a.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(30)))
    b.write_text("".join(json.dumps({"instruction": f"text {i}", "output": f"s{i}"}) + "\n" for i in range(30)))
    cfg = tiny_config(tmp_path, a, train={"max_steps": 2})
    cfg["data"]["datasets"] = [{"path": str(a), "weight": 1.0, "system": "[task: qa]"},
                               {"path": str(b), "weight": 3.0, "system": "[task: summarise]"}]
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    run = tmp_path / "runs" / "t"
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats["mix"]["sum"]["records"] > 2.5 * stats["mix"]["qa"]["records"]
    recs = _records(run / "data" / "train.jsonl")
    tags = {r["source"]: r["messages"][0]["content"] for r in recs}
    assert tags == {"qa": "[task: qa]", "sum": "[task: summarise]"}


def test_incremental_training_replays_previous_data(tmp_path, tiny_model_dirs, demo_jsonl):
    first = write_config(tmp_path / "a.yaml", tiny_config(tmp_path, demo_jsonl, train={"max_steps": 2}))
    assert main(["train", str(first), "--set", "run.name=first"]) == 0
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"instruction": f"new task {i}", "output": f"new answer {i}"}) + "\n" for i in range(40)))
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"instruction": f"general {i}", "output": f"g{i}"}) + "\n" for i in range(40)))
    second = tiny_config(tmp_path, new, model=str(tmp_path / "runs" / "first"), train={"max_steps": 2},
                         data={"replay_ratio": 0.5, "general": [str(general)], "general_ratio": 0.25, "val_size": 0})
    assert main(["train", str(write_config(tmp_path / "b.yaml", second)), "--set", "run.name=second"]) == 0
    recs = _records(tmp_path / "runs" / "second" / "data" / "train.jsonl")
    sources = [r["source"] for r in recs]
    n_new = sources.count("new")
    assert n_new == 40
    assert sum(s.startswith("replay:") for s in sources) == 20
    assert sum(s.startswith("general:") for s in sources) == 10
    assert read_metrics(tmp_path / "runs" / "second")


def test_a_continued_run_is_evaluated_against_where_it_started(tmp_path, tiny_model_dirs, demo_jsonl):
    """`eval`'s "before" (and `chat --base`) of a run that continued an adapter run is that run's trained model,
    not the base model under both: the comparison shows what this run changed (DPO after SFT, incremental)."""
    import torch

    from tunewise.infer.generate import load_run_model

    first = write_config(tmp_path / "a.yaml", tiny_config(tmp_path, demo_jsonl, train={"max_steps": 3, "learning_rate": 5e-2}))
    assert main(["train", str(first), "--set", "run.name=first"]) == 0
    second = write_config(tmp_path / "b.yaml", tiny_config(tmp_path, demo_jsonl, model=str(tmp_path / "runs" / "first"),
                                                         train={"max_steps": 1}, data={"replay_ratio": 0.0}))
    assert main(["train", str(second), "--set", "run.name=second"]) == 0
    ids = torch.tensor([[1, 5, 9, 13, 17]])

    def logits(run, tuned):
        with torch.no_grad():
            return load_run_model(tmp_path / "runs" / run, tuned=tuned).model(input_ids=ids).logits

    start = logits("second", tuned=False)
    assert torch.allclose(start, logits("first", tuned=True), atol=1e-5)
    assert not torch.allclose(start, logits("first", tuned=False), atol=1e-3)  # not the untouched base
