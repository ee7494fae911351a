"""Chat and export go through the methods registry: every method's result loads one way."""

import pytest

from conftest import tiny_config, write_config
from tunewise.cli import main


@pytest.mark.parametrize("method", ["adapter", "prompt"])
def test_unmergeable_methods_chat_but_refuse_export_with_a_fix(tmp_path, tiny_model_dirs, demo_jsonl, capsys, method):
    cfg = tiny_config(tmp_path, demo_jsonl, method={"name": method}, train={"max_steps": 2})
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    run = tmp_path / "runs" / "t"
    capsys.readouterr()
    assert main(["chat", str(run), "--prompt", "Who are you?", "--max-new-tokens", "4", "--temperature", "0"]) == 0
    assert main(["export", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"method '{method}' cannot be merged" in err and "fix: retrain with method.name: lora" in err
    assert "Traceback" not in err and not (run / "export" / "merged").exists()


def test_full_run_exports_its_own_weights(tmp_path, tiny_model_dirs, demo_jsonl):
    import torch
    from safetensors.torch import load_file

    cfg = tiny_config(tmp_path, demo_jsonl, method={"name": "full"}, train={"max_steps": 2, "learning_rate": 1e-3})
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    run = tmp_path / "runs" / "t"
    assert main(["export", str(run)]) == 0
    trained = load_file(run / "model" / "model.safetensors")
    merged = load_file(run / "export" / "merged" / "model.safetensors")
    key = next(k for k in trained if "q_proj" in k)
    assert torch.equal(trained[key].float(), merged[key].float())
