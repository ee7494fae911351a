"""Worker processes for the data stage: a chunk function mapped over a stream of chunks, results in input order.

The data stage's per-record work (cleaning, MinHash, JSON; tokenising for the token stats) is pure Python and
NumPy, so threads would share one core; processes use them all. Results come back in the order the chunks went
out, so everything decided after them (duplicate indexes, ids, the split) is what one process decides, whatever
the number of workers.

Workers are forked: they start in milliseconds and inherit what the task needs (compiled patterns, a loaded
tokenizer) instead of importing and loading it again. A fork child leaves with os._exit, so the buffered files of
the parent it inherited are never flushed twice. Where fork does not exist the chunks run in this process.

The first chunks run in this process, so a small input never pays for a pool; at most `2 * workers` chunks are in
flight, so reading ahead is bounded. Chunks travel as marshal bytes (a few times faster than pickle for the dicts,
lists and strings records are made of), pickle for anything else.
"""

from __future__ import annotations

import marshal
import multiprocessing as mp
import os
import pickle
from collections import deque
from typing import Callable, Iterable, Iterator

INLINE_CHUNKS = 2  # chunks run in this process before a pool is started


def cpu_count() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(n: int) -> int:
    """data.num_workers: 0 means one per core; fewer than 2 (or no fork) means this process only."""
    n = cpu_count() if n == 0 else n
    return n if n > 1 and "fork" in mp.get_all_start_methods() else 1


def pack(obj) -> bytes:
    """A chunk or a chunk's result as bytes: for a worker here, or a file another machine reads."""
    try:
        return b"M" + marshal.dumps(obj)
    except ValueError:  # a type marshal does not know (a date a spreadsheet reader gave, ...)
        return b"P" + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes):
    return marshal.loads(data[1:]) if data[:1] == b"M" else pickle.loads(data[1:])


_TASK: Callable | None = None


def _init(task: Callable) -> None:
    global _TASK
    _TASK = task
    if hasattr(task, "in_worker"):  # what a worker sets for itself (e.g. one tokenizer thread)
        task.in_worker()


def _run(payload: bytes) -> bytes:
    return pack(_TASK(unpack(payload)))


def ordered_map(task: Callable, chunks: Iterable, workers: int, *, before_fork: Callable[[], None] | None = None,
                inline: int = INLINE_CHUNKS) -> Iterator:
    """task(chunk) for every chunk, in order, on `workers` processes (this one when workers < 2).

    `task` and its results must be plain data (dicts, lists, str, bytes, numbers) or picklable. `before_fork`
    runs once, just before the pool starts (flush what the children should see).
    """
    it = iter(chunks)
    if workers < 2:
        yield from map(task, it)
        return
    for _ in range(inline):
        chunk = next(it, None)
        if chunk is None:
            return
        yield task(chunk)
    chunk = next(it, None)
    if chunk is None:
        return
    if before_fork is not None:
        before_fork()
    with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(task,)) as pool:
        pending: deque = deque()
        while chunk is not None:
            pending.append(pool.apply_async(_run, (pack(chunk),)))
            if len(pending) >= 2 * workers:
                yield unpack(pending.popleft().get())
            chunk = next(it, None)
        while pending:
            yield unpack(pending.popleft().get())
