"""Run directories are contained: run names are one folder name, and the web board acts only on runs listed
under its root and only for requests addressed to it.

The board test drives its HTTP endpoints (as any page or script that can reach the port could) with
traversal names and absolute paths of a run directory outside the board's root, and checks that nothing
outside the root is written or deleted.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config, write_config
from tunewise.cli import main

pytestmark = pytest.mark.xdist_group("reliability")


def test_run_names_are_one_folder_name():
    from tunewise.config.schema import unsafe_run_name

    for bad in ["..", ".", "../../etc_x", "/abs/path", "a/b", "a\\b", ".board", "", "   ", " x", "x\n", "x\x00"]:
        assert unsafe_run_name(bad), bad
    for good in ["demo", "my-run_2", "运行一", "v1.5", "x" * 100]:
        assert unsafe_run_name(good) is None, good


def test_dotdot_with_overwrite_deletes_nothing(tmp_path, demo_jsonl, capsys):
    """The reported case: run.name '..' with --overwrite emptied the parent folder, the config included."""
    root = tmp_path / "proj" / "runs"
    root.mkdir(parents=True)
    cfg = tiny_config(tmp_path / "proj", demo_jsonl)
    cfg["run"] = {"root": str(root), "name": ".."}
    path = write_config(tmp_path / "proj" / "c.yaml", cfg)
    (root / "keep").mkdir()
    (root / "keep" / "config.yaml").write_text("precious")
    assert main(["train", str(path), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "'run.name'" in err and "one plain folder name: it starts with '.'" in err and "(got '..')" in err, err
    assert path.exists() and (root / "keep" / "config.yaml").read_text() == "precious"


# ------------------------------------------------------------------------------------------ the board over HTTP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def board(tmp_path_factory, module_home, tiny_model_dirs):
    """A board on a free port over <tmp>/runs; <tmp>/outside/victim is a run directory it must never touch."""

    from tunewise.ui import jobs
    from tunewise.ui.app import serve

    tmp = tmp_path_factory.mktemp("board")
    root = tmp / "runs"
    victim = tmp / "outside" / "victim"
    (victim / "adapter").mkdir(parents=True)
    (victim / "adapter" / "adapter_config.json").write_text("{}")
    (victim / "export").mkdir()
    (victim / "export" / "verify.json").write_text('{"status": "PASS"}')
    (victim / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (victim / "ui_train.log").write_text("secret log line\n")
    cfg = tiny_config(tmp, tmp / "data.jsonl")
    cfg["run"] = {"root": str(victim.parent), "name": "victim"}
    (victim / "config.yaml").write_text(yaml.safe_dump(cfg))
    from tunewise.samples.demo import write_demo_dataset

    data = write_demo_dataset(tmp / "data.jsonl")
    port = _free_port()
    demo = serve(root=str(root), port=port, block=False)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "root": root, "tmp": tmp, "victim": victim, "data": data}
    finally:
        jobs.stop_all()
        demo.close()


def _call(url: str, api: str, data: list) -> list:
    """POST one event to a named endpoint, then read its result from the event stream."""
    req = urllib.request.Request(f"{url}/gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    event = json.load(urllib.request.urlopen(req, timeout=60))["event_id"]
    text = urllib.request.urlopen(f"{url}/gradio_api/call/{api}/{event}", timeout=300).read().decode()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("event: complete"):
            return json.loads(lines[i + 1].removeprefix("data: "))
        if line.startswith("event: error"):
            raise AssertionError(f"{api}: {text}")
    raise AssertionError(f"{api}: no result in {text!r}")


def _form_values() -> list:
    from tunewise.ui import configure

    return [None if k == "train.learning_rate" else configure.form_default(k) for k, _ in configure.FORM_PARAMS]


def test_board_refuses_runs_outside_its_root(board):
    url, victim, tmp = board["url"], board["victim"], board["tmp"]
    outside_before = _tree(tmp / "outside")
    names = [str(victim), str(board["root"] / ".." / "outside" / "victim"), "../outside/victim", "/etc"]
    for name in names:
        for api, data in [("resume", [name]), ("stop", [name]), ("eval", [name, 5, False]),
                          ("export", [name, "f16", True])]:
            msg = _call(url, api, data)[0]
            assert "only acts on runs listed" in msg, (api, name, msg)
        status = _call(url, "status", [name])
        assert "only acts on runs listed" in status[0] and "secret" not in json.dumps(status), status
        chat = _call(url, "chat", ["hello", [], name, "tuned", "", 0.0, 0, 1.0, 1.0, 8])
        assert "only acts on runs listed" in json.dumps(chat)
        try:  # gradio refuses a value that is not one of the listed runs; if not, the board draws nothing for it
            plot = json.dumps(_call(url, "compare", [[name]]))
        except AssertionError as e:
            assert "not in the list of choices" in str(e)
        else:
            assert "victim" not in plot and "2.0" not in plot, plot
    assert _tree(tmp / "outside") == outside_before, "the board wrote or deleted outside its root"


def test_board_start_cannot_escape_its_root(board):
    url, tmp, root = board["url"], board["tmp"], board["root"]
    outside_before = _tree(tmp / "outside")
    values = _form_values()
    for name in ["../outside/victim", "..", str(board["victim"])]:
        msg = _call(url, "start", [name, "tiny-llama", str(board["data"]), "", True, *values])[0]
        assert "run.name" in msg and "Training started" not in msg, msg
    # a run root set through "more settings" must stay inside the board's root
    more = f"run.root={tmp / 'outside'}\ntrain.max_steps=1"
    msg = _call(url, "start", ["victim", "tiny-llama", str(board["data"]), more, True, *values])[0]
    assert "not inside" in msg and "Training started" not in msg, msg
    assert _tree(tmp / "outside") == outside_before
    assert not any(p.name == "victim" for p in root.iterdir()) if root.exists() else True
    assert sorted(p.name for p in tmp.iterdir()) == sorted(["runs", "outside", "data.jsonl"])


def test_board_refuses_other_host_names(board):
    port = board["port"]

    def get(host: str, origin: str | None = None):
        headers = {"Host": host} | ({"Origin": origin} if origin else {})
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{board['url']}/", headers=headers), timeout=30) as r:
                return r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers)

    for host in [f"evil.example:{port}", "attacker.test", f"127.0.0.1.nip.io:{port}"]:
        status, headers = get(host, origin=f"http://{host}")
        assert status == 403, host
        assert not any(k.lower() == "access-control-allow-origin" for k in headers), headers
    for host in [f"127.0.0.1:{port}", f"localhost:{port}"]:
        assert get(host)[0] == 200, host
