"""The one way tunewise tells the user what it is doing: a line on stderr (stdout stays for results)."""

from __future__ import annotations

import sys


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
