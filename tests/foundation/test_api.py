"""The Python API (tunewise/api.py) on tiny models: train -> Run -> evaluate / chat / export, prepare_data,
advise, explain; overrides, errors, and an import that stays light."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

import tunewise
from conftest import REPO, tiny_config
from tunewise.errors import ConfigError, RunError

pytestmark = pytest.mark.xdist_group("api")  # one worker trains the module's run once


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dirs, module_home):
    from tunewise.samples.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("api")
    cfg = tiny_config(root, write_demo_dataset(root / "demo.jsonl"), data={"val_size": 4})
    before = copy.deepcopy(cfg)
    run = tunewise.train(cfg, train__max_steps=3, run__name="api", **{"train.logging_steps": 1})
    assert cfg == before  # the caller's dict is not modified
    return {"cfg": cfg, "run": run, "root": root}


def test_import_is_light_and_the_api_is_at_the_top_level():
    code = ("import sys, tunewise; [getattr(tunewise, n) for n in tunewise.__all__]; "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'huggingface_hub') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"
    assert set(tunewise.__all__) == {"Run", "advise", "explain", "load_config", "prepare_data", "train"}


def test_train_returns_a_run_with_the_overrides_applied(setup):
    run = setup["run"]
    assert isinstance(run, tunewise.Run) and os.fspath(run) == str(setup["root"] / "runs" / "api")
    assert run.config.train.max_steps == 3 and run.config.train.logging_steps == 1
    assert run.summary["global_step"] == 3 and run.summary["method"] == "lora"
    assert [m["step"] for m in run.metrics if "loss" in m][:3] == [1, 2, 3]
    assert (run.path / "adapter" / "adapter_model.safetensors").exists()
    assert repr(run) == f"tunewise.Run('{run.path}')" and tunewise.Run(run.path).name == "api"


def test_overrides_double_underscore_and_dotted_keys_mean_the_same(setup):
    a = tunewise.load_config(setup["cfg"], train__learning_rate=1e-4, data__clean__dedup_near=True)
    b = tunewise.load_config(setup["cfg"], **{"train.learning_rate": 1e-4, "data.clean.dedup_near": True})
    assert a == b and a.train.learning_rate == 1e-4 and a.data.clean.dedup_near is True
    c = tunewise.load_config(a, method__name="full")  # a loaded Config takes overrides too
    assert c.method.name == "full" and c.train.learning_rate == 1e-4
    path = REPO / "examples" / "tiny.yaml"
    assert tunewise.load_config(path, train__num_epochs=1).run.name == "tiny"


def test_errors_are_the_clis_tunewise_errors_with_their_fix(setup, tmp_path):
    with pytest.raises(ConfigError) as e:
        tunewise.train(setup["cfg"], train__learnig_rate=1e-4)
    assert "did you mean 'train.learning_rate'" in str(e.value) and e.value.fix and "(with overrides)" in e.value.where
    assert not (setup["root"] / "runs" / "t").exists()  # failed before any work
    with pytest.raises(RunError) as e:
        tunewise.Run(tmp_path)
    assert "not a tunewise run directory" in e.value.what and "runs/demo" in e.value.fix
    with pytest.raises(ConfigError, match="a config is a YAML path, a dict of sections or a Config, not int") as e:
        tunewise.load_config(42)
    assert e.value.where == "tunewise API" and "examples/tiny.yaml" in e.value.fix
    with pytest.raises(ConfigError, match="unknown sampling"):
        setup["run"].chat("hi", temprature=0)


def test_train_and_advise_are_callable_even_after_their_subpackages_are_imported():
    import tunewise.advise.lint  # noqa: F401
    import tunewise.train.workflow  # noqa: F401
    from tunewise import advise, train

    assert train is tunewise.train and advise is tunewise.advise and tunewise.train.workflow.train
    with pytest.raises(ConfigError, match="a config is a YAML path, a dict of sections or a Config, not int"):
        tunewise.train(42)
    with pytest.raises(ConfigError, match="a config is a YAML path, a dict of sections or a Config, not int"):
        advise(42)


def test_run_evaluate_chat_and_export(setup):
    run = setup["run"]
    report = run.evaluate(max_samples=2, forgetting=False, max_new_tokens=8)
    assert report["table"]["header"][0] == "metric" and report["table"]["rows"]
    assert json.loads((run.path / "eval" / "report.json").read_text())["table"] == report["table"]

    answer = run.chat("Hello", temperature=0, max_new_tokens=6)
    assert isinstance(answer, str)
    lm = run._models[(False, None)]
    assert run.chat("Hello", temperature=0, max_new_tokens=6) == answer  # greedy: the same answer,
    assert run._models[(False, None)] is lm                            # from the model loaded once
    assert isinstance(run.chat("Hi", history=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                               base=True, max_new_tokens=4), str)

    result = run.export()
    assert (run.path / "export" / "merged" / "model.safetensors").exists() and result["merged"].endswith("merged")
    assert "gguf" not in result and "url" not in result


def test_prepare_data_advise_and_explain(setup, tmp_path):
    data = tunewise.prepare_data(setup["cfg"], out=tmp_path / "prep")
    assert (data / "train.jsonl").exists() and (data / "stats.json").exists()
    advice = tunewise.advise(setup["cfg"], train__per_device_batch_size=2)
    assert {"hardware", "memory", "recommendations", "reasons", "lint"} <= set(advice)
    assert "recommendations:" in str(advice) and "lora" in advice["memory"]
    assert "too high" in tunewise.explain("train.learning_rate").lower()
    assert "学习率" in tunewise.explain("train.learning_rate", lang="zh")
    assert "train.learning_rate" in tunewise.explain()
