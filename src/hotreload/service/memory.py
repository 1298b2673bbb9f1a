"""Giving freed memory back to the operating system after a snapshot swap.

Each reload (and write) builds a new snapshot, whose SQLite search database and
dict copies are allocated by whichever server thread ran it; glibc keeps freed
memory in that thread's malloc arena, so after a few reloads on different threads
the process holds several snapshots' worth of free memory. ``malloc_trim(0)``
returns the free pages of every arena; it runs at start-up and when the resident
size has grown (see :func:`release_free_memory`). On other C libraries this does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


TRIM_GROWTH = 0.05
"""Free heap pages are handed back once the resident size has grown by this
fraction since they last were (decision 59)."""


def resident_bytes() -> int | None:
    """This process's resident set size, from ``/proc`` (None where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _Trimmer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.baseline: int | None = None
        """The resident size right after the last trim."""

    def maybe_trim(self, force: bool) -> bool:
        if _MALLOC_TRIM is None:
            return False
        with self.lock:
            rss = resident_bytes()
            if not force and rss is not None and self.baseline is not None \
                    and rss <= self.baseline * (1 + TRIM_GROWTH):
                return False
            _MALLOC_TRIM(0)
            self.baseline = resident_bytes()
            return True


_TRIMMER = _Trimmer()


def release_free_memory(force_trim: bool = False) -> None:
    """Collect what a reload left in reference cycles, then return free heap pages
    to the OS (glibc) when the process has grown; no lock held.

    The collection is kept O(change) by freezing: every object that survives it is
    moved out of the collector's sight (``gc.freeze``), so the next collection scans
    only what was allocated since: one reload's work, not the whole snapshot (a full
    collection at 50k records took 57-68 ms with the GIL held, a reader stall).
    Frozen objects are still freed by reference counting when dropped; only a cycle
    among them that becomes garbage later would stay (snapshots hold none).

    Trimming is not done at every call: it walks the whole heap, and the pages it
    hands back are the ones the next reload's copies fault in again (at 500k records
    a reload took 155 ms trimming every time, 123 ms never trimming; decision 59).
    The free memory a reload leaves is what the next one reuses, so the resident
    size stays flat without it; a trim runs at start-up (``force_trim``: the cold
    build leaves ~250 MB free at 500k) and whenever the resident size has grown by
    :data:`TRIM_GROWTH` since the last one."""
    started = time.perf_counter()
    found = gc.collect()
    gc.freeze()
    trimmed = _TRIMMER.maybe_trim(force_trim)
    log.debug("collected %d objects%s in %.1f ms", found, " and trimmed the heap" if trimmed else "",
              (time.perf_counter() - started) * 1000)
