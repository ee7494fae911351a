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


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _watch(monkeypatch, looks, threads=2):
    """A ThreadWatch on 2 cores whose /proc/stat reads come from `looks`: (other processes' cores busy) per look,
    with this process using `threads` cores' worth over each 30-second window."""
    import torch

    monkeypatch.setattr(cpu, "_affinity", lambda: {0, 1})
    torch.set_num_threads(threads)
    state = {"busy": 0, "total": 0, "own": 0}
    clock, said = _Clock(), []

    def sample():
        return (state["busy"], state["total"], state["own"])

    w = cpu.ThreadWatch(cpu.ThreadChoice(threads, 2, 0.0, "measured"), interval_s=30, sample=sample, now=clock,
                        say=said.append)
    counts = []
    for other in looks:
        own = min(2, torch.get_num_threads())
        window = 30 * 100  # jiffies per core over 30 s
        state["total"] += 2 * window
        state["own"] += int(own * window * 0.95)
        state["busy"] += int((own * 0.95 + other) * window)
        clock.t += 30
        w.check()
        counts.append(torch.get_num_threads())
    return counts, said, w


def test_threads_follow_a_neighbour_that_starts_and_stops(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        # a neighbour takes a core for two looks, then leaves: one thread after it is seen twice, two again after
        counts, said, w = _watch(monkeypatch, [0, 1.0, 1.0, 1.0, 0, 0, 0])
        assert counts == [2, 2, 1, 1, 1, 2, 2]
        assert [c[:2] for c in w.changes] == [(2, 1), (1, 2)]
        assert said[0].startswith("[tunewise] CPU threads: 2 -> 1 (other processes now keep 1.0 of 2 cores busy")
        # a burst seen once changes nothing
        counts, _, w = _watch(monkeypatch, [1.0, 0, 1.0, 0])
        assert counts == [2, 2, 2, 2] and not w.changes
    finally:
        torch.set_num_threads(before)


def test_no_look_before_the_interval(monkeypatch):
    monkeypatch.setattr(cpu, "_affinity", lambda: {0, 1})
    calls = []
    clock = _Clock()
    w = cpu.ThreadWatch(cpu.ThreadChoice(2, 2, 0.0, "measured"), interval_s=30,
                        sample=lambda: calls.append(1) or (0, 0, 0), now=clock)
    clock.t = 29
    assert w.check() is None and len(calls) == 1  # only the first look, at start


def test_only_a_measured_choice_is_followed(tmp_path, tiny_model_dirs, demo_jsonl, monkeypatch):
    from conftest import tiny_config
    from tunewise.config.schema import Config
    from tunewise.train.assemble import build_trainer
    from tunewise.train.callbacks import FollowFreeCores

    monkeypatch.setattr(cpu, "_chosen", cpu.ThreadChoice(1, 2, 1.0, "measured"))
    cfg = Config.model_validate(tiny_config(tmp_path, demo_jsonl))

    def followers():
        trainer, _ = build_trainer(cfg, torch_model(), [{"input_ids": [1, 2], "labels": [1, 2]}], out=tmp_path, pad_id=0,
                                   report=False)
        return [c for c in trainer.callback_handler.callbacks if isinstance(c, FollowFreeCores)]

    assert len(followers()) == 1
    monkeypatch.setattr(cpu, "_chosen", cpu.ThreadChoice(1, 2, 0.0, "config"))
    assert followers() == []


def torch_model():
    import torch

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2)

        def forward(self, input_ids=None, labels=None, **kw):
            return {"loss": self.w.weight.sum()}

    return M()
