"""A limit on failed authentication, per client, on every route that takes a token (specs/design.md,
specs/network.md "Proxies"): past ``limit`` failures (401s) within ``window_s`` seconds, a client's
failures answer 429 with ``Retry-After`` instead; its credentials are still checked, so a correct
call is never refused. The client is the peer, or the address a trusted proxy names."""

from __future__ import annotations

import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

import falcon

from hotreload.api.errors import ApiError

MAX_TRACKED = 10_000
"""Clients remembered at once (the least recently failing are forgotten first)."""

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
_FORWARDED_FOR = re.compile(r'for=("[^"]*"|[^;,\s]+)', re.IGNORECASE)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in one hop: ``192.0.2.7``, ``"192.0.2.7:4711"``, ``"[2001:db8::7]:4711"``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:text.find("]")]
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(peer: str, forwarded: str | None, forwarded_for: str | None, trusted: Networks) -> str:
    """The client a request comes from (see the module's docstring)."""
    address = _address(peer)
    if not trusted or address is None or not any(address in net for net in trusted):
        return peer
    hops = _FORWARDED_FOR.findall(forwarded) if forwarded else (forwarded_for or "").split(",")
    for hop in reversed(hops):
        named = _address(hop)
        if named is None:  # "unknown", an obfuscated name: nothing further can be believed
            return peer
        if not any(named in net for net in trusted):
            return str(named)
    return peer


class FailureLimiter:
    """The failures of each client; :meth:`refusal` is what api/auth.py's hook asks on a failed
    authentication (the resource's ``limiter``)."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 trusted: Networks = (), on_limited: Callable[[], None] = lambda: None) -> None:
        self.limit = limit
        self.window = window_s
        self._clock = clock
        self.trusted = trusted
        self.on_limited = on_limited
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client``'s failures are back under the limit, or None if they are."""
        if self.limit <= 0:
            return None
        with self._lock:
            failures = self._prune(client)
            if failures is None or len(failures) < self.limit:
                return None
            return max(0.0, failures[0] + self.window - self._clock())

    def refusal(self, req: falcon.Request) -> ApiError | None:
        """Count a failed authentication of ``req``'s client: the 429 to answer instead of the
        401 when it was over the limit already, else None."""
        client = client_address(req.remote_addr or "unknown", req.get_header("Forwarded"),
                                req.get_header("X-Forwarded-For"), self.trusted)
        blocked = self.retry_after(client) is not None
        self.record_failure(client)
        wait = self.retry_after(client)
        if not blocked or wait is None:
            return None
        self.on_limited()
        return ApiError(429, "too_many_requests", "too many failed authentications from this client; retry "
                        f"in {math.ceil(wait)} s", headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def record_failure(self, client: str) -> None:
        if self.limit <= 0:
            return
        with self._lock:
            failures = self._prune(client)
            if failures is None:
                failures = self._failures[client] = deque(maxlen=self.limit)  # the last `limit` suffice
            failures.append(self._clock())
            self._failures.move_to_end(client)
            while len(self._failures) > MAX_TRACKED:
                self._failures.popitem(last=False)

    def _prune(self, client: str) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        cutoff = self._clock() - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures
