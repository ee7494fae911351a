"""No setting silently ignored: the schema is walked, and every key takes effect or is reported with the reason."""

import importlib
import importlib.util
import inspect
import re

import pytest

from tunewise.advise.effect import ALWAYS, RULES, WARNED_BY, ignored, set_keys
from tunewise.advise.explain import schema_keys
from tunewise.config.load import set_dotted
from tunewise.config.schema import Config


def config(values: dict) -> Config:
    data: dict = {}
    for k, v in values.items():
        set_dotted(data, k, v, "test")
    return Config.model_validate(data)


def test_every_schema_key_is_declared_exactly_once():
    keys = {k.key for k in schema_keys()}
    kinds = [set(ALWAYS), set(RULES), set(WARNED_BY)]
    declared = set().union(*kinds)
    assert keys - declared == set(), f"keys nobody declared: {sorted(keys - declared)}"
    assert declared - keys == set(), f"declared keys the schema does not have: {sorted(declared - keys)}"
    assert sum(len(k) for k in kinds) == len(declared), "a key is declared twice"


def _source(module: str) -> str:
    return open(importlib.util.find_spec(module).origin, encoding="utf-8").read()


@pytest.mark.parametrize("key", sorted(ALWAYS))
def test_keys_that_always_apply_are_read_where_declared(key):
    leaf = key.rsplit(".", 1)[-1]
    src = _source(ALWAYS[key])
    assert re.search(rf"\.{leaf}\b|[\"']{leaf}[\"']", src), f"{ALWAYS[key]} does not read {key}"


@pytest.mark.parametrize("key", sorted(WARNED_BY))
def test_keys_checked_at_run_time_are_named_by_their_check(key):
    module, fn = WARNED_BY[key].split(":")
    mod = importlib.import_module(module)
    assert callable(getattr(mod, fn)), WARNED_BY[key]
    # the check names the key in its message (or in the table it walks, as dropout_overrides does)
    assert key.rsplit(".", 1)[-1] in inspect.getsource(getattr(mod, fn)) + inspect.getsource(mod), key


@pytest.mark.parametrize("key", sorted(RULES))
def test_each_conditional_key_is_reported_where_it_has_no_effect_and_only_there(key, tmp_path):
    r = RULES[key]
    holds = dict(r.holds)
    if key == "data.replay_ratio":  # replay needs a previous run directory
        (tmp_path / "old" / "adapter").mkdir(parents=True)
        (tmp_path / "old" / "config.yaml").write_text("{}")
        holds = {"model.name_or_path": str(tmp_path / "old"), "data.replay_ratio": 0.3}
    fired = [x for x in ignored(config(r.fires), frozenset({key})) if x.key == key]
    assert fired, f"{key}: not reported in {r.fires}"
    x = fired[0]
    assert "has no effect" in x.en and "不起作用" in x.zh and x.fix_en and x.fix_zh and x.en != x.zh
    assert not [x for x in ignored(config(holds), frozenset({key})) if x.key == key], f"{key}: reported in {holds}"


def test_defaults_are_clean_and_unset_keys_are_not_reported():
    assert set_keys(Config()) == frozenset() and ignored(Config()) == []
    lora = config({"method.name": "lora"})
    assert ignored(lora, frozenset()) == []  # quant_bits left at its default is no one's mistake
    assert [x.key for x in ignored(lora, frozenset({"method.quant_bits"}))] == ["method.quant_bits"]
    # without the file at hand (training), a value changed from its default counts as set
    assert [x.key for x in ignored(config({"method.quant_bits": 8}))] == ["method.quant_bits"]


def test_list_item_fields_count_when_they_differ():
    c = config({"data.val_datasets": [{"path": "v.jsonl", "weight": 3.0}], "data.datasets": [{"path": "a.jsonl"}]})
    assert "data.val_datasets[].weight" in set_keys(c)
    found = ignored(c, frozenset({"data.datasets", "data.val_datasets"}))
    assert [x.key for x in found] == ["data.val_datasets[].weight"] and "used whole" in found[0].en


def test_the_issue_cases(capsys):
    from tunewise.config.plan import checkpoint_interval

    # save_steps with a validation set: it now takes effect, rounded up onto evaluations, and says so
    assert checkpoint_interval(None, 10, True) == (10, None)
    assert checkpoint_interval(7, 10, False) == (7, None)
    assert checkpoint_interval(20, 10, True) == (20, None)
    steps, note = checkpoint_interval(25, 10, True)
    assert steps == 30 and "train.save_steps=25 rounded up to 30" in note
    # quant_bits outside qlora, hidden_dropout explained as a no-op on Llama-style models
    assert ignored(config({"method.name": "lora", "method.quant_bits": 8}))[0].key == "method.quant_bits"
    from tunewise.advise.explain import explain_json

    d = explain_json("model.hidden_dropout")["model.hidden_dropout"]
    assert "Llama" in d["description"] and "Llama" in d["description_zh"]


def test_save_steps_reach_the_trainer_on_evaluations(tmp_path, capsys):
    from tunewise.config.plan import steps_plan
    from tunewise.train.assemble import training_arguments

    cfg = config({"train.save_steps": 25, "train.eval_steps": 10, "train.max_steps": 60})
    args = training_arguments(cfg, tmp_path, steps_plan(cfg, 100), has_val=True)
    assert args.save_steps == 30 and args.eval_steps == 10 and "rounded up to 30" in capsys.readouterr().err
    args = training_arguments(cfg, tmp_path, steps_plan(cfg, 100), has_val=False)
    assert args.save_steps == 25  # no validation: saved exactly as asked


def test_lint_reports_a_written_key_that_has_no_effect(tmp_path, demo_jsonl, tiny_model_dirs, capsys):
    from conftest import tiny_config, write_config

    from tunewise.cli import main

    # quant_bits: 4 is the default, but written next to method lora it shows a misunderstanding
    path = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl, method={"quant_bits": 4}))
    assert main(["lint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[ignored-setting] method.quant_bits" in out and "qlora" in out
    assert main(["lint", str(path), "--lang", "zh"]) == 0
    assert "不起作用" in capsys.readouterr().out
