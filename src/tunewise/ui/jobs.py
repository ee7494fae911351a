"""Background jobs of the board: `tunewise train|eval|export` as child processes, one log file each.

The board runs exactly the commands a user would type, so a run started here is the same run the CLI
makes. Output goes to RUN/ui_<kind>.log. Training's log is held back until the train command has
written RUN/config.yaml (it refuses a non-empty run directory, and --overwrite empties it), then
appended there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunewise.runs import RunDir

_TOTAL_RE = re.compile(r"\[tunewise\] training (\d+) steps")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # tqdm's cursor moves: noise in a log file


@dataclass
class Job:
    kind: str                  # train | eval | export
    run: Path
    argv: list[str]
    proc: subprocess.Popen
    started: float = field(default_factory=time.time)
    stopped_by_user: bool = False
    lines: list[str] = field(default_factory=list)   # the output so far (also in the log file)
    total_steps: int | None = None
    progress: list[tuple[float, int]] = field(default_factory=list)  # (time, step) seen by the board
    _pump: threading.Thread | None = None

    @property
    def log_path(self) -> Path:
        return self.run / f"ui_{self.kind}.log"

    def running(self) -> bool:
        return self.proc.poll() is None

    def returncode(self) -> int | None:
        return self.proc.poll()

    def state(self) -> str:
        rc = self.proc.poll()
        if rc is None:
            return "running"
        if self.stopped_by_user:
            return "stopped"
        return "finished" if rc == 0 else "failed"

    def tail(self, n: int = 30) -> str:
        return "".join(self.lines[-n:])

    def wait(self, timeout: float) -> int | None:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._pump is not None:
            self._pump.join(timeout=5)
        return rc

    def note_step(self, step: int) -> None:
        if not self.progress or self.progress[-1][1] != step:
            self.progress.append((time.time(), step))

    def eta_seconds(self) -> float | None:
        """Remaining seconds from the step rate the board has observed (None until it can tell)."""
        if not self.total_steps or len(self.progress) < 2 or not self.running():
            return None
        (t0, s0), (t1, s1) = self.progress[0], self.progress[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return max(0.0, (self.total_steps - s1) * (t1 - t0) / (s1 - s0))


_JOBS: dict[tuple[str, str], Job] = {}
_LOCK = threading.Lock()


def get(kind: str, run: str | Path) -> Job | None:
    return _JOBS.get((kind, str(Path(run).resolve())))


def running_jobs() -> list[Job]:
    return [j for j in _JOBS.values() if j.running()]


def _env() -> dict:
    env = dict(os.environ)  # no offline switch: a job reaches the Hub exactly when the same CLI command would
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _pump(job: Job, hold_until_config: bool) -> None:
    """Copy the child's output into job.lines and the log file (held until the run dir is the new one)."""
    pending: list[str] = []
    cfg_file = RunDir(job.run).config_file

    def ready() -> bool:
        if not hold_until_config:
            return True
        try:
            return cfg_file.stat().st_mtime >= job.started - 1
        except OSError:
            return False

    def flush() -> None:
        if not pending:
            return
        try:
            job.run.mkdir(parents=True, exist_ok=True)
            with open(job.log_path, "a", encoding="utf-8") as f:
                f.writelines(pending)
            pending.clear()
        except OSError:
            pass

    assert job.proc.stdout is not None
    for line in iter(job.proc.stdout.readline, ""):
        line = _ANSI.sub("", line)
        m = _TOTAL_RE.search(line)
        if m:
            job.total_steps = int(m.group(1))
        job.lines.append(line)
        del job.lines[:-400]
        pending.append(line)
        if ready():
            flush()
    job.proc.wait()
    flush()


def start(kind: str, run: str | Path, args: list[str], *, hold_log_until_config: bool = False) -> Job:
    """Start `python -m tunewise ARGS` for RUN; refuses when the same kind of job runs there already."""
    run = Path(run).resolve()
    with _LOCK:
        old = get(kind, run)
        if old is not None and old.running():
            raise RuntimeError(f"a {kind} job is already running for {run}")
        if not hold_log_until_config:
            run.mkdir(parents=True, exist_ok=True)
            (run / f"ui_{kind}.log").unlink(missing_ok=True)
        argv = [sys.executable, "-m", "tunewise", *args]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, encoding="utf-8", errors="replace", bufsize=1, env=_env())
        job = Job(kind, run, argv, proc)
        job._pump = threading.Thread(target=_pump, args=(job, hold_log_until_config), daemon=True)
        job._pump.start()
        _JOBS[(kind, str(run))] = job
        return job


_REMOTE = {"allowed": False}


def allow_remote_code(allowed: bool) -> None:
    """`tunewise ui --trust-remote-code`: the board's chat, and the jobs it starts, may run a model's own code."""
    from tunewise.runs import allow_remote_code as allow_here

    _REMOTE["allowed"] = bool(allowed)
    allow_here(allowed)


def remote_code() -> bool:
    return _REMOTE["allowed"]


def remote_code_args() -> list[str]:
    return ["--trust-remote-code"] if _REMOTE["allowed"] else []


def start_train(config_path: str | Path, run: str | Path, *, resume: bool = False, overwrite: bool = False) -> Job:
    args = ["train", str(config_path)]
    if resume:
        args.append("--resume")
    elif overwrite:
        args.append("--overwrite")
    return start("train", run, args, hold_log_until_config=True)


def stop(job: Job, grace: float = 10.0) -> int | None:
    """Terminate a job (SIGTERM, then SIGKILL after `grace` seconds). Saved checkpoints stay."""
    if not job.running():
        return job.returncode()
    job.stopped_by_user = True
    job.proc.terminate()
    rc = job.wait(grace)
    if rc is None:
        job.proc.kill()
        rc = job.wait(grace)
    return rc


def stop_all(grace: float = 5.0) -> None:
    for j in list(_JOBS.values()):
        if j.running():
            stop(j, grace)
