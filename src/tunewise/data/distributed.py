"""`tunewise data prepare` on a distributed engine: datatrove's executors (local processes, Slurm, Ray).

The data stage is already a map and an ordered reduce (tunewise.data.clean): `ChunkWork` cleans a chunk of rows
with no look at any other chunk (per-record steps, exact digests, near-duplicate band keys), and `Cleaner` then
decides the duplicates chunk after chunk in input order. Here the map runs as many tasks and the reduce as one:

- stage 1, `CleanChunks`, N tasks: each reads the row stream (rows are raw tuples; converting and cleaning them is
  the work) and runs `ChunkWork` on the chunks whose index i has i % N == its rank, writing each result to
  WORK/chunks/<stream>/<i>.bin (stream: "train" for data.datasets, "val" for data.val_datasets).
- stage 2, `tunewise.data.commands.WriteData`, one task after stage 1: `tunewise data prepare` itself
  (prepare_command), given the results read back in input order (`ChunkResults`) instead of cleaning the rows: the
  same duplicate decisions, spill file, split, leakage check, mix, token stats and files. It sits with the command
  (the top layer: token stats need the tokenizer and training's encoding), as does `prepare_local`, which runs
  both stages on datatrove's LocalPipelineExecutor.

So the run's data/ comes out byte for byte as `tunewise data prepare` writes it, whatever the number of tasks (the
output never depends on the chunk size either). The tasks share nothing but WORK, so any executor whose tasks see
one folder runs them. WORK belongs to one preparation: plan.json records the config, chunk size and input files it
was made for, and a task given another refuses it.

The steps are plain callables, step(data, rank, world_size), which datatrove's executors run as they run their own
PipelineSteps; datatrove itself (the extra tunewise[distributed]) is imported only where an executor is built
(tunewise.data.commands.prepare_local).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from tunewise.data.clean import CHUNK
from tunewise.errors import DataError

PLAN = "plan.json"


def plan_of(cfg, chunk_size: int) -> dict:
    """What a work folder's chunk results depend on: the data config (and the template's system prompt and the
    stage, which reading uses), the chunk size, the input files as they are now, and Python (marshal's format)."""
    reads = {"data": cfg.data.model_dump(mode="json"), "system": cfg.template.system, "stage": cfg.train.stage}
    files = []
    for spec in [*cfg.data.datasets, *cfg.data.val_datasets]:
        if spec.path and Path(spec.path).is_file():
            st = Path(spec.path).stat()
            files.append([str(spec.path), st.st_size, st.st_mtime_ns])
    digest = hashlib.sha256(json.dumps(reads, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    return {"config": digest[:16], "chunk_size": chunk_size, "files": files,
            "python": ".".join(map(str, sys.version_info[:2]))}


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader never sees half a file (each task writes its own temporary)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def check_plan(work: Path, plan: dict) -> bool:
    """Whether `work` was made for `plan` (False: for none yet); refuses a folder made for another preparation."""
    path = Path(work) / PLAN
    if not path.exists():
        return False
    had = json.loads(path.read_text(encoding="utf-8"))
    if had != plan:
        changed = ", ".join(k for k in plan if had.get(k) != plan[k])
        raise DataError(f"this work folder holds the chunks of another preparation (changed: {changed})",
                        where=str(work), fix="give a new work folder, or delete this one to start over")
    return True


def _claim(work: Path, plan: dict) -> None:
    """Record `plan` in `work`, or refuse a folder made for another preparation."""
    if not check_plan(work, plan):
        work.mkdir(parents=True, exist_ok=True)
        _write(work / PLAN, json.dumps(plan, indent=1).encode("utf-8"))


def chunk_path(work: Path, stream: str, index: int) -> Path:
    return Path(work) / "chunks" / stream / f"{index:08d}.bin"


class CleanChunks:
    """Stage 1: the per-record cleaning of this task's share of the chunks, one file per chunk (see the module
    docstring)."""

    def __init__(self, cfg, work: str | os.PathLike, chunk_size: int = CHUNK):
        self.cfg, self.work, self.chunk_size = cfg, Path(work), chunk_size

    def __repr__(self) -> str:
        return f"tunewise: clean chunks into {self.work}"

    def __call__(self, data=None, rank: int = 0, world_size: int = 1):
        from tunewise.data.clean import ChunkWork, batched
        from tunewise.data.parallel import pack
        from tunewise.data.prepare import cleaning_streams, leak_keys

        _claim(self.work, plan_of(self.cfg, self.chunk_size))
        keys = leak_keys(self.cfg)
        for stream, (rows, tag) in cleaning_streams(self.cfg).items():
            work = ChunkWork(self.cfg.data.clean, keys, tag)
            chunk_path(self.work, stream, 0).parent.mkdir(parents=True, exist_ok=True)
            n = 0
            for i, chunk in enumerate(batched(rows, self.chunk_size)):
                n = i + 1
                if i % world_size == rank:
                    _write(chunk_path(self.work, stream, i), pack(work(chunk)))
            _write(self.work / "chunks" / f"{stream}.count", str(n).encode())
        return data


class ChunkResults:
    """Stage 1's results of one stream, read back in input order (a `tunewise.data.prepare.Cleaned`)."""

    def __init__(self, work: str | os.PathLike):
        self.work = Path(work)

    def __call__(self, stream: str) -> Iterator[dict]:
        from tunewise.data.parallel import unpack

        count = self.work / "chunks" / f"{stream}.count"
        if not count.exists():
            raise DataError("stage 1 (CleanChunks) has not run in this work folder", where=str(self.work),
                            fix="run both stages, e.g. `python examples/distributed_prepare.py CONFIG --work DIR`")
        for i in range(int(count.read_text())):
            path = chunk_path(self.work, stream, i)
            if not path.exists():
                raise DataError(f"chunk {i} of the {stream} stream is missing: a stage 1 task did not finish",
                                where=str(path), fix="run stage 1 again with the same number of tasks (the task "
                                "whose rank is the chunk number modulo the tasks writes it)")
            yield unpack(path.read_bytes())
