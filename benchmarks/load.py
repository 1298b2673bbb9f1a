"""What readers and a CI workflow do to a running server, over HTTP only: keep-alive
clients, a read mix by route class, and back-to-back one-record reloads. Shared by
``test_serving.py`` and ``compare.py`` (which drives two versions of the service the
same way, so nothing here may depend on the version it talks to)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.changes import edit_chain
from hotreload.git.repo import GitRepo, branch_ref
from simulator.server import Response

SECRET = "x" * 40
"""The webhook secret the benchmarks' servers are started with."""


class Client:
    """One keep-alive HTTP/1.1 connection to a loopback port, as a browser or a CDN keeps
    one; opened again after the server closes it."""

    def __init__(self, port: int, timeout: float = 600.0) -> None:
        self.port, self.timeout = port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        data = json.dumps(body).encode() if body is not None else None
        sent = {**({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})}
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, data, sent)
                resp = self._conn.getresponse()
                payload = resp.read()
                if resp.will_close:
                    self.close()
                return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)
            except (ConnectionError, http.client.HTTPException):
                self.close()  # an idle connection the server closed: once more on a new one
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def reload(self, commit: str) -> tuple[float, dict[str, Any]]:
        """The webhook announcing ``commit``: milliseconds end to end, and its ``data``."""
        started = time.perf_counter()
        resp = self.request("POST", "/api/_internal/reload-data", {"commitHash": commit},
                            {"Authorization": f"Bearer {SECRET}"})
        ms = (time.perf_counter() - started) * 1000
        assert resp.status == 200, (resp.status, resp.body[:500])
        return ms, resp.data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Reads:
    """Latencies (ms) by route class, and how long the clients read."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, other: Reads) -> None:
        """``other``'s reads too (another slice of the same measurement)."""
        for route, got in other.latencies.items():
            self.latencies.setdefault(route, []).extend(got)
        self.seconds += other.seconds

    def figures(self, route: str | None = None) -> dict[str, float]:
        """Requests per second, p50 and p99 (ms) of one route class, or of all."""
        found = self.latencies[route] if route else [ms for got in self.latencies.values() for ms in got]
        return {"rps": len(found) / self.seconds, "p50_ms": percentile(found, 50),
                "p99_ms": percentile(found, 99), "requests": len(found)}


def read_mix(port: int, routes: Mapping[str, str], clients: int = 1, at_least: int = 0, seconds: float = 0.0,
             more: Callable[[], bool] = lambda: False) -> Reads:
    """``clients`` clients, each on its own connection, reading ``routes`` (class ->
    path) in turn, client ``c`` starting at the ``c``-th, until each has read
    ``at_least`` times, ``seconds`` have passed and ``more()`` is false. Any answer
    but 200 fails."""
    names = list(routes)
    reads = Reads({name: [] for name in names})
    lock = threading.Lock()
    errors: list[BaseException] = []
    deadline = time.perf_counter() + seconds

    def client(c: int) -> None:
        mine: list[tuple[str, float]] = []
        conn = Client(port)
        try:
            i = 0
            while i < at_least or time.perf_counter() < deadline or more():
                name = names[(c + i) % len(names)]
                started = time.perf_counter()
                resp = conn.get(routes[name])
                mine.append((name, (time.perf_counter() - started) * 1000))
                assert resp.status == 200, (routes[name], resp.status, resp.body[:300])
                i += 1
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            conn.close()
            with lock:
                for name, ms in mine:
                    reads.latencies[name].append(ms)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reads.seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    return reads


class Upstream:
    """One-record commits made on the origin ahead of time (:func:`edit_chain`), and
    the origin's branch moved to the next one before each webhook: so a benchmark
    spends its time reading, not building commits, which would compete with its own
    reader threads for the GIL."""

    def __init__(self, origin: str, count: int, seed: int = 0) -> None:
        self.origin = origin
        repo = GitRepo(origin)
        self.tip = repo.branch_commit("published")
        repo.close()
        self.commits = edit_chain(origin, count, seed)

    def next(self) -> str:
        """The next commit, now the origin's branch tip."""
        commit = self.commits.pop(0)
        repo = GitRepo(self.origin)
        try:
            assert repo.cas_ref(branch_ref("published"), self.tip, commit)
        finally:
            repo.close()
        self.tip = commit
        return commit


class Reloads:
    """Back-to-back one-record reloads (webhooks) in a background thread, until
    ``count`` have run or the block ends; their end-to-end times and lock holds."""

    def __init__(self, port: int, upstream: Upstream, count: int) -> None:
        self.client, self.upstream, self.count = Client(port), upstream, count
        self.stop = threading.Event()
        self.done: list[tuple[float, float]] = []
        """(end to end ms, lockHeldMs) of each reload."""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            while len(self.done) < self.count and not self.stop.is_set():
                ms, data = self.client.reload(self.upstream.next())
                self.done.append((ms, float(data.get("lockHeldMs") or 0.0)))
        except BaseException as exc:  # re-raised on leaving the block
            self.error = exc

    def running(self) -> bool:
        return self.thread.is_alive()

    def __enter__(self) -> Reloads:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.client.close()
        if self.error is not None and not exc[0]:
            raise self.error
