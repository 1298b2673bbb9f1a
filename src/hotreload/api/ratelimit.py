"""A limit on failed authentication, per client address, on every route that
takes a token (the webhook and the writes): after ``limit`` failures (401s)
within ``window_s`` seconds, that address gets 429 with ``Retry-After`` until the
oldest failure leaves the window.

While an address is blocked its calls are refused before the token is checked:
checking first would tell a guesser which token is right at full speed (200
against 429), which is the oracle the limit exists to slow. Successful calls
never count, so a CI burst of correctly signed webhooks is never limited; only
an address that keeps failing is.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import falcon

from hotreload.api.errors import ApiError

MAX_TRACKED = 10_000
"""Addresses remembered at once (the least recently failing are forgotten first)."""

WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


class FailureLimiter:
    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window_s
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None if it is not blocked."""
        if self.limit <= 0:
            return None
        with self._lock:
            failures = self._prune(address)
            if failures is None or len(failures) < self.limit:
                return None
            return max(0.0, failures[len(failures) - self.limit] + self.window - self._clock())

    def record_failure(self, address: str) -> None:
        if self.limit <= 0:
            return
        with self._lock:
            failures = self._prune(address)
            if failures is None:
                failures = self._failures[address] = deque()
            failures.append(self._clock())
            self._failures.move_to_end(address)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def _prune(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures


class AuthFailureMiddleware:
    """Applies a :class:`FailureLimiter` to the token-taking routes."""

    def __init__(self, limiter: FailureLimiter, on_limited: Callable[[], None] = lambda: None) -> None:
        self.limiter = limiter
        self.on_limited = on_limited

    @staticmethod
    def _takes_a_token(req: falcon.Request) -> bool:
        return req.path.startswith("/api/") and req.method in WRITE_METHODS

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self._takes_a_token(req):
            return
        wait = self.limiter.retry_after(req.remote_addr or "unknown")
        if wait is not None:
            self.on_limited()
            raise ApiError(429, "too_many_requests",
                           f"too many failed authentications from this address; retry in {math.ceil(wait)} s",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if self._takes_a_token(req) and str(resp.status).startswith("401"):
            self.limiter.record_failure(req.remote_addr or "unknown")
