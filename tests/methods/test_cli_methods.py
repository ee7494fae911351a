"""`tunewise train` with the non-LoRA adapters on tiny Gemma 3: the run directory holds a result that
`methods.load_trained` reloads (final result and trainer checkpoints), continues, and generates from."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from conftest import tiny_config, write_config
from tunewise import methods
from tunewise.cli import main


def _run(tmp_path, name, data_path, model="tiny-gemma3", **sections):
    cfg = write_config(tmp_path / f"{name}.yaml", tiny_config(tmp_path, data_path, model, **sections))
    assert main(["train", str(cfg), "--set", f"run.name={name}"]) == 0
    return tmp_path / "runs" / name


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_adapter_run_saves_reloads_from_result_and_checkpoint_and_continues(tmp_path, tiny_model_dirs, demo_jsonl):
    run = _run(tmp_path, "ad", demo_jsonl, method={"name": "adapter", "adapter_size": 8, "adapter_placement": "houlsby"},
               train={"max_steps": 4, "eval_steps": 2, "learning_rate": 1e-2})
    files = {p.name for p in (run / "adapter").iterdir()}
    assert {"bottleneck_adapter.safetensors", "bottleneck_adapter.json", "tokenizer.json"} <= files
    conf = json.loads((run / "adapter" / "bottleneck_adapter.json").read_text())
    assert conf["size"] == 8 and conf["placement"] == "houlsby" and conf["base_model_type"] == "gemma3_text"
    assert methods.result_kind(run / "adapter") == "bottleneck"

    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    tuned = methods.load_trained(run)
    summary = json.loads((run / "train_summary.json").read_text())
    best = summary["best_checkpoint"]  # the final result is the best checkpoint's weights
    from_ckpt = methods.load_trained(run, checkpoint=best)
    assert methods.result_kind(__import__("pathlib").Path(best)) == "bottleneck"
    assert torch.equal(_logits(tuned, ids), _logits(from_ckpt, ids))
    from tunewise.models.load import load_model

    base = load_model(tiny_model_dirs["tiny-gemma3"], dtype="float32").eval()
    assert not torch.allclose(_logits(base, ids), _logits(tuned, ids))  # the adapters do something

    # continue the adapters on new data (lr 1e-9: the continued weights are the previous ones)
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(12)))
    cont = _run(tmp_path, "ad2", new, model=str(run), method={"name": "adapter", "adapter_size": 32},
                train={"max_steps": 1, "learning_rate": 1e-9}, data={"val_size": 0})
    a = load_file(run / "adapter" / "bottleneck_adapter.safetensors")
    b = load_file(cont / "adapter" / "bottleneck_adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert json.loads((cont / "adapter" / "bottleneck_adapter.json").read_text())["size"] == 8  # the previous run's


def test_prefix_and_prompt_runs_generate_on_gemma3(tmp_path, tiny_model_dirs, demo_jsonl):
    for name in ("prefix", "prompt"):
        run = _run(tmp_path, name, demo_jsonl, method={"name": name, "num_virtual_tokens": 4},
                   train={"max_steps": 2, "eval_steps": 2})
        cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
        assert cfg["peft_type"] == {"prefix": "PREFIX_TUNING", "prompt": "PROMPT_TUNING"}[name]
        model = methods.load_trained(run)
        ids = torch.tensor([[5, 17, 42, 99]])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
        assert out.shape[1] == 8
        summary = json.loads((run / "train_summary.json").read_text())
        conf = model.get_base_model().config
        per_token = conf.num_hidden_layers * 2 * conf.head_dim * conf.num_key_value_heads if name == "prefix" else conf.hidden_size
        assert summary["trainable_parameters"] == 4 * per_token


def test_prompt_learning_resume_and_projected_prefix_best_model(tmp_path, tiny_model_dirs, demo_jsonl, capsys):
    # resume a prompt-tuning run (peft cannot load prompt-learning adapters as trainable: we load them ourselves)
    cfg = write_config(tmp_path / "pr.yaml", tiny_config(tmp_path, demo_jsonl, "tiny-gemma3", data={"val_size": 0},
                                                         method={"name": "prompt", "num_virtual_tokens": 4},
                                                         train={"max_steps": 2, "save_steps": 2, "learning_rate": 1e-1}))
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "runs" / "t"
    first = load_file(run / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")["prompt_embeddings"]
    assert main(["train", str(cfg), "--resume", "--set", "train.max_steps=4"]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["global_step"] == 4
    steps = [m["step"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert steps == [1, 2, 4]  # logged every 2 steps (and step 1); steps 1-2 were not trained again
    final = load_file(run / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert not torch.equal(final, first)
    # and a new run continues those virtual tokens (lr 1e-9: they stay what they were)
    cont = _run(tmp_path, "t2", demo_jsonl, model=str(run), method={"name": "prompt", "num_virtual_tokens": 9},
                train={"max_steps": 1, "learning_rate": 1e-9}, data={"val_size": 0, "replay_ratio": 0})
    again = load_file(cont / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert again.shape == final.shape and torch.allclose(again, final, atol=1e-6)

    # prefix with a projection MLP and a validation set: the best checkpoint becomes the (projected) result
    run = _run(tmp_path, "pp", demo_jsonl, method={"name": "prefix", "num_virtual_tokens": 4, "prefix_projection": True},
               train={"max_steps": 4, "eval_steps": 2, "learning_rate": 1e-2})
    best = json.loads((run / "train_summary.json").read_text())["best_checkpoint"]
    saved = load_file(run / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert torch.equal(saved, load_file(f"{best}/adapter_model.safetensors")["prompt_embeddings"])
    model = methods.load_trained(run)
    assert model.peft_config["default"].prefix_projection and model.prompt_encoder["default"].embedding.weight.shape == saved.shape
    # ... and resuming it is refused with an explanation rather than a peft traceback
    cfg = write_config(tmp_path / "pp2.yaml", tiny_config(tmp_path, demo_jsonl, "tiny-gemma3",
                                                          method={"name": "prefix", "num_virtual_tokens": 4, "prefix_projection": True},
                                                          train={"max_steps": 6, "eval_steps": 2, "learning_rate": 1e-2}))
    capsys.readouterr()
    assert main(["train", str(cfg), "--set", "run.name=pp", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume prefix tuning with method.prefix_projection" in err and "Traceback" not in err
