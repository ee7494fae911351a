"""The stages stand in order: no module imports one from a higher layer (and so no import circle between stages).

Every import counts, including the ones inside functions (tunewise imports heavy modules lazily, and a lazy
import upward is still a dependency upward). A stage's command-line front (`cli.py`, `commands.py`) belongs
to the top layer with the CLI and the Python API it serves.
"""

import ast
from pathlib import Path

import pytest

import tunewise

SRC = Path(tunewise.__file__).resolve().parent

# The layer order, bottom first, written once. A unit is a top-level module or a subpackage of tunewise.
LAYERS = [
    ["errors", "fileio", "stamp", "textmetrics", "faults", "extras", "cpu", "hardware", "console", "samples", "_callable", "compat",
     "__version__"],
    ["config", "templates", "models"],
    ["runs"],  # the run directory: its paths, and its config, template and tokenizer read once (RunDir)
    ["data", "methods", "curves"],  # curves: the learning-curve verdict, read from metrics.jsonl alone
    ["train"],
    ["advise", "evaluate", "infer", "export"],
    ["api", "cli", "demo", "ui", "__main__", "__init__"],
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}
TOP = len(LAYERS) - 1
FRONTS = {"cli.py", "commands.py"}  # a stage's command-line front: top layer


def _unit(rel: Path) -> str:
    return rel.parts[0].removesuffix(".py")


def _level(rel: Path) -> int:
    return TOP if rel.name in FRONTS else LEVEL[_unit(rel)]


def _targets(node, fronts: bool = False) -> list[str]:
    """The tunewise units an import statement reaches (fronts: a stage's command front as '<pkg>/cli')."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if node.module == "tunewise":  # from tunewise import api / __version__
            return [a.name if (SRC / a.name).exists() or (SRC / f"{a.name}.py").exists() else "__version__"
                    for a in node.names]
        names = [node.module]
    else:
        return []
    out = []
    for n in names:
        parts = n.split(".")
        if parts[0] != "tunewise" or len(parts) < 2:
            continue
        front = fronts and len(parts) > 2 and f"{parts[-1]}.py" in FRONTS
        out.append(f"{parts[1]}/cli" if front else parts[1])
    return out


def upward_imports() -> list[str]:
    found = []
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC)
        me, mine = _unit(rel), _level(rel)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            for unit in _targets(node):
                if unit == me:
                    continue
                assert unit in LEVEL, f"{rel}:{node.lineno} imports tunewise.{unit}, which has no layer in LAYERS"
                if LEVEL[unit] > mine:
                    found.append(f"{rel}:{node.lineno} ({LAYERS[mine] if mine < TOP else 'top'}) imports "
                                 f"tunewise.{unit} (layer {LEVEL[unit]})")
    return found


def test_every_unit_has_a_layer():
    units = {p.name.removesuffix(".py") for p in SRC.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert units - set(LEVEL) == set(), "add the new module to LAYERS"


def test_no_stage_imports_a_higher_one():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a lazy import from config up into train is found."""
    fake = tmp_path / "tunewise"
    (fake / "config").mkdir(parents=True)
    (fake / "train").mkdir()
    for d in ("config", "train"):
        (fake / d / "__init__.py").write_text("")
    (fake / "config" / "load.py").write_text("def f():\n    from tunewise.train.workflow import train\n")
    monkeypatch.setitem(globals(), "SRC", fake)
    found = upward_imports()
    assert len(found) == 1 and found[0].startswith("config/load.py:2") and "tunewise.train" in found[0]


@pytest.mark.parametrize("front", sorted(FRONTS))
def test_command_fronts_sit_on_top(front):
    assert _level(Path("data") / front) == TOP


def unit_graph() -> dict[str, set[str]]:
    """unit -> the other tunewise units it imports (command fronts counted as their own unit, '<pkg>/cli')."""
    graph: dict[str, set[str]] = {}
    for f in sorted(SRC.rglob("*.py")):
        rel = f.relative_to(SRC)
        me = f"{_unit(rel)}/cli" if rel.name in FRONTS else _unit(rel)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            graph.setdefault(me, set()).update(u for u in _targets(node, fronts=True) if u != me)
    return graph


def test_no_import_circle_between_units():
    graph = unit_graph()
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(u, path):
        seen[u] = 1
        for v in sorted(graph.get(u, ())):
            if seen.get(v) == 1:
                circles.append(" -> ".join(path[path.index(v):] + [v]))
            elif v not in seen:
                visit(v, path + [v])
        seen[u] = 2

    for u in sorted(graph):
        if u not in seen:
            visit(u, [u])
    assert circles == []
