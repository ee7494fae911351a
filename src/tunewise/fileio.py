"""Small I/O helpers shared by every stage: atomic writes, leftover cleanup, disk-full errors, and JSONL
with line-numbered errors.

Every file a stage hands to the next is written to a temporary name beside its target (`.NAME.XXXX.tmp`)
and renamed over it when complete, so a crash leaves the old file or the new one, never half of one. A
crash can leave the temporary behind; `clean_temps` removes them when the stage runs again.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from tunewise.errors import DataError, RunError
from tunewise.faults import crash_point


@contextmanager
def atomic_path(target: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it over `target` only if the block succeeds.

    Nothing half-written is ever left at `target`: on error the temporary is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create 0600/0700 for privacy; a result is shared like any file the user writes (an Ollama
    # service running as its own user must read the GGUF and Modelfile): the usual permissions under the umask.
    os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
    try:
        yield tmp
        crash_point(f"atomic:{target.name}")
        if is_dir and target.exists():
            # Moved aside first, then removed: a crash in between leaves a temporary, not half a folder.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
            os.replace(target, old / "old")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
            return
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def proc_status(field: str) -> str | None:
    """The first word of a field of /proc/self/status (e.g. 'Umask', 'VmHWM' in kB); None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return line.split()[1]
    except (OSError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (VmHWM). Not ru_maxrss where VmHWM exists: Linux keeps ru_maxrss
    across exec, so a process started by a large parent would report the parent's peak; VmHWM belongs to the address
    space exec created."""
    if (hwm := proc_status("VmHWM")) is not None:
        return int(hwm) * 1024  # kB
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask, read without changing it (os.umask can only set it); 022 where it cannot be read."""
    mask = proc_status("Umask")
    return int(mask, 8) if mask else 0o022


def is_temp(p: Path) -> bool:
    """A temporary that `atomic_path` or the data stage's spill files leave when a process is killed."""
    return p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.startswith(".spill-"))


def clean_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries left in `folder` (not below it) by an interrupted run; returns what went."""
    folder = Path(folder)
    gone = []
    if folder.is_dir():
        for p in folder.iterdir():
            if is_temp(p):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
                gone.append(p)
    return gone


DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def is_disk_full(e: BaseException) -> bool:
    """An OSError for a full disk or quota, or torch's/safetensors' wording of one.

    torch.save reports a short write only as "[enforce fail at inline_container.cc:N] . unexpected pos A vs B"
    (no errno, no "file write failed" in torch 2.13); a short write of a local file is a full disk or quota.
    """
    if isinstance(e, OSError) and e.errno in DISK_FULL:
        return True
    text = str(e).lower()
    return ("no space left" in text or "disk quota" in text or "file write failed" in text
            or ("inline_container" in text and "unexpected pos" in text))


def disk_full_error(e: BaseException, where: str | os.PathLike, keeps: str) -> RunError:
    return RunError(f"the disk is full ({e.strerror if isinstance(e, OSError) and e.strerror else e})", where=str(where),
                    fix=f"free disk space (or point run.root at a larger disk) and run the command again; {keeps}")


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield (line_number, object) for each non-blank line; a bad line raises DataError naming it."""
    path = Path(path)
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"malformed JSON ({e.msg} at column {e.colno})",
                    where=f"{path}:{lineno}",
                    fix="each line of a .jsonl file must be one complete JSON object; fix or delete this line",
                ) from None


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(
            f"malformed JSON ({e.msg})",
            where=f"{path}:{e.lineno}:{e.colno}",
            fix="fix the JSON syntax at that position (a trailing comma or a missing quote is the usual cause)",
        ) from None
