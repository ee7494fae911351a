"""How many CPU threads torch should use: the cores this process may run on that other processes leave free.

torch's default is one thread per core. On a machine where other CPU-bound processes run (every laptop), a
thread that shares its core with another process runs at half speed, and every parallel op waits for its
slowest thread at the end: on 2 cores (bench/BUSY.md) training ran 3.4x slower beside one CPU-bound process
with 2 threads and 21x beside two, where one thread on the free core ran 1.5x and 2.4x slower. So the count is chosen at start from the cores that are actually
free, measured over a short window of /proc/stat, minus this process's own use. One thread per free core
also settles OpenMP's wait policy: no thread spins at a barrier waiting for a sibling that the scheduler put
behind another process.

An explicit choice always wins: the config (train.num_threads) first, then OMP_NUM_THREADS in the environment.
A measured choice is looked at again during a long run (`ThreadWatch`): when a neighbour starts or stops, the count
follows, so a run that started beside a busy build does not stay on one core for hours after the build ends.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    cores: int  # cores this process may use (affinity, cgroup quota)
    busy: float  # cores' worth of CPU that other processes used while measured (0 when not measured)
    source: str  # "config", "OMP_NUM_THREADS" or "measured"

    def line(self, lang: str = "en") -> str:
        """One line for the start of a run (and advise): what was chosen and why."""
        if lang == "zh":
            if self.source == "config":
                why = "由 train.num_threads 指定"
            elif self.source == "OMP_NUM_THREADS":
                why = "由 OMP_NUM_THREADS 指定"
            elif self.threads < self.cores:
                why = (f"其他进程占用了 {self.cores} 个核心中的 {self.busy:.1f} 个；与它们共用核心的线程会拖慢每一步"
                       "（train.num_threads 可指定线程数）")
            else:
                why = f"{self.cores} 个核心都空闲（train.num_threads 可指定线程数）"
            return f"CPU 线程：{self.threads}（{why}）"
        if self.source == "config":
            why = "set by train.num_threads"
        elif self.source == "OMP_NUM_THREADS":
            why = "set by OMP_NUM_THREADS"
        elif self.threads < self.cores:
            why = (f"other processes keep {self.busy:.1f} of {self.cores} cores busy; a thread sharing a core with "
                   "them would hold every step back (train.num_threads sets the count)")
        else:
            why = f"all {self.cores} cores are free (train.num_threads sets the count)"
        return f"CPU threads: {self.threads} ({why})"


def _affinity() -> set[int] | None:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _quota() -> int | None:
    """A cgroup v2 CPU quota in whole cores (rounded), None where there is none."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else max(1, int(int(quota) / int(period) + 0.5))
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota where one is set."""
    cpus = _affinity()
    cores = len(cpus) if cpus else (os.cpu_count() or 1)
    quota = _quota()
    return max(1, min(cores, quota) if quota else cores)


def _jiffies(cpus: set[int] | None) -> tuple[int, int] | None:
    """(busy, total) jiffies since boot summed over the given CPUs (all where None), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = [ln.split() for ln in f if ln.startswith("cpu")]
    except OSError:
        return None
    busy = total = 0
    for parts in lines:
        name = parts[0]
        if cpus is None and name != "cpu" or cpus is not None and (name == "cpu" or int(name[3:]) not in cpus):
            continue
        vals = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
        busy += sum(vals) - vals[3] - vals[4]
        total += sum(vals)
    return (busy, total) if total else None


def _own_jiffies() -> int | None:
    """utime + stime of this process (all its threads), in jiffies."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[11]) + int(fields[12])


def busy_elsewhere(window_s: float = 0.3) -> float | None:
    """Cores' worth of CPU that other processes use on this process's CPUs, measured over window_s seconds;
    None where /proc cannot tell."""
    cpus = _affinity()
    a, own_a = _jiffies(cpus), _own_jiffies()
    if a is None or own_a is None:
        return None
    time.sleep(window_s)
    b, own_b = _jiffies(cpus), _own_jiffies()
    if b is None or own_b is None or b[1] <= a[1]:
        return None
    n = len(cpus) if cpus else (os.cpu_count() or 1)
    busy = (b[0] - a[0]) - (own_b - own_a)
    return max(0.0, busy / (b[1] - a[1]) * n)


def choose_threads(configured: int | None = None, *, measure=busy_elsewhere, environ=os.environ) -> ThreadChoice:
    """The thread count for torch: configured > OMP_NUM_THREADS > one per core that other processes leave free."""
    cores = usable_cores()
    if configured:
        return ThreadChoice(int(configured), cores, 0.0, "config")
    env = environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return ThreadChoice(int(env), cores, 0.0, "OMP_NUM_THREADS")
    busy = measure()
    if busy is None:
        return ThreadChoice(cores, cores, 0.0, "measured")
    # A core counts as taken once another process uses most of it (0.6 of a core: a competitor that idles
    # now and then still holds back a thread that shares its core).
    cpus = _affinity()
    free = (len(cpus) if cpus else cores) - int(busy + 0.4)
    return ThreadChoice(max(1, min(cores, free)), cores, round(busy, 2), "measured")


_chosen: ThreadChoice | None = None


def current_choice() -> ThreadChoice | None:
    """The choice use_threads applied in this process (None before it ran)."""
    return _chosen


def use_threads(configured: int | None = None) -> tuple[ThreadChoice, bool]:
    """Choose (see choose_threads) and apply the thread count to torch, once per process (a later call with
    the same setting keeps the first choice). Returns (the choice, whether it is new: worth a log line)."""
    import torch

    global _chosen
    if _chosen is not None and (configured is None or _chosen.threads == configured):
        return _chosen, False
    _chosen = choose_threads(configured)
    torch.set_num_threads(_chosen.threads)
    return _chosen, True


class ThreadWatch:
    """The measured thread choice, kept up to date while training runs: every `interval_s` seconds (checked at a
    step's end) the CPU other processes used since the last look is read from /proc/stat (no extra wait: the window
    is the time since the last look, and this process's own use is subtracted), and when two looks in a row call
    for another count than torch has, torch gets it. `sample` returns (busy jiffies on this process's CPUs, total
    jiffies, this process's jiffies) or None; `now` is the clock (both replaceable in tests)."""

    def __init__(self, choice: ThreadChoice, *, interval_s: float = 30.0, sample=None, now=time.monotonic, say=None):
        self.cores, self.interval_s = choice.cores, interval_s
        self.sample = sample or _sample
        self.now, self.say = now, say
        self.last = self.sample()
        self.last_t = now()
        self.pending: int | None = None
        self.changes: list[tuple[int, int, float]] = []  # (from, to, busy elsewhere)

    def check(self) -> int | None:
        """Look if it is time; returns the new thread count when it changed, else None."""
        import torch

        t = self.now()
        if t - self.last_t < self.interval_s:
            return None
        cur = self.sample()
        prev, self.last, self.last_t = self.last, cur, t
        if prev is None or cur is None or cur[1] <= prev[1]:
            return None
        cpus = _affinity()
        n = len(cpus) if cpus else (os.cpu_count() or 1)
        busy = max(0.0, ((cur[0] - prev[0]) - (cur[2] - prev[2])) / (cur[1] - prev[1]) * n)
        want = max(1, min(self.cores, n - int(busy + 0.4)))
        have = torch.get_num_threads()
        if want == have:
            self.pending = None
            return None
        if self.pending != want:  # one look could be a burst: act when the next one agrees
            self.pending = want
            return None
        self.pending = None
        torch.set_num_threads(want)
        self.changes.append((have, want, round(busy, 2)))
        if self.say:
            self.say(f"[tunewise] CPU threads: {have} -> {want} (other processes now keep {busy:.1f} of {self.cores} "
                     "cores busy)")
        return want


def _sample() -> tuple[int, int, int] | None:
    a, own = _jiffies(_affinity()), _own_jiffies()
    return None if a is None or own is None else (a[0], a[1], own)
