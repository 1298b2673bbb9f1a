"""``X-Data-Min-Commit``: read-your-writes across replicas (specs/replicas.md). A replica that does
not serve the commit yet waits for a reload, else answers 503 with ``Retry-After``; what readers
can make it do is bounded for all of them together (decision 78)."""

from __future__ import annotations

import functools
import re
import threading
import time

import falcon

from hotreload.api.errors import ApiError, bad_request
from hotreload.service.runtime import Runtime

HEADER = "X-Data-Min-Commit"
_FULL_COMMIT = re.compile(r"\A[0-9a-fA-F]{40}\Z")
RETRY_AFTER_S = 1
FETCH_INTERVAL_S = 1.0
"""A commit not served after a reload that started less than this long ago answers
503 without another reload (the remote did not have it at that fetch)."""
WAITING_SHARE = 4
"""At most 1/4 of the worker threads wait for a reload at once."""
EXEMPT = ("/api/_internal/", "/metrics", "/api/openapi.json")


class MinCommitMiddleware:
    def __init__(self, runtime: Runtime, threads: int) -> None:
        self.runtime = runtime
        self.max_waiting = max(1, threads // WAITING_SHARE)
        self._is_ancestor = functools.lru_cache(maxsize=4096)(runtime.repo.is_ancestor)
        self._lock = threading.Lock()
        self._reload = threading.Event()
        """Set when the last reload started here has ended."""
        self._reload.set()
        self._reload_at = -FETCH_INTERVAL_S
        self._waiting = 0

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        wanted = req.get_header(HEADER)
        if wanted is None or req.method not in ("GET", "HEAD") or req.path.startswith(EXEMPT):
            return
        wanted = wanted.strip()
        if not _FULL_COMMIT.match(wanted):
            raise bad_request(HEADER, "must be a full 40-character commit id, as X-Data-Commit gives it")
        wanted = wanted.lower()
        if self.serves(wanted):
            return
        metrics = self.runtime.metrics.min_commit_waits
        done = self._join(wanted)
        if done is not None:
            deadline = time.monotonic() + self.runtime.settings.min_commit_wait_seconds
            try:
                while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                    if self.serves(wanted) or time.monotonic() >= deadline:
                        break
            finally:
                with self._lock:
                    self._waiting -= 1
            if self.serves(wanted):
                metrics.labels("served").inc()
                return
        metrics.labels("unavailable").inc()
        served = self.runtime.holder.current.commit
        raise ApiError(503, "service_unavailable",
                       f"{HEADER}: this replica serves {served[:12]}, which does not contain {wanted[:12]} yet; "
                       f"retry after {RETRY_AFTER_S} s (another replica may have it), or read without the header",
                       {"servedCommit": served, "minCommit": wanted},
                       headers={"Retry-After": str(RETRY_AFTER_S), "X-Data-Commit": served})

    def _join(self, wanted: str) -> threading.Event | None:
        """The reload to wait for: the one under way, else a new one unless one started
        within ``FETCH_INTERVAL_S``; None (answer now) when it is too soon or enough
        threads wait already."""
        with self._lock:
            if self._waiting >= self.max_waiting:
                return None
            if self._reload.is_set():
                if time.monotonic() - self._reload_at < FETCH_INTERVAL_S:
                    return None
                self._reload = self.runtime.reloader.reload_in_background(wanted, trigger="min-commit")
                self._reload_at = time.monotonic()
            self._waiting += 1
            return self._reload

    def serves(self, wanted: str) -> bool:
        """Does the served snapshot contain ``wanted`` (it, or a descendant of it)?"""
        served = self.runtime.holder.current.commit
        return served == wanted or self._is_ancestor(wanted, served)  # False for a commit never fetched
