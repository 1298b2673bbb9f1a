"""When free heap pages are handed back (service/memory.py): at start-up, and
after the resident size has grown by TRIM_GROWTH since the last trim; never at
every reload (a trim walks the heap, and the next reload faults the pages in again)."""

from __future__ import annotations

import pytest

from hotreload.service import memory


@pytest.fixture
def heap(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """A fake process: its resident size, and a trim that counts and shrinks it to 100."""
    state = {"rss": 100, "trims": 0}

    def trim(pad: int) -> int:
        state["trims"] += 1
        state["rss"] = 100
        return 1

    monkeypatch.setattr(memory, "_MALLOC_TRIM", trim)
    monkeypatch.setattr(memory, "resident_bytes", lambda: state["rss"])
    monkeypatch.setattr(memory, "_TRIMMER", memory._Trimmer())
    return state


def test_the_first_release_trims_then_only_growth_does(heap: dict[str, int]) -> None:
    memory.release_free_memory(force_trim=True)
    assert heap["trims"] == 1
    heap["rss"] = 105  # exactly TRIM_GROWTH: not yet
    memory.release_free_memory()
    assert heap["trims"] == 1
    heap["rss"] = 106
    memory.release_free_memory()
    assert heap["trims"] == 2 and heap["rss"] == 100
    memory.release_free_memory()
    assert heap["trims"] == 2


def test_a_forced_release_always_trims(heap: dict[str, int]) -> None:
    for expected in (1, 2):
        memory.release_free_memory(force_trim=True)
        assert heap["trims"] == expected


def test_without_a_resident_size_every_release_trims(heap: dict[str, int],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "resident_bytes", lambda: None)
    memory.release_free_memory()
    memory.release_free_memory()
    assert heap["trims"] == 2


def test_the_resident_size_is_read_from_proc() -> None:
    rss = memory.resident_bytes()
    assert rss is not None and 10 * 2**20 < rss < 100 * 2**30
