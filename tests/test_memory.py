"""When the heap is trimmed after a reload (decision 72): after a full build always;
after an incremental one only once the resident size has grown by 1/64 over the
lowest it has been since the last trim."""

from __future__ import annotations

from unittest.mock import patch

import pytest

from hotreload.service import memory


def test_resident_bytes_reads_this_process() -> None:
    size = memory.resident_bytes()
    if size is None:
        pytest.skip("no /proc/self/statm on this system")
    ballast = bytearray(64 << 20)  # written: resident
    grown = memory.resident_bytes()
    assert grown is not None and grown - size >= 60 << 20
    del ballast


def test_the_heap_is_trimmed_on_a_full_build_and_past_the_growth_bound() -> None:
    calls: list[int] = []
    sizes = iter([1000,            # the first reload after a trim sets the low mark
                  1010, 1015,      # within 1000 * (1 + 1/64) = 1015.6: no trim
                  990,             # lower: the low mark moves down
                  1006,            # past 990 * 65/64 = 1005.5: trimmed
                  1200, 1300])     # a new low mark after the trim, then past it
    policy = memory._TrimPolicy()
    with (patch.object(memory, "_MALLOC_TRIM", calls.append),
          patch.object(memory, "resident_bytes", lambda: next(sizes))):
        assert policy.trim(force=True) and calls == [0]     # a full build: always, reading nothing
        assert not policy.trim(force=False) and policy.low == 1000
        assert not policy.trim(force=False)                 # 1010
        assert not policy.trim(force=False)                 # 1015
        assert not policy.trim(force=False) and policy.low == 990
        assert policy.trim(force=False) and calls == [0, 0]  # 1006
        assert policy.low is None
        assert not policy.trim(force=False) and policy.low == 1200
        assert policy.trim(force=False) and calls == [0, 0, 0]  # 1300


_ARENAS_AFTER_THREADS = """
import ctypes, sys, threading
from hotreload.service import memory
took = memory.share_one_heap() if sys.argv[1] == "share" else None
def work():
    kept = [bytearray(200_000) for _ in range(20)]  # above pymalloc's sizes: glibc's malloc
    ready.wait()
ready = threading.Event()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
ready.set()
for t in threads: t.join()
print(took, flush=True)
ctypes.CDLL(None).malloc_stats()  # glibc: one "Arena N:" block per arena, on stderr
"""


@pytest.mark.parametrize("how", ["share", "default", "share, but MALLOC_ARENA_MAX=4 set"])
def test_threads_started_after_share_one_heap_allocate_from_the_main_arena(how: str) -> None:
    """glibc's own account (``malloc_stats``) of the arenas a process used, after four
    threads allocated: one when the service shares the main heap; more without; and
    an operator's MALLOC_ARENA_MAX is left to glibc."""
    import os
    import subprocess
    import sys

    if memory._MALLOPT is None:
        pytest.skip("not glibc")
    env = dict(os.environ)
    env.pop("MALLOC_ARENA_MAX", None)
    if "MALLOC_ARENA_MAX" in how:
        env["MALLOC_ARENA_MAX"] = "4"
    done = subprocess.run([sys.executable, "-c", _ARENAS_AFTER_THREADS, how.split(",")[0]], env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    arenas = done.stderr.count("Arena ")
    if how == "share":
        assert done.stdout.strip() == "True" and arenas == 1, done.stderr
    elif how == "default":
        assert arenas > 1, done.stderr
    else:
        assert done.stdout.strip() == "False" and arenas > 1, done.stderr
