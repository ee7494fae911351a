"""Config errors are for people: unknown keys, wrong types and bad YAML name the key and the fix."""

import pytest

from conftest import run_cli, write_config
from tunewise.config import load_config
from tunewise.errors import ConfigError


def test_unknown_key_names_itself_and_the_closest_valid_key(tmp_path):
    p = write_config(tmp_path / "c.yaml", {"train": {"learnig_rate": 1e-4}})
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "unknown key 'train.learnig_rate': did you mean 'train.learning_rate'" in msg and str(p) in msg


def test_unknown_section_suggests_section(tmp_path):
    p = write_config(tmp_path / "c.yaml", {"trian": {"num_epochs": 1}})
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_config(p)


@pytest.mark.parametrize("key,value,expect", [
    ("train.num_epochs", "abc", "valid number"),
    ("method.lora_r", 0, "greater than or equal to 1"),
    ("train.lr_scheduler", "cosine_annealing", "'linear'"),
    ("train.precision", "fp64", "'bf16'"),
    ("data.val_size", -1, "greater than or equal to 0"),
])
def test_wrong_type_or_range_names_key_and_allowed(tmp_path, key, value, expect):
    section, k = key.split(".")
    p = write_config(tmp_path / "c.yaml", {section: {k: value}})
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert key in str(e.value) and expect in str(e.value)


def test_set_overrides_and_resolved_defaults(tmp_path):
    p = write_config(tmp_path / "c.yaml", {"method": {"name": "full"}})
    cfg = load_config(p, ["train.num_epochs=5", "method.lora_r=4"])
    assert cfg.train.num_epochs == 5 and cfg.method.lora_r == 4
    assert cfg.train.learning_rate == 1e-5  # full fine-tuning gets a low default
    assert cfg.run.name == "c"
    assert load_config(write_config(tmp_path / "d.yaml", {})).train.learning_rate == 2e-4
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(p, ["train.num_epochs"])
    with pytest.raises(ConfigError, match="train.num_epoch"):
        load_config(p, ["train.num_epoch=3"])


def test_config_is_frozen(tmp_path):
    cfg = load_config(write_config(tmp_path / "c.yaml", {}))
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        cfg.train.num_epochs = 9


def test_bad_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  num_epochs: 3\n   lr: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+"):
        load_config(p)


def test_cli_config_mistake_has_no_traceback(tmp_path):
    p = write_config(tmp_path / "c.yaml", {"model": {"name_or_path": "tiny-llama"}, "train": {"epochs": 2}})
    code, out, err = run_cli("train", str(p))
    assert code == 2
    assert "Traceback" not in err
    assert "train.epochs" in err and "train.num_epochs" in err
