"""Push refusals (no token, offline, no network) fail fast and write nothing; the model card's content;
--no-merge misuse. In-process and without the network (tests/export/test_push.py pushes to a stand-in Hub)."""

import json
import socket
import time

import pytest

from conftest import train_demo_run
from tunewise.cli import main

pytestmark = pytest.mark.xdist_group("hub")  # one worker trains the module's run once


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dirs, tw_home):
    return train_demo_run(tmp_path_factory.mktemp("hub"), tw_home, train={"max_steps": 1}, data={"val_size": 4})


def _listing(run):
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("case", ["no-token", "offline", "no-network"])
def test_refused_push_fails_fast_and_touches_nothing(case, run, monkeypatch, capsys, no_network):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(run.parent / "no-token"))  # no stored token (read at import)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    if case != "no-token":
        monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    if case == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = _listing(run)
    t = time.time()
    assert main(["export", str(run), "--gguf", "q8_0", "--push", "me/tiny"]) == 2
    assert time.time() - t < 10
    err = capsys.readouterr().err
    assert "nothing was exported or uploaded" in err and "Traceback" not in err
    assert {"no-token": "hf auth login", "offline": "unset HF_HUB_OFFLINE",
            "no-network": "cannot reach huggingface.co"}[case] in err
    assert _listing(run) == before  # no export/, no card, no merge


def test_push_needs_a_repository_id(run, capsys):
    assert main(["export", str(run), "--push", "just-a-name"]) == 2
    assert "not a Hub repository id" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--gguf", "q8_0"], ["--ollama"], []])
def test_no_merge_is_for_pushing_the_result_only(run, capsys, extra):
    args = ["export", str(run), "--no-merge", *extra] + (["--push", "me/tiny"] if extra else [])
    assert main(args) == 2
    assert "--no-merge" in capsys.readouterr().err


def test_model_card_has_base_method_data_hyperparameters_curves_eval_and_verification(run):
    from tunewise.export.hub import model_card

    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "report.md").write_text("| metric | val before | val after |\n|---|---|---|\n| loss | 6.9 | 6.5 |\n")
    (run / "curves.png").write_bytes(b"png")
    files = ["config.json", "model.safetensors", "model.gguf", "Modelfile"]
    card = model_card(run, "me/tiny", files=files, kind="merged", verdict={"status": "PASS", "gguf_type": "q8_0"})
    assert card.startswith("---\nlibrary_name: transformers\n") and "tags: [tunewise, fine-tuned, lora, gguf]" in card
    assert "# base model: tiny-llama" in card and "base_model:" not in card  # an alias is no Hub id
    assert "# me/tiny" in card and "from **tiny-llama**" in card and "**lora**" in card
    assert "learning_rate: 0.002" in card and "lora_r: 8" in card
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert stats and "## Data" in card and "(no data/stats.json" not in card
    assert "![learning curves](curves.png)" in card
    assert "| loss | 6.9 | 6.5 |" in card
    assert "**PASS** (q8_0)" in card
    assert "<|eot_id|>" in card                                                  # the stop tokens
    assert "- `README.md`" in card and "- `model.gguf`" in card
    assert 'AutoModelForCausalLM.from_pretrained("me/tiny")' in card
    adapter = model_card(run, "me/tiny", files=["adapter_model.safetensors"], kind="adapter")
    assert "library_name: peft" in adapter and "AutoPeftModelForCausalLM" in adapter and "GGUF verification" not in adapter
    assert "names it by the local path" in adapter  # no Hub base to point at: said so


def test_a_gguf_that_fails_verification_is_not_pushed(run, monkeypatch, capsys):
    """The guard in export_run: FAIL leaves the export on disk for inspection and uploads nothing."""
    from tunewise.export import hub, verify

    sent = []
    monkeypatch.setattr(hub, "preflight", lambda repo_id: "hf_token")
    monkeypatch.setattr(hub, "push", lambda *a, **k: sent.append(a) or "url")
    monkeypatch.setattr(verify, "verify_gguf", lambda *a, **k: {"status": "FAIL", "cause": "template (test)", "fix": "-"})
    assert main(["export", str(run), "--gguf", "q8_0", "--push", "me/tiny"]) == 1
    assert sent == [] and "not uploading to me/tiny" in capsys.readouterr().err
