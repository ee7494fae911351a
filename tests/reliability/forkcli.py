"""Run `tunewise` commands as separate processes that start in milliseconds: fork the test process.

A `python -m tunewise` subprocess spends ~15 s importing torch and transformers on a busy 2-core machine;
a forked child of the test process (which has them imported already) starts at once, runs
`tunewise.cli.main(argv)` exactly as the command line would, and is a real process: it has its own exit
status, can be SIGKILLed (by the parent's timer or by a `TUNEWISE_CRASH_AT` crash point), and anything it
leaves on disk is what a killed `tunewise` would leave. An exception that escapes `main` is printed as
Python prints it (a traceback) and exits 1, as the real entry point would.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass


@dataclass
class Result:
    rc: int          # exit status, or -signal when killed
    out: str
    err: str

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


_WARM = [
    "transformers", "peft", "torch.utils.tensorboard", "matplotlib.pyplot", "rich.console",
    "tunewise.train.workflow", "tunewise.train.trainer", "tunewise.data.prepare", "tunewise.data.commands",
    "tunewise.methods", "tunewise.curves.report", "tunewise.export.cli", "tunewise.export.merge",
    "tunewise.export.gguf", "tunewise.export.verify", "tunewise.infer.generate",
]


def warm() -> None:
    """Import in the parent what every child would import (~15 s each time otherwise); once per process."""
    import importlib

    for name in _WARM:
        importlib.import_module(name)
    from transformers import Trainer  # noqa: F401  (lazy attribute: imports the trainer stack)

    from tunewise.export.gguf import _import_converter

    try:
        _import_converter()
        import llama_cpp  # noqa: F401
    except Exception:  # the export tests report a missing converter themselves
        pass


def fork_cli(argv: list[str], *, env: dict | None = None, kill_after: float | None = None, timeout: float = 300) -> Result:
    """Run `tunewise ARGV` in a forked child; SIGKILL it after `kill_after` seconds if given."""
    import torch

    torch.set_num_threads(1)
    warm()
    with tempfile.TemporaryDirectory(prefix="tw-fork-") as tmp:
        out_p, err_p = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                out, err = open(out_p, "w", buffering=1), open(err_p, "w", buffering=1)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = out, err
                os.environ.update(env or {})
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
        deadline = time.time() + timeout
        kill_at = time.time() + kill_after if kill_after is not None else None
        status = None
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            now = time.time()
            if (kill_at is not None and now >= kill_at) or now >= deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                if now >= deadline and (kill_at is None or now < kill_at):
                    raise TimeoutError(f"`tunewise {' '.join(argv)}` did not finish within {timeout}s")
                break
            time.sleep(0.02)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        with open(out_p, encoding="utf-8", errors="replace") as f:
            out_text = f.read()
        with open(err_p, encoding="utf-8", errors="replace") as f:
            err_text = f.read()
    return Result(rc, out_text, err_text)
