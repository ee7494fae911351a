"""CPU threads chosen from the cores other processes leave free (tunewise/cpu.py)."""

import subprocess
import sys
import time

import pytest

from tunewise import cpu


def test_an_explicit_choice_wins():
    c = cpu.choose_threads(3, measure=lambda: 1.0, environ={"OMP_NUM_THREADS": "2"})
    assert (c.threads, c.source) == (3, "config") and "train.num_threads" in c.line()
    c = cpu.choose_threads(None, measure=lambda: 1.0, environ={"OMP_NUM_THREADS": "2"})
    assert (c.threads, c.source) == (2, "OMP_NUM_THREADS")


@pytest.mark.parametrize("busy, want_free", [(0.0, 0), (0.3, 0), (0.7, 1), (1.0, 1), (1.5, 1), (1.7, 2), (50.0, 99)])
def test_busy_cores_are_left_to_their_processes(monkeypatch, busy, want_free):
    monkeypatch.setattr(cpu, "_affinity", lambda: {0, 1, 2, 3})
    monkeypatch.setattr(cpu, "_quota", lambda: None)
    c = cpu.choose_threads(None, measure=lambda: busy, environ={})
    assert c.threads == max(1, 4 - want_free), c
    assert c.source == "measured"
    if c.threads < 4:
        assert "other processes keep" in c.line()


def test_a_cgroup_quota_caps_the_threads(monkeypatch):
    monkeypatch.setattr(cpu, "_affinity", lambda: set(range(16)))
    monkeypatch.setattr(cpu, "_quota", lambda: 2)
    assert cpu.choose_threads(None, measure=lambda: 0.0, environ={}).threads == 2


def test_unmeasurable_load_means_every_core(monkeypatch):
    monkeypatch.setattr(cpu, "_affinity", lambda: {0, 1})
    monkeypatch.setattr(cpu, "_quota", lambda: None)
    assert cpu.choose_threads(None, measure=lambda: None, environ={}).threads == 2


def test_a_cpu_bound_neighbour_is_measured():
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<20: pass"])
    try:
        time.sleep(0.5)
        busy = cpu.busy_elsewhere(1.0)
    finally:
        spin.kill()
    assert busy is not None and busy >= 0.6, busy


def test_this_process_is_not_its_own_neighbour(monkeypatch):
    """Our own threads' jiffies are taken out of the machine's: 2 of 2 cores busy over the window, one of them
    this process, leaves one busy elsewhere."""
    system = iter([(1000, 10_000), (1200, 10_200)])  # (busy, total) over both CPUs: 200 of 200 busy
    own = iter([50, 150])  # this process: 100 of them
    monkeypatch.setattr(cpu, "_affinity", lambda: {0, 1})
    monkeypatch.setattr(cpu, "_jiffies", lambda cpus: next(system))
    monkeypatch.setattr(cpu, "_own_jiffies", lambda: next(own))
    assert cpu.busy_elsewhere(0.0) == pytest.approx(1.0)


def test_use_threads_applies_once(monkeypatch):
    import torch

    monkeypatch.setattr(cpu, "_chosen", None)
    before = torch.get_num_threads()
    try:
        c, new = cpu.use_threads(1)
        assert new and torch.get_num_threads() == 1
        c2, new2 = cpu.use_threads(None)
        assert c2 is c and not new2
    finally:
        torch.set_num_threads(before)


def test_the_line_speaks_both_languages(monkeypatch):
    monkeypatch.setattr(cpu, "_affinity", lambda: {0, 1})
    monkeypatch.setattr(cpu, "_quota", lambda: None)
    c = cpu.choose_threads(None, measure=lambda: 1.0, environ={})
    assert c.line().startswith("CPU threads: 1 (other processes keep 1.0 of 2 cores busy")
    assert c.line("zh").startswith("CPU 线程：1（其他进程占用了 2 个核心中的 1.0 个")
