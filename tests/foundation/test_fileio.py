"""Atomic writes leave files with the permissions any other file the user writes gets (not mkstemp's 0600)."""

import os
import stat

from tunewise.fileio import atomic_path, write_text


def test_written_files_and_folders_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        f = write_text(tmp_path / "Modelfile", "FROM ./model.gguf\n")
        with atomic_path(tmp_path / "merged", is_dir=True) as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "merged").stat().st_mode) == 0o755



PEAK_PROBE = """
import json, psutil
from tunewise.fileio import peak_rss_bytes
resident = psutil.Process().memory_info().rss
before = peak_rss_bytes()
block = bytearray(256 * 2**20)  # 256 MiB, touched page by page
block[::4096] = b"x" * len(block[::4096])
during = peak_rss_bytes()
del block
print(json.dumps([resident, before, during, peak_rss_bytes()]))
"""


def test_peak_rss_is_this_process_peak_and_keeps_a_freed_allocation():
    """fileio.peak_rss_bytes, shared by advise --measure and the benchmarks: at least what was resident, and it
    keeps a freed allocation's high-water mark. In a fresh process: a test worker's own mark is already set by the
    tests before, far above one allocation."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PEAK_PROBE], capture_output=True, text=True, timeout=120, check=True)
    resident, before, during, after = json.loads(out.stdout)
    assert before >= resident
    # kept after the free (the kernel settles the mark at unmap time, so it may read a few pages under `during`)
    assert during >= before + 200 * 2**20 and after >= before + 200 * 2**20
