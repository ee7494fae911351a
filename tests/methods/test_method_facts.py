"""The method registry owns each method's facts (#23): what it trains, its default learning rate and range,
its trainable-parameter estimator. Config defaults, the LR advice, the lint, the effect table and the memory
estimate read them; nobody keeps a list of method names of their own."""

import ast
from pathlib import Path

import pytest

from tunewise import methods
from tunewise.config import methods as method_facts

SRC = Path(methods.__file__).resolve().parents[1]
OWNERS = {SRC / "config" / "methods.py"}  # the facts table itself


def test_every_registered_method_has_its_facts_and_estimator():
    names = [m.name for m in methods.all_methods()]
    assert sorted(names) == sorted(method_facts.FACTS)
    for m in methods.all_methods():
        assert m.facts is method_facts.FACTS[m.name]
        assert m.peft == (m.facts.trains != "weights")  # adapter/ vs model/ follows from what it trains
        assert callable(m.trainable_params)


def test_registering_a_method_without_facts_is_refused():
    with pytest.raises(TypeError, match="no entry in tunewise/config/methods.py"):
        methods.register("made-up", en="", zh="", trainable_params=lambda f, mp: 0)


def test_defaults_and_advice_follow_the_facts(tmp_path, monkeypatch):
    """Change one fact and every reader follows: the config default, the LR range the lint uses."""
    from dataclasses import replace

    from tunewise.advise.lint import lint
    from tunewise.advise.lr import advise_lr
    from tunewise.config import load_config

    changed = replace(method_facts.FACTS["prompt"], default_lr=3e-3, lr_range=(1e-3, 5e-3))
    monkeypatch.setitem(method_facts.FACTS, "prompt", changed)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model: {name_or_path: tiny-llama}\nmethod: {name: prompt}\n"
                        "data: {datasets: [{path: d.jsonl}]}\n")
    cfg = load_config(cfg_file)
    assert cfg.train.learning_rate == 3e-3
    assert advise_lr("prompt", "llama", 1000).value == 3e-3
    far = load_config(cfg_file, ["train.learning_rate=5e-6"])  # 200x under the new range: far out of it
    from tunewise.advise.lint import Facts

    ids = [f.code for f in lint(far, Facts(n_train=100))]
    assert "lr-far-out-of-range" in ids


def _method_name_lists(path: Path) -> list[str]:
    """Tuple/list/set literals of two or more method names (a private list of methods) in one file."""
    names = set(method_facts.FACTS)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            strs = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(strs) == len(node.elts) and len([s for s in strs if s in names]) >= 2 and set(strs) <= names:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {tuple(strs)}")
    return found


def test_no_module_keeps_its_own_list_of_methods():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path not in OWNERS:
            found += _method_name_lists(path)
    assert found == [], "keep method facts in tunewise/config/methods.py (MethodFacts), not in a list here"


def test_the_list_finder_finds_a_list(tmp_path):
    planted = SRC / "advise" / "_planted_for_test.py"
    planted.write_text('LORA_LIKE = {"lora", "qlora", "prefix"}\n', encoding="utf-8")
    try:
        found = _method_name_lists(planted)
        assert len(found) == 1 and found[0].startswith("advise/_planted_for_test.py:1 ")
    finally:
        planted.unlink()
