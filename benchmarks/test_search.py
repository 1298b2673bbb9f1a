"""Searches nobody asked before (issue #14, part 3): every request is a new query of
three random common words, so no memoised answer helps; 8 client threads against a
real server with 8 threads. The figure is requests per second; the issue's target
compares 500k with 50k (>= 1/4)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.conftest import Pair
from simulator.corpus import WORDS
from simulator.server import ServerProcess


@pytest.fixture(scope="module")
def search_server(pair: Pair) -> Iterator[ServerProcess]:
    env = {"CFP_DATA_REPO_PATH": str(pair.clone), "CFP_DATA_REMOTE": str(pair.origin),
           "CFP_DATA_BRANCH": "published", "CFP_DATA_RELOAD_SECRET": "x" * 40}
    with ServerProcess(env, threads=8).start(timeout=600) as proc:
        yield proc


def test_never_asked_searches(benchmark, search_server: ServerProcess, records: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "never-asked searches"
    per_client = 5 if benchmark.disabled else 40
    result: dict[str, float] = {}

    def measure() -> None:
        done = [0]
        lock = threading.Lock()

        def client(c: int) -> None:
            rng = random.Random(records * 100 + c)
            for _ in range(per_client):
                q = " ".join(rng.sample(WORDS, 3))
                resp = search_server.get(f"/api/projects?q={q.replace(' ', '+')}&perPage=20")
                assert resp.status == 200
                with lock:
                    done[0] += 1

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        result["per_second"] = done[0] / (time.perf_counter() - started)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(strategy="this design", records=records, requests=8 * per_client,
                                per_second=round(result["per_second"], 1))
