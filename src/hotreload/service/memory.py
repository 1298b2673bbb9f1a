"""Collecting what a reload left in reference cycles, after a snapshot swap."""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def release_free_memory(force: bool = False) -> None:
    """Collect what a reload left in reference cycles; no lock held.

    The collection is kept O(change) by freezing: every object that survives it is
    moved out of the collector's sight (``gc.freeze``), so the next collection scans
    only what was allocated since: one reload's work, not the whole snapshot (a full
    collection at 50k records took 57-68 ms with the GIL held, a reader stall).
    Frozen objects are still freed by reference counting when dropped; only a cycle
    among them that becomes garbage later would stay (snapshots hold none)."""
    started = time.perf_counter()
    found = gc.collect()
    gc.freeze()
    log.debug("collected %d objects in %.1f ms", found, (time.perf_counter() - started) * 1000)
