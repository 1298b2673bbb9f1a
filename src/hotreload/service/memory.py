"""Giving freed memory back to the operating system after a snapshot swap.

Each reload (and write) builds a new snapshot, whose SQLite search database and
dict copies are allocated by whichever server thread ran it. glibc keeps freed memory
in the arena that held it; ``malloc_trim(0)`` returns the free pages of every arena.
On other C libraries this does nothing.

A trim costs what the free memory spans, not what it returns: it advises away
every free chunk again, most of them returned by the trim before (at 500k records,
~1,200 chunks spanning 100-240 MB: 4-9 ms a reload). So after a reload the heap is
trimmed only when its resident size has grown by 1/64 over the lowest it has been
after a reload since the last trim (decision 72).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import time
from collections.abc import Callable

from hotreload.libc import c_function

log = logging.getLogger(__name__)


_MALLOC_TRIM: Callable[[int], int] | None = c_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)


TRIM_GROWTH = 1 / 64
"""Trim when the resident size after a reload exceeds the smallest since the last trim by this share."""


def resident_bytes() -> int | None:
    """The process's resident size (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _TrimPolicy:
    """When to trim. ``low`` is the smallest resident size seen after a reload since
    the last trim (None: none yet). It is not the size just after a trim: each
    reload faults back in the pages its work needs (a 7.4 MB tree, the changed
    entries, SQLite's pages), and a trim would hand them back only for the next
    reload to fault them in again."""

    def __init__(self) -> None:
        self.low: int | None = None
        self.lock = threading.Lock()  # two threads releasing at once trim once

    def trim(self, force: bool) -> bool:
        assert _MALLOC_TRIM is not None
        with self.lock:
            if not force:
                rss = resident_bytes()
                if rss is not None and (self.low is None or rss <= self.low * (1 + TRIM_GROWTH)):
                    self.low = rss if self.low is None else min(self.low, rss)
                    return False
            _MALLOC_TRIM(0)
            self.low = None
            return True


_POLICY = _TrimPolicy()


def release_free_memory(force: bool = False) -> None:
    """Collect what a reload left in reference cycles, then return free heap pages
    to the OS (glibc); no lock held.

    The collection is kept O(change) by freezing: every object that survives it is
    moved out of the collector's sight (``gc.freeze``), so the next collection scans
    only what was allocated since: one reload's work, not the whole snapshot (a full
    collection at 50k records took 57-68 ms with the GIL held, a reader stall).
    Frozen objects are still freed by reference counting when dropped; only a cycle
    among them that becomes garbage later would stay (snapshots hold none).

    The heap is trimmed when ``force`` (after a full build) or when the resident
    size has grown past :data:`TRIM_GROWTH` since the last trim."""
    started = time.perf_counter()
    found = gc.collect()
    gc.freeze()
    log.debug("collected %d objects in %.1f ms", found, (time.perf_counter() - started) * 1000)
    if _MALLOC_TRIM is not None:
        trimmed = _POLICY.trim(force)
        log.debug("heap %s", "trimmed" if trimmed else "not trimmed (resident size within bound)")
