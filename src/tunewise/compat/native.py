"""The C calls tunewise makes through ctypes, in one place (listed in tunewise.compat with their checks).

glibc's malloc_trim and madvise, and an OpenMP parallel region of torch's own runtime (GOMP_parallel).
"""

from __future__ import annotations

import ctypes
from typing import Callable

LIBC = "libc.so.6"
MADV_DONTNEED = 4  # Linux's value (mmap.MADV_DONTNEED where Python has it)


def malloc_trim() -> bool:
    """Hand freed heap pages back to the OS (glibc's malloc_trim(0)); False where there is no glibc."""
    try:
        ctypes.CDLL(LIBC).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: freed memory is reused, just not returned
        return False
    return True


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def malloc_mmap_threshold(nbytes: int) -> bool:
    """glibc's mallopt(M_MMAP_THRESHOLD, nbytes): allocations of at least `nbytes` get their own mapping, returned
    to the OS the moment they are freed; setting it also stops glibc from raising the threshold by itself (it
    does so after each large free, up to 32 MiB, after which freed tensors stay in the heap). False where there is
    no glibc or the call is refused."""
    try:
        return bool(ctypes.CDLL(LIBC).mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(nbytes)))
    except (OSError, AttributeError):
        return False


def madvise_dontneed(start: int, length: int) -> bool:
    """madvise(start, length, MADV_DONTNEED): drop those pages from the resident set; False where that fails."""
    try:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_DONTNEED)
    except (OSError, AttributeError):
        return False
    return True


MADV_PAGEOUT = 21  # Linux 5.4+: reclaim the range now (a clean file page is dropped; nothing is ever lost)


def madvise_pageout(start: int, length: int) -> bool:
    """madvise(start, length, MADV_PAGEOUT): take those pages out of the resident set now. Unlike MADV_DONTNEED it
    keeps every page's contents (a dirty or copied-on-write page is written out, or stays where it cannot be), so it
    is safe on any mapping. False where it fails (not Linux, a kernel before 5.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), ctypes.c_int(MADV_PAGEOUT)) == 0
    except (OSError, AttributeError):
        return False


def file_mappings(suffix: str = ".safetensors") -> list[tuple[int, int]]:
    """Address ranges of this process's memory-mapped files whose names end in `suffix` (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[-1].endswith(suffix):
            a, b = parts[0].split("-")
            out.append((int(a, 16), int(b, 16)))
    return out


def openmp_runtime(prefer: str = ""):
    """The loaded OpenMP runtime (libgomp, or Intel's, which implements the same entry point) as a ctypes
    library, or None. Other wheels bring their own copy (sentencepiece does): one under `prefer` comes first."""
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "omp" in line.rsplit("/", 1)[-1]]
    except OSError:
        return None
    ordered = sorted(dict.fromkeys(p for p in paths if p.startswith("/") and ".so" in p),
                     key=lambda p: not p.startswith(prefer))
    for path in ordered:
        try:
            lib = ctypes.CDLL(path)
            lib.GOMP_parallel  # libgomp, and Intel's runtime, which implements the same entry point
            return lib
        except (OSError, AttributeError):
            continue
    return None


def omp_parallel(lib, fn: Callable[[], None], threads: int) -> None:
    """Run fn() once on each thread of an OpenMP parallel region of `threads` threads (GOMP_parallel)."""
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _data: fn())
    lib.GOMP_parallel(callback, None, ctypes.c_uint(threads), ctypes.c_uint(0))
