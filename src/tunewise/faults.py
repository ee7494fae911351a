"""Named crash points, for the fault-injection tests (tests/reliability/).

`TUNEWISE_CRASH_AT=name` (or `name:N`; names may hold ':' themselves, as in `checkpoint:written:2`) makes the process SIGKILL itself the first (N-th) time it reaches
`crash_point(name)`; several points may be given, comma-separated. Unset, a crash point costs one
environment lookup. The points sit where a crash does the most damage: after a file is written but
before it is renamed into place, inside a checkpoint save, between the steps of an export.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get("TUNEWISE_CRASH_AT")
    if not spec:
        return
    _hits[name] += 1
    for item in spec.split(","):
        point, _, nth = item.strip().rpartition(":")
        if not nth.isdigit():
            point, nth = item.strip(), "1"
        if point == name and _hits[name] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)
