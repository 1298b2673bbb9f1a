"""(a) and (b): lock hold and end-to-end time of a reload after a one-record and
a 10% change, with this design and with the seed's strategy (the baseline)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from benchmarks.baseline import NaiveState
from benchmarks.changes import edit_upstream
from benchmarks.conftest import Pair
from hotreload.config import Settings
from hotreload.git.repo import GitRepo
from hotreload.service.runtime import Runtime, boot

CHANGES = {"one-record": lambda n: 1, "ten-percent": lambda n: n // 10}


def rounds(records: int, change: str) -> int:
    return 3 if (change == "ten-percent" or records >= 50000) else 7


@pytest.fixture(scope="module")
def runtime(pair: Pair) -> Iterator[Runtime]:
    rt = boot(Settings(str(pair.clone), str(pair.origin), "published", "x" * 40, None))
    yield rt
    rt.close()


@pytest.mark.parametrize("change", list(CHANGES))
def test_reload_this_design(benchmark, runtime: Runtime, pair: Pair, records: int, change: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"reload {change}"
    holds: list[float] = []
    count = CHANGES[change](records)

    def setup() -> tuple[tuple[str], dict[str, object]]:
        return (edit_upstream(str(pair.origin), count),), {}

    def reload(commit: str) -> None:
        result = runtime.reloader.reload(commit)
        assert result.rebuilt and result.new_commit == commit
        assert result.changes.as_dict()["modified"] == count
        holds.append(result.lock_held_ms)

    benchmark.pedantic(reload, setup=setup, rounds=rounds(records, change), iterations=1)
    benchmark.extra_info.update(strategy="this design", records=records, change=change,
                                lock_held_ms_median=statistics.median(holds), lock_held_ms=holds)


@pytest.fixture(scope="module")
def naive(pair: Pair) -> Iterator[NaiveState]:
    repo = GitRepo(str(pair.clone))
    state = NaiveState(repo, "published", str(pair.origin))
    yield state
    repo.close()


@pytest.mark.parametrize("change", list(CHANGES))
def test_reload_baseline(benchmark, naive: NaiveState, pair: Pair, records: int, change: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"reload {change}"
    holds: list[float] = []
    count = CHANGES[change](records)

    def setup() -> tuple[tuple[()], dict[str, object]]:
        edit_upstream(str(pair.origin), count)
        return (), {}

    def reload() -> None:
        holds.append(naive.reload().lock_held_ms)

    benchmark.pedantic(reload, setup=setup, rounds=rounds(records, change), iterations=1)
    benchmark.extra_info.update(strategy="baseline", records=records, change=change,
                                lock_held_ms_median=statistics.median(holds), lock_held_ms=holds)
