"""(d) What readers feel on a running server, idle and during back-to-back reloads:
requests/s, p50 and p99 of each read route class and of all of them, 4 keep-alive
clients reading the classes in turn (the figures ``make bench-compare`` holds against a
release come from the same code, ``benchmarks/load.py``); (e) steady and peak RSS of
the server process around reloads."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest

from benchmarks.changes import PeakRss, edit_upstream
from benchmarks.compare import routes_of
from benchmarks.conftest import Pair, cached_corpus
from benchmarks.load import SECRET, Reads, Reloads, Upstream, read_mix
from simulator.server import GitDaemon, ServerProcess


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


def _port(server: ServerProcess) -> int:
    return int(server.base.rsplit(":", 1)[1])


def _figures(reads: Reads) -> dict[str, object]:
    """Requests/s (of all the clients' reads of a class, over the whole measurement), p50
    and p99 (ms), for all reads and for each route class."""
    def rounded(got: dict[str, float]) -> dict[str, float]:
        return {"rps": round(got["rps"], 1), "p50_ms": round(got["p50_ms"], 3), "p99_ms": round(got["p99_ms"], 3),
                "requests": int(got["requests"])}

    return {**rounded(reads.figures()), "routes": {name: rounded(reads.figures(name)) for name in reads.latencies}}


@pytest.mark.parametrize("load", ["idle", "during-reloads"])
def test_reader_latency(benchmark, server: ServerProcess, pair: Pair, records: int, load: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "reader latency"
    routes = routes_of(cached_corpus(records))
    per_client = 2 * len(routes) if benchmark.disabled else 50 * len(routes)  # ~200 reads of each class
    min_reloads = 2 if benchmark.disabled else 20
    result: dict[str, object] = {}
    port = _port(server)
    read_mix(port, routes, at_least=3 * len(routes))  # warm-up: the first read of a query computes its answer
    upstream = Upstream(str(pair.origin), min_reloads + 10) if load != "idle" else None

    def measure() -> None:
        if load == "idle":
            result["reads"] = read_mix(port, routes, 4, at_least=per_client)
        else:
            assert upstream is not None
            with Reloads(port, upstream, min_reloads + 10) as reloads:
                # enough reloads that p99 is about them, not about the few that fit in the reads
                deadline = time.monotonic() + 120
                result["reads"] = read_mix(port, routes, 4, at_least=per_client, more=lambda: (
                    len(reloads.done) < min_reloads and time.monotonic() < deadline))
            result["reloads"] = len(reloads.done)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    reads: Reads = result["reads"]  # type: ignore[assignment]
    benchmark.extra_info.update(strategy="this design", records=records, load=load, clients=4,
                                reloads=result.get("reloads", 0), **_figures(reads))


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
