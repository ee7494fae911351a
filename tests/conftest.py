"""Shared fixtures: tiny random models (Llama-, Qwen2-, Gemma3-like) built once per session, offline.

TUNEWISE_HOME points at a session folder so the aliases tiny-llama/tiny-qwen2/tiny-gemma3 resolve to
models built here; the real Gemma 3 270M cache is shared with the user's (~/.cache/tunewise, fixture `real_home`)
so the marked smoke tests dequantize it at most once per machine.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["tiny-llama", "tiny-qwen2", "tiny-gemma3"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Two pytest workers share two cores: one torch thread each, also in the CLI subprocesses the tests start
# (two threads per process on a full machine spin-wait on each other and run many times slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def pytest_collection_modifyitems(config, items):
    """The longest tests first (the real-model ones, longest of all the identity proofs), so two workers start
    them at once and the many short tests fill in around them, instead of one long test starting last."""
    def weight(item) -> int:
        if item.get_closest_marker("real_model") is None:
            return 2
        return 0 if "identity" in item.nodeid else 1

    items.sort(key=weight)  # stable: the order within each kind is kept
    _xdist_groups(config, items)


def _xdist_groups(config, items) -> None:
    """`--dist loadgroup` sends the tests of one `xdist_group` to one worker by a "@group" suffix on their node ids.
    pytest-xdist 3.8 writes that suffix to `item._nodeid`, which pytest 9.2 no longer reads (a node's id is now
    `item._id`), so every group was silently split across the workers and each worker built the groups' module
    fixtures again (test_tool_export's ~55 s training twice). Write the suffix where pytest 9.2 reads it."""
    if not getattr(config.option, "loadgroup", False):
        return  # the controller, or a run without loadgroup
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        if names and not item.nodeid.endswith("@" + "_".join(names)):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


@pytest.fixture(scope="session")
def tw_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.getbasetemp().parent / "tw-home"
    home.mkdir(exist_ok=True)
    return home


@pytest.fixture(scope="module")
def module_home(tw_home):
    """TUNEWISE_HOME for a module-scoped fixture (which runs before the per-test environment is set),
    restored when the module ends, so nothing leaks into the next module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNEWISE_HOME", str(tw_home))
    yield tw_home
    mp.undo()


REAL_HOME = Path.home() / ".cache" / "tunewise"


@pytest.fixture
def real_home(monkeypatch) -> Path:
    """The user's cache, so the real model is dequantized at most once per machine (not per test run)."""
    from filelock import FileLock

    REAL_HOME.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("TUNEWISE_HOME", str(REAL_HOME))
    with FileLock(str(REAL_HOME / "gemma3-270m.lock")):
        from tunewise.models.default import ensure_default_model

        ensure_default_model()
    return REAL_HOME


@pytest.fixture(autouse=True)
def _env(tw_home, monkeypatch):
    monkeypatch.setenv("TUNEWISE_HOME", str(tw_home))
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dirs(tw_home) -> dict[str, Path]:
    """Build (once, under a file lock so xdist workers share) the three tiny models."""
    from filelock import FileLock

    from tunewise.models.tiny import build_tiny

    out = {}
    for name in TINY:
        d = tw_home / "models" / name
        with FileLock(str(d) + ".lock"):
            if not (d / "model.safetensors").exists():
                build_tiny(name, d)
        out[name] = d
    return out


@pytest.fixture
def demo_jsonl(tmp_path) -> Path:
    from tunewise.samples.demo import write_demo_dataset

    return write_demo_dataset(tmp_path / "demo.jsonl")


def tiny_features(model_dir: Path, records: list[dict], max_length: int):
    """A tiny model (sdpa, eval mode), its tokenizer, and `records` encoded with its template as collator features."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunewise.templates import choose_template
    from tunewise.templates.encode import encode_records

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    enc, _ = encode_records(tok, choose_template("auto", tok, model.config.model_type), records, max_length=max_length)
    return model, tok, [{"input_ids": e.input_ids, "labels": e.labels} for e in enc]


def write_config(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def train_demo_run(root: Path, tw_home: Path, **sections) -> Path:
    """Train tiny-llama on the demo data under root and return the run (for module-scoped fixtures, where the
    function-scoped TUNEWISE_HOME fixture does not apply yet)."""
    from tunewise.cli import main
    from tunewise.samples.demo import write_demo_dataset

    os.environ["TUNEWISE_HOME"] = str(tw_home)
    data = write_demo_dataset(root / "demo.jsonl")
    assert main(["train", str(write_config(root / "c.yaml", tiny_config(root, data, **sections)))]) == 0
    return root / "runs" / "t"


def tiny_config(tmp_path: Path, data_path: Path, model: str = "tiny-llama", **sections) -> dict:
    cfg = {
        "run": {"root": str(tmp_path / "runs"), "name": "t"},
        "model": {"name_or_path": model},
        "data": {"datasets": [{"path": str(data_path)}], "val_size": 0.15, "max_length": 128,
                 "clean": {"dedup_near": False}},  # the demo identity part is near-duplicate on purpose
        "method": {"name": "lora", "lora_r": 8, "lora_alpha": 16},
        "train": {"num_epochs": 1, "learning_rate": 2e-3, "per_device_batch_size": 8,
                  "gradient_accumulation_steps": 1, "logging_steps": 2, "eval_steps": 5},
    }
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    return cfg


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def run_cli(*args: str, timeout: int = 1800) -> tuple[int, str, str]:
    """Run the CLI in a subprocess (as a user would) and return (code, stdout, stderr). The timeout is generous:
    a real-model run on a busy 2-core machine takes several times its quiet duration, and that is not a failure."""
    import subprocess
    import sys

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-m", "tunewise", *args], capture_output=True, text=True, env=env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


__all__ = ["write_config", "tiny_config", "read_metrics", "run_cli", "shutil"]


class ListSink:
    """A cleaning sink holding everything in lists (production streams into a spill file: data/spill.py)."""

    def __init__(self):
        self.kept: list[dict] = []
        self.dropped: list[dict] = []

    def keep_many(self, lines, infos, band_keys):
        self.kept += [json.loads(line) for line in lines]
        return len(self.kept) - len(lines)

    def drop(self, line, step):
        self.dropped.append(json.loads(line))
        return len(self.dropped) - 1

    def kept_where(self, i):
        from tunewise.data.clean import where_of

        return where_of(self.kept[i])

    def dropped_where(self, i):
        from tunewise.data.clean import where_of

        return where_of(self.dropped[i])


def clean_records(records, cfg):
    """Clean records held in memory with the Cleaner `prepare` streams through: (kept, dropped, steps)."""
    from types import SimpleNamespace

    from tunewise.data.clean import Cleaner

    sink = ListSink()
    cleaner = Cleaner(cfg, sink)
    cleaner.run((r, None) for r in records)
    return SimpleNamespace(kept=sink.kept, dropped=sink.dropped, steps=cleaner.steps)


@pytest.fixture(autouse=True)
def _advise_on_a_cpu_without_fast_bf16(request, monkeypatch):
    """advise's tests assert estimates and recommendations; on a CPU those depend on whether `train.precision: auto`
    takes bf16, which train/precision.py measures on the machine. For tests/advise it is pinned to a CPU without
    fast bf16 so the same numbers come out on every machine; the bf16 case is tested with its own pinned speed-up
    (tests/perf/test_mixed_precision.py)."""
    if "advise" not in Path(str(request.node.fspath)).parts:
        return
    from tunewise.train import precision

    monkeypatch.setattr(precision, "bf16_speedup", lambda k, n, rows=512: 1.0)
