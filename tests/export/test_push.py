"""No global offline switch, and push that works: a run trained from a cached Hub id trains, evaluates and exports
without any network access (HF_HUB_OFFLINE unset, a network sentinel in the process), and `export --push` sends
exactly the right files and card, in one commit, to a local stand-in Hub speaking the real upload protocol.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_config, write_config
from fakehub import FakeHub, cached_snapshot, tunewise_cli

BASE = "tiny-org/tiny-llama"

pytestmark = pytest.mark.xdist_group("push")  # one worker trains the module's run once


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dirs):
    """A prepared Hugging Face cache holding BASE, a recording stand-in Hub, and a run trained from BASE."""
    from tunewise.samples.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("push")
    cache = root / "hf" / "hub"
    cached_snapshot(cache, BASE, "d" * 40, tiny_model_dirs["tiny-llama"])
    data = write_demo_dataset(root / "demo.jsonl")
    cfg = write_config(root / "c.yaml", tiny_config(root, data, model=BASE, train={"max_steps": 2}, data={"val_size": 4}))
    with FakeHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache), "HF_TOKEN": hub.token}  # HF_HUB_OFFLINE unset
        rc, out, err, _ = tunewise_cli("train", str(cfg), env=env, sentinel=root / "sentinel")
        assert rc == 0, err
        yield {"root": root, "run": root / "runs" / "t", "hub": hub, "env": env, "train_requests": list(hub.requests),
               "sentinel": root / "sentinel"}


def _net_log(sentinel: Path) -> list[str]:
    log = sentinel / "net.log"
    return log.read_text().splitlines() if log.exists() else []


def test_train_and_eval_from_a_cached_hub_id_never_touch_the_network(world):
    assert world["train_requests"] == []          # the stand-in Hub at HF_ENDPOINT saw nothing
    rc, out, err, _ = tunewise_cli("eval", str(world["run"]), "--max-samples", "2", "--max-new-tokens", "8",
                                   env=world["env"], sentinel=world["sentinel"])
    assert rc == 0, err
    assert world["hub"].requests == []
    assert _net_log(world["sentinel"]) == []      # nor did anything else try to reach a host


def test_the_sentinel_sees_an_attempt_to_reach_the_hub(tmp_path):
    """The check above can fail: without HF_ENDPOINT, an uncached Hub id is looked up at huggingface.co."""
    rc, _, err, _ = tunewise_cli("download", "some-org/some-model", env={"HF_HUB_CACHE": str(tmp_path / "hf" / "hub")},
                                 sentinel=tmp_path / "sentinel")
    assert rc == 2 and "Traceback" not in err
    assert "cannot reach the Hugging Face Hub to download 'some-org/some-model'" in err, err
    assert any("huggingface.co" in line for line in _net_log(tmp_path / "sentinel"))


def test_export_gguf_ollama_push_sends_one_commit_with_model_gguf_modelfile_and_card(world):
    hub, run = world["hub"], world["run"]
    hub.requests.clear()
    rc, out, err, _ = tunewise_cli("export", str(run), "--gguf", "q8_0", "--ollama", "--push", "me/tiny-chat", "--private",
                                   env=world["env"], sentinel=world["sentinel"])
    assert rc == 0, err
    assert _net_log(world["sentinel"]) == []      # only the Hub endpoint (local here) was contacted
    assert [p for _, p in hub.requests] == ["/api/whoami-v2", "/api/repos/create", "/api/validate-yaml",
                                            "/api/models/me/tiny-chat/preupload/main", "/api/models/me/tiny-chat/commit/main"]
    assert hub.created == [{"name": "tiny-chat", "organization": "me", "visibility": "private"}]
    assert len(hub.commits) == 1
    sent = hub.commits[0]["files"]
    export = run / "export"
    merged = {p.name for p in (export / "merged").iterdir()}
    assert set(sent) == merged | {"model.gguf", "Modelfile", "verify.json", "curves.png", "README.md"}
    for name in merged:
        assert sent[name] == (export / "merged" / name).read_bytes(), name
    assert sent["model.gguf"] == (export / "model.gguf").read_bytes()
    assert sent["Modelfile"] == (export / "Modelfile").read_bytes()
    card = sent["README.md"].decode()
    assert card == (export / "README.md").read_text(encoding="utf-8")  # the card as sent is kept with the export
    verdict = json.loads((export / "verify.json").read_text())
    assert f"base_model: {BASE}" in card and "library_name: transformers" in card and "**lora**" in card
    assert "learning_rate: 0.002" in card and "lora_r: 8" in card           # hyperparameters
    assert "## Data" in card and "supervised" in card                       # data summary
    assert "![learning curves](curves.png)" in card
    assert f"**{verdict['status']}** (q8_0)" in card                        # the verification of this export
    assert "ollama create NAME -f Modelfile" in card and "- `model.gguf`" in card
    assert f"https://huggingface.co/me/tiny-chat" not in out and f"{hub.url}/me/tiny-chat" in out


def test_push_no_merge_sends_the_adapter_naming_its_hub_base(world):
    hub, run = world["hub"], world["run"]
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "report.md").write_text("| metric | val before | val after |\n|---|---|---|\n| loss | 6.9 | 6.5 |\n")
    hub.commits.clear()
    rc, out, err, _ = tunewise_cli("export", str(run), "--push", "me/tiny-adapter", "--no-merge", env=world["env"])
    assert rc == 0, err
    sent = hub.commits[0]["files"]
    adapter = {p.name for p in (run / "adapter").iterdir()}
    assert set(sent) == adapter | {"curves.png", "README.md"}               # no merge, no GGUF
    assert not (run / "export" / "merged").exists() or "merging" not in err
    conf = json.loads(sent["adapter_config.json"])
    assert conf["base_model_name_or_path"] == BASE                          # not the local cache path
    assert sent["adapter_model.safetensors"] == (run / "adapter" / "adapter_model.safetensors").read_bytes()
    card = sent["README.md"].decode()
    assert "library_name: peft" in card and f"base_model: {BASE}" in card and "AutoPeftModelForCausalLM" in card
    assert "| loss | 6.9 | 6.5 |" in card                                   # the eval table
    assert "GGUF verification" not in card


def test_push_with_a_rejected_token_fails_before_any_export_work(world, tmp_path):
    hub = world["hub"]
    hub.commits.clear()
    out_dir = tmp_path / "out"
    rc, _, err, took = tunewise_cli("export", str(world["run"]), "--out", str(out_dir), "--push", "me/x",
                                    env={**world["env"], "HF_TOKEN": "hf_wrong"})
    assert rc == 2 and "the Hub rejected the token" in err and "hf auth login" in err
    assert not out_dir.exists() and hub.commits == []
