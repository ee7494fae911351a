"""Model card content and the offline / no-token push path (never touches the network)."""

import json

import pytest

from conftest import train_demo_run
from tunewise.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dirs, tw_home):
    return train_demo_run(tmp_path_factory.mktemp("hub"), tw_home, train={"max_steps": 1}, data={"val_size": 4})


def test_push_without_token_fails_fast_and_writes_only_the_card(run, monkeypatch, capsys):
    import socket
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(run.parent / "hf-home"))  # no stored token either

    def no_network(*a, **k):
        raise AssertionError("the network was contacted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "report.md").write_text("| metric | val before | val after |\n|---|---|---|\n| loss | 6.9 | 6.5 |\n")
    t = time.time()
    assert main(["export", str(run), "--push", "me/tiny"]) == 2
    assert time.time() - t < 10
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "huggingface-cli login" in err
    assert sorted(p.name for p in (run / "export").iterdir()) == ["README.md"]  # nothing merged, nothing else
    card = (run / "export" / "README.md").read_text()
    assert "# me/tiny" in card and "tiny-llama" in card and "**lora**" in card
    assert "learning_rate: 0.002" in card and "lora_r: 8" in card          # hyperparameters from config.yaml
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats and "## Data" in card and "(no data/stats.json" not in card
    assert "| loss | 6.9 | 6.5 |" in card                                     # the eval table
    assert "<|eot_id|>" in card                                              # the stop tokens


def test_push_offline_with_token_fails_fast(run, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    assert main(["export", str(run), "--push", "me/tiny"]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert not (run / "export" / "merged").exists()
