"""Every ready distributed config loads and maps onto the right Trainer arguments."""

import json
from pathlib import Path

import pytest

from conftest import REPO
from tunewise.config import load_config
from tunewise.train.distributed import trainer_kwargs

EX = REPO / "examples" / "distributed"


@pytest.mark.parametrize("name,strategy", [("ddp", "ddp"), ("fsdp", "fsdp"), ("fsdp_offload", "fsdp"),
                                           ("zero2", "deepspeed"), ("zero3", "deepspeed")])
def test_example_config_loads(name, strategy):
    cfg = load_config(EX / f"{name}.yaml")
    assert cfg.distributed.strategy == strategy
    assert Path(cfg.data.datasets[0].path).exists()
    kw = trainer_kwargs(cfg.distributed)
    assert kw["ddp_backend"] == "gloo"  # no GPU here
    if strategy == "fsdp":
        assert "full_shard" in kw["fsdp"] and (("offload" in kw["fsdp"]) == cfg.distributed.fsdp_offload)
    if strategy == "deepspeed":
        ds = json.loads(Path(kw["deepspeed"]).read_text())
        assert ds["zero_optimization"]["stage"] == int(name[-1])


def test_unknown_strategy_is_explained(tmp_path):
    from tunewise.errors import ConfigError

    p = tmp_path / "c.yaml"
    p.write_text("distributed: {strategy: horovod}\n")
    with pytest.raises(ConfigError, match="'ddp', 'fsdp' or 'deepspeed'"):
        load_config(p)
