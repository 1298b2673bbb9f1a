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
