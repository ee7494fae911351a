"""Where tunewise caches models it builds or dequantizes: $TUNEWISE_HOME or ~/.cache/tunewise."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("TUNEWISE_HOME", Path.home() / ".cache" / "tunewise"))
