"""`tunewise data prepare` as tasks of datatrove's LocalPipelineExecutor: the same data/ folder, byte for byte.

    pip install "tunewise[distributed]"
    python examples/distributed_prepare.py my.yaml --tasks 4 --work work/my

Stage 1 cleans the chunks on --tasks processes (--workers at a time) and leaves one file per chunk in --work;
stage 2 decides the duplicates in input order and writes the run's data/ as `tunewise data prepare` does. For a
cluster, build the two executors from the same steps (docs/distributed-data.md):

    from datatrove.executor import SlurmPipelineExecutor
    from tunewise.data.commands import WriteData
    from tunewise.data.distributed import CleanChunks
    clean = SlurmPipelineExecutor([CleanChunks(cfg, WORK)], tasks=64, time="2:00:00", partition="cpu",
                                  logging_dir=f"{WORK}/logs/clean")
    write = SlurmPipelineExecutor([WriteData(cfg, WORK)], tasks=1, time="2:00:00", partition="cpu",
                                  logging_dir=f"{WORK}/logs/write", depends=clean, skip_completed=False)
    write.run()
"""

from __future__ import annotations

import argparse
import sys

from tunewise.config import load_config
from tunewise.data.clean import CHUNK
from tunewise.data.parallel import cpu_count
from tunewise.errors import TunewiseError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="YAML config file (the one `tunewise data prepare` takes)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("--work", required=True, help="folder for the chunk results and datatrove's logs (one per preparation)")
    p.add_argument("--tasks", type=int, default=cpu_count(), help="stage 1 tasks: each cleans every tasks-th chunk")
    p.add_argument("--workers", type=int, default=-1, help="stage 1 processes at a time (-1: one per task)")
    p.add_argument("--chunk-size", type=int, default=CHUNK, help="records per chunk (never changes the output)")
    p.add_argument("--out", help="write data/ here instead of the run directory")
    p.add_argument("--overwrite", action="store_true", help="the run is already trained: start it over with the new data")
    a = p.parse_args(argv)
    from tunewise.data.commands import prepare_local

    try:
        cfg = load_config(a.config, a.overrides)
        print(prepare_local(cfg, a.work, tasks=a.tasks, workers=a.workers, out=a.out, overwrite=a.overwrite,
                            chunk_size=a.chunk_size))
    except TunewiseError as e:
        print(e.render(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # datatrove starts its task processes with forkserver, which imports this file again
    sys.exit(main())
