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
