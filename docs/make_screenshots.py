"""Regenerate docs/screenshots/*.png by running the browser test with screenshots directed there.

    .venv/bin/python docs/make_screenshots.py

The test drives the real board (tiny model, headless Chromium) through every tab and saves one
screenshot per tab, downscaled and palette-quantised so each PNG stays well under 300 KB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    out = REPO / "docs" / "screenshots"
    env = dict(os.environ, TUNEWISE_SCREENSHOTS=str(out))
    cmd = [sys.executable, "-m", "pytest", str(REPO / "tests" / "ui" / "test_board.py"), "-q", "-p", "no:cacheprovider", "-x"]
    rc = subprocess.call(cmd, cwd=REPO, env=env)
    for png in sorted(out.glob("*.png")):
        kb = png.stat().st_size / 1024
        print(f"{png.relative_to(REPO)}  {kb:.0f} KB" + ("  (over 300 KB!)" if kb > 300 else ""))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
