"""Hub ids: downloaded once into the Hugging Face cache from a local stand-in Hub (HF_ENDPOINT on 127.0.0.1),
then loaded from the cache without the network; every refusal is a clear error without a traceback.

huggingface_hub reads HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE when it is imported, so each case runs the CLI
in a fresh process with its own environment, as a user would.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from fakehub import FakeHub, cached_snapshot, tunewise_cli

ALLOWED = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
NOT_WANTED = {"pytorch_model.bin": b"\x80\x04pickle", "README.md": b"# card", "onnx/model.onnx": b"onnx",
              "original/model.safetensors": b"duplicate weights", "training_args.bin": b"\x80\x04pickle"}


def cli(*args: str, env: dict) -> tuple[int, str, str, float]:
    return tunewise_cli(*args, env=env, timeout=300)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "hf" / "hub"


def test_hub_id_downloads_once_then_loads_from_cache_without_network(tiny_model_dirs, cache):
    with FakeHub() as hub:
        hub.add_folder("tiny-org/tiny-llama", tiny_model_dirs["tiny-llama"], extra=NOT_WANTED)
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"}
        rc, out, err, _ = cli("download", "tiny-org/tiny-llama", env=dict(env))
        assert rc == 0, err
        folder = Path(out.strip().splitlines()[-1])
        assert folder.parent.parent == cache / "models--tiny-org--tiny-llama"
        downloaded = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert downloaded == ALLOWED & set(hub.repos["tiny-org/tiny-llama"].files)  # safetensors, config, tokenizer only
        fetched = {p.split("/resolve/", 1)[1].split("/", 1)[1] for p in hub.paths("GET") if "/resolve/" in p}
        assert fetched == downloaded  # never a .bin, README or a subfolder copy, not even requested
        assert "downloading 'tiny-org/tiny-llama' into the Hugging Face cache" in err
        assert "Fetching 5 files" in err  # huggingface_hub's progress bar

        n = len(hub.requests)
        rc, out, err, _ = cli("inspect", "tiny-org/tiny-llama", "--json", env=dict(env))
        assert rc == 0, err
        assert json.loads(out)["model_type"] == "llama"
        assert len(hub.requests) == n  # the cache is used as is: no request at all, not even a freshness check
    # Hub gone and offline mode on: still resolves to the cached snapshot.
    rc, out, err, _ = cli("download", "tiny-org/tiny-llama", env=dict(env, HF_HUB_OFFLINE="1"))
    assert rc == 0 and Path(out.strip()) == folder, err


def test_prepared_cache_is_used_offline_including_a_revision(tiny_model_dirs, cache):
    main = cached_snapshot(cache, "prep/tiny", "a" * 40, tiny_model_dirs["tiny-llama"])
    v1 = cached_snapshot(cache, "prep/tiny", "b" * 40, tiny_model_dirs["tiny-qwen2"], refs=("v1",))
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    rc, out, err, _ = cli("download", "prep/tiny", env=dict(env))
    assert rc == 0 and out.strip() == str(main), err
    rc, out, err, _ = cli("download", "prep/tiny", "--revision", "v1", env=dict(env))
    assert rc == 0 and out.strip() == str(v1), err
    rc, out, err, _ = cli("inspect", "prep/tiny", "--revision", "v1", "--json", env=dict(env))
    assert rc == 0 and json.loads(out)["model_type"] == "qwen2", err


def test_offline_and_not_cached_fails_fast_naming_the_command_that_fetches_it(cache):
    rc, _, err, took = cli("inspect", "some-org/some-model", env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert rc == 2 and took < 20
    assert "'some-org/some-model' is not in the Hugging Face cache" in err
    assert "tunewise download some-org/some-model" in err and "HF_HUB_OFFLINE" in err
    assert "Traceback" not in err


def test_cached_snapshot_without_weights_is_not_used(tiny_model_dirs, cache):
    snap = cached_snapshot(cache, "prep/partial", "c" * 40, tiny_model_dirs["tiny-llama"])
    (snap / "model.safetensors").unlink()  # e.g. someone fetched only the config
    rc, _, err, _ = cli("download", "prep/partial", env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert rc == 2 and "'prep/partial' is not in the Hugging Face cache" in err and "Traceback" not in err


def test_no_network_fails_fast_with_the_fetch_command(cache):
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"}
    rc, _, err, took = cli("download", "some-org/some-model", env=env)
    assert rc == 2 and took < 20
    assert "cannot reach the Hugging Face Hub" in err and "tunewise download some-org/some-model" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", ["missing", "gated", "gated-token", "pickle-only", "gguf-only", "bad-revision"])
def test_hub_refusals_each_get_their_own_message(case, tiny_model_dirs, cache):
    weights = (tiny_model_dirs["tiny-llama"] / "model.safetensors").read_bytes()
    config = (tiny_model_dirs["tiny-llama"] / "config.json").read_bytes()
    expect = {
        "missing": ["there is no model 'org/missing' on the Hugging Face Hub", "check the spelling"],
        "gated": ["'org/gated' is a gated model", "accept the licence", "hf auth login"],
        "gated-token": ["'org/gated' is a gated model", "accept the licence", "token of that account"],
        "pickle-only": ["only pickle weights (pytorch_model.bin)", "model.revision: refs/pr/N"],
        "gguf-only": ["no safetensors weights", "model.name_or_path to that .gguf file"],
        "bad-revision": ["org/gated has no revision 'nope'", "model.revision"],
    }[case]
    repo_id, extra = {"missing": ("org/missing", []), "gated": ("org/gated", []), "gated-token": ("org/gated", []),
                      "pickle-only": ("org/pickle", []),
                      "gguf-only": ("org/gguf", []), "bad-revision": ("org/gated", ["--revision", "nope"])}[case]
    with FakeHub() as hub:
        hub.add_folder("org/gated", tiny_model_dirs["tiny-llama"], gated=True)
        hub.repos["org/pickle"] = type(hub.repos["org/gated"])({"config.json": config, "pytorch_model.bin": b"\x80\x04"})
        hub.repos["org/gguf"] = type(hub.repos["org/gated"])({"model-Q4_K_M.gguf": weights, "README.md": b"#"})
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"}
        if case == "gated-token":  # a token without access: refused by the file downloads (403 GatedRepo)
            env["HF_TOKEN"] = "hf_no_access"
        rc, _, err, took = cli("download", repo_id, *extra, env=env)
    assert rc == 2, err
    for text in expect:
        assert text in err, err
    assert "Traceback" not in err and took < 30
    assert not any(p.endswith((".bin", ".gguf")) for p in hub.paths("GET"))  # nothing refused was fetched
    assert any("/resolve/" in p for p in hub.paths("HEAD")) == (case == "gated-token")
    assert not list(cache.glob("models--*/snapshots/*/*"))  # and nothing was left in the cache
