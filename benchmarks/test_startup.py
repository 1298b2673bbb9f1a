"""(c) Cold full load: the full build in-process, a whole process start to a
healthy /api/health, and the floor: every record read with
``git cat-file --batch`` and parsed with tomllib."""

from __future__ import annotations

from benchmarks.conftest import Pair
from benchmarks.floor import read_and_parse, record_shas
from hotreload.data.cache import CACHE_FILE
from hotreload.data.snapshot import build_full
from hotreload.git.repo import GitRepo
from simulator.server import ServerProcess


def test_full_build(benchmark, pair: Pair, records: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "cold start"
    repo = GitRepo(str(pair.clone))
    commit = repo.branch_commit("published") or ""
    snap = benchmark.pedantic(lambda: build_full(repo, commit), rounds=3, iterations=1)
    assert sum(snap.record_counts().values()) == records
    benchmark.extra_info.update(strategy="this design", records=records, what="full build in-process")
    repo.close()


def _start_until_healthy(env: dict[str, str]) -> None:
    server = ServerProcess(env).start(timeout=300)
    try:
        assert server.get("/api/health").status == 200
    finally:
        server.stop()


def _env(pair: Pair, **extra: str) -> dict[str, str]:
    return {"CFP_DATA_REPO_PATH": str(pair.clone), "CFP_DATA_REMOTE": str(pair.origin),
            "CFP_DATA_BRANCH": "published", "CFP_DATA_RELOAD_SECRET": "x" * 40, **extra}


def test_process_cold_start(benchmark, pair: Pair, records: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "cold start"
    env = _env(pair, CFP_SNAPSHOT_CACHE="0")  # a full build every round, as on a first start
    benchmark.pedantic(lambda: _start_until_healthy(env), rounds=3, iterations=1)
    benchmark.extra_info.update(strategy="this design", records=records,
                                what="process start to healthy /api/health")


def test_process_restart_with_snapshot_cache(benchmark, pair: Pair, records: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "cold start"
    env = _env(pair)
    (pair.clone / CACHE_FILE).unlink(missing_ok=True)
    _start_until_healthy(env)  # writes the cache (not timed)
    assert (pair.clone / CACHE_FILE).exists()
    benchmark.pedantic(lambda: _start_until_healthy(env), rounds=3, iterations=1)
    benchmark.extra_info.update(strategy="this design", records=records,
                                what="restart to healthy, branch unchanged, from the snapshot cache")


def test_floor_cat_file_and_tomllib(benchmark, pair: Pair, records: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "cold start"
    shas = record_shas(pair.clone)
    assert benchmark.pedantic(lambda: read_and_parse(pair.clone, shas), rounds=3, iterations=1) == records
    benchmark.extra_info.update(strategy="floor", records=records,
                                what="git cat-file --batch + tomllib, every record")
