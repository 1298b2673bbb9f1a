"""(d) reader latency p50/p99 on a running server, idle and during back-to-back
reloads; (e) steady and peak RSS of the server process around reloads."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from benchmarks.changes import PeakRss, edit_upstream
from benchmarks.conftest import Pair
from hotreload.git.repo import GitRepo, branch_ref
from simulator.server import GitDaemon, ServerProcess

SECRET = "x" * 40
PATHS = ["/api/projects?q=transit&perPage=20", "/api/projects?perPage=20&tag=topic.transit",
         "/api/people?q=data&perPage=20", "/api/tags", "/api/health"]


@pytest.fixture(scope="module")
def server(pair: Pair) -> Iterator[ServerProcess]:
    """The service on the pair's clone. Its remote is the origin's local path, or with
    ``BENCH_TRANSPORT=git`` the origin served by ``git daemon`` on loopback (the
    network client's fetch, as from a git host)."""
    daemon = GitDaemon(pair.root) if os.environ.get("BENCH_TRANSPORT") == "git" else None
    env = {"CFP_DATA_REPO_PATH": str(pair.clone),
           "CFP_DATA_REMOTE": daemon.url(pair.origin.name) if daemon else str(pair.origin),
           "CFP_DATA_BRANCH": "published", "CFP_DATA_RELOAD_SECRET": SECRET}
    try:
        with ServerProcess(env, threads=8).start(timeout=300) as proc:  # started once: __enter__ reuses it
            yield proc
    finally:
        if daemon:
            daemon.stop()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def read_latencies(server: ServerProcess, per_client: int, clients: int = 4,
                   more: Callable[[], bool] = lambda: False) -> list[float]:
    """Each client reads ``per_client`` times, and goes on while ``more()`` says so."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        mine = []
        i = 0
        while i < per_client or more():
            i += 1
            started = time.perf_counter()
            assert server.get(PATHS[(c + i) % len(PATHS)]).status == 200
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


class Reloads:
    """Back-to-back one-record reloads in a background thread. The upstream commits
    are made before the readers start (``prepared`` of them, one record each, in a
    chain) and the origin's branch is moved to the next one before each webhook: so
    the benchmark process spends the measurement reading, not building commits,
    which would compete with its own reader threads for its GIL."""

    def __init__(self, server: ServerProcess, pair: Pair, prepared: int) -> None:
        self.server, self.pair = server, pair
        self.stop = threading.Event()
        self.count = 0
        repo = GitRepo(str(pair.origin))
        self.tip = repo.branch_commit("published")
        repo.close()
        self.commits = [edit_upstream(str(pair.origin), 1) for _ in range(prepared)]
        self._move(self.commits[-1], self.tip)  # back to where the server is
        self.thread = threading.Thread(target=self._run)

    def _move(self, old: str | None, new: str | None) -> None:
        repo = GitRepo(str(self.pair.origin))
        assert repo.cas_ref(branch_ref("published"), old, new)
        repo.close()

    def _run(self) -> None:
        previous = self.tip
        for commit in self.commits:
            if self.stop.is_set():
                break
            self._move(previous, commit)
            previous = commit
            resp = self.server.request("POST", "/api/_internal/reload-data", {"commitHash": commit},
                                       {"Authorization": f"Bearer {SECRET}"})
            assert resp.status == 200, resp.body
            self.count += 1

    def __enter__(self) -> Reloads:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()  # the origin is left at the last commit the server reloaded


@pytest.mark.parametrize("load", ["idle", "during-reloads"])
def test_reader_latency(benchmark, server: ServerProcess, pair: Pair, records: int, load: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "reader latency"
    per_client = 60 if benchmark.disabled else 150
    min_reloads = 2 if benchmark.disabled else 20
    result: dict[str, object] = {}

    for path in PATHS * 3:  # warm-up: the first request of each query computes its answer
        assert server.get(path).status == 200

    def measure() -> None:
        if load == "idle":
            result["latencies"] = read_latencies(server, per_client)
        else:
            with Reloads(server, pair, prepared=min_reloads + 10) as reloads:
                # enough reloads that p99 is about them, not about the few that fit in 600 reads
                deadline = time.monotonic() + 120
                result["latencies"] = read_latencies(
                    server, per_client, more=lambda: reloads.count < min_reloads and time.monotonic() < deadline)
            result["reloads"] = reloads.count

    benchmark.pedantic(measure, rounds=1, iterations=1)
    latencies: list[float] = result["latencies"]  # type: ignore[assignment]
    benchmark.extra_info.update(strategy="this design", records=records, load=load, requests=len(latencies),
                                p50_ms=round(percentile(latencies, 50), 3), p99_ms=round(percentile(latencies, 99), 3),
                                mean_ms=round(statistics.fmean(latencies), 3), reloads=result.get("reloads", 0))


def test_memory(benchmark, server: ServerProcess, pair: Pair, records: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "memory"
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    n_reloads = 3 if benchmark.disabled else 10
    samples: dict[str, float] = {}

    def measure() -> None:
        time.sleep(0.5)
        steady = process.memory_info().rss
        with PeakRss(process) as sampler:
            for _ in range(n_reloads):
                commit = edit_upstream(str(pair.origin), 1)
                assert server.request("POST", "/api/_internal/reload-data", {"commitHash": commit},
                                      {"Authorization": f"Bearer {SECRET}"}).status == 200
        time.sleep(0.5)
        samples.update(steady=steady, peak=max(steady, sampler.peak), after=process.memory_info().rss)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    mb = 1024 * 1024
    benchmark.extra_info.update(strategy="this design", records=records, reloads=n_reloads,
                                steady_rss_mb=round(samples["steady"] / mb, 1),
                                peak_rss_mb=round(samples["peak"] / mb, 1),
                                after_rss_mb=round(samples["after"] / mb, 1),
                                peak_over_steady=round(samples["peak"] / samples["steady"], 3))
