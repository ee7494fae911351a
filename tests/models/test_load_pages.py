"""models/load.checkpoint_pages_released: a converting load does not keep the whole checkpoint file resident."""

import mmap
import os

import pytest
import torch

from tunewise.models.load import checkpoint_pages_released, converts_on_load, load_model, stored_dtype


def _mapped_rss_kb(path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split()[0] if line.strip() else ""
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(str(path))
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux's /proc")
def test_the_mapped_file_leaves_the_resident_set_and_reads_back_the_same(tmp_path):
    path = tmp_path / "model.safetensors"  # any file named so: the mapping is what the thread looks for
    data = os.urandom(32 * 2 ** 20)
    path.write_bytes(data)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    try:
        assert m[:] == data and _mapped_rss_kb(path) > 30 * 1024  # every page read: all resident
        import time

        with checkpoint_pages_released(every=0.02):
            time.sleep(0.3)
            assert _mapped_rss_kb(path) < 2 * 1024  # paged out while the block runs
        assert m[:] == data  # nothing lost: read back from the page cache or the file
    finally:
        m.close()


def test_which_loads_convert(tiny_model_dirs):
    d = tiny_model_dirs["tiny-llama"]
    stored = stored_dtype(d)
    other = "bfloat16" if stored == "float32" else "float32"
    assert converts_on_load(d, other, {}) and not converts_on_load(d, stored, {})
    assert converts_on_load(d, stored, {"quantization_config": object()})
    assert not converts_on_load(d, "float32", {}) if stored == "float32" else converts_on_load(d, "auto", {})


def test_a_converting_load_gives_the_same_weights(tiny_model_dirs, monkeypatch):
    """With the pages paged out as fast as the thread can go, every weight equals a load without it."""
    import tunewise.models.load as load

    d = tiny_model_dirs["tiny-qwen2"]
    stored = stored_dtype(d)
    other = "bfloat16" if stored == "float32" else "float32"
    calls = []
    real = load.checkpoint_pages_released
    monkeypatch.setattr(load, "checkpoint_pages_released", lambda *a, **k: (calls.append(1), real(0.001))[1])
    a = load_model(d, dtype=other)
    assert calls, "a converting load runs with the pages released"
    monkeypatch.setattr(load, "converts_on_load", lambda *a: False)
    b = load_model(d, dtype=other)
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), n
