"""``X-Data-Min-Commit``: read-your-writes across replicas.

A client that wrote through one replica got commit X (``X-Data-Commit``). On a
later read it may send ``X-Data-Min-Commit: X``. A replica that serves X or a
descendant of X answers as usual. One that does not starts a reload announcing X
(single-flight with every other reload) and waits for it, up to
``CFP_DATA_MIN_COMMIT_WAIT_SECONDS``; if it still does not serve X then, it
answers 503 with ``Retry-After``, and the client retries (perhaps reaching a
replica that has it). A commit the remote did not have at the last such reload is
remembered briefly, so a stream of reads naming it does not become a stream of
fetches.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict

import falcon

from hotreload.api.errors import ApiError, bad_request
from hotreload.service.runtime import Runtime

HEADER = "X-Data-Min-Commit"
_FULL_COMMIT = re.compile(r"\A[0-9a-fA-F]{40}\Z")
RETRY_AFTER_S = 1
MISSING_TTL_S = 2.0
"""After a reload that did not bring X, reads naming X answer 503 without another
reload for this long."""
EXEMPT = ("/api/_internal/", "/metrics", "/api/openapi.json")


class MinCommitMiddleware:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._contains: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

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
        deadline = time.monotonic() + self.runtime.settings.min_commit_wait_seconds
        if not self._recently_missing(wanted):
            done = self.runtime.reloader.reload_in_background(wanted, trigger="min-commit")
            while not done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                if self.serves(wanted):
                    break
                if time.monotonic() >= deadline:
                    break
            if self.serves(wanted):
                metrics.labels("served").inc()
                return
            if done.is_set():
                self._remember_missing(wanted)
        metrics.labels("unavailable").inc()
        served = self.runtime.holder.current.commit
        raise ApiError(503, "service_unavailable",
                       f"{HEADER}: this replica serves {served[:12]}, which does not contain {wanted[:12]} yet; "
                       f"retry after {RETRY_AFTER_S} s (another replica may have it), or read without the header",
                       {"servedCommit": served, "minCommit": wanted},
                       headers={"Retry-After": str(RETRY_AFTER_S), "X-Data-Commit": served})

    def serves(self, wanted: str) -> bool:
        """Does the served snapshot contain ``wanted`` (it, or a descendant of it)?"""
        served = self.runtime.holder.current.commit
        if served == wanted:
            return True
        key = (wanted, served)
        with self._lock:
            known = self._contains.get(key)
        if known is not None:
            return known
        contains = self.runtime.repo.is_ancestor(wanted, served)  # False for a commit never fetched
        with self._lock:
            self._contains[key] = contains
            while len(self._contains) > 4096:
                self._contains.popitem(last=False)
        return contains

    def _recently_missing(self, wanted: str) -> bool:
        with self._lock:
            at = self._missing.get(wanted)
            return at is not None and time.monotonic() - at < MISSING_TTL_S

    def _remember_missing(self, wanted: str) -> None:
        with self._lock:
            self._missing[wanted] = time.monotonic()
            self._missing.move_to_end(wanted)
            while len(self._missing) > 1024:
                self._missing.popitem(last=False)
