"""Fan-out of a webhook to the other replicas (``CFP_RELOAD_PEERS``, specs/replicas.md).

The replica a webhook reaches forwards it to every other one: the same body, signed afresh
(``X-Hub-Signature-256``), marked with ``X-Hotreload-Forwarded-By`` so the peer reloads but never
forwards again; in the background, with timeouts, so the caller never waits. Membership is DNS:
each ``host:port`` is resolved at every forward, to all its addresses (a Kubernetes headless
Service's name lists the ready replicas); a replica skips its own address and port.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hotreload.metrics import Metrics

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Hotreload-Forwarded-By"
RELOAD_PATH = "/api/_internal/reload-data"
CONNECT_TIMEOUT_S = 1.0
TIMEOUT_S = 10.0
"""A forwarded call waits for the peer's reload (so its log says how it went);
the caller of the original webhook never waits for it."""
RESOLVE_TIMEOUT_S = 5.0
"""A fan-out whose names are not resolved by then is skipped (the poll catches up)."""
PASSED_HEADERS = ("X-GitHub-Event", "X-GitHub-Delivery", "X-Gitlab-Event", "Content-Type")


@dataclass(frozen=True)
class Peer:
    address: str
    port: int

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


def resolve(entries: Sequence[tuple[str, int]]) -> list[Peer]:
    """Every address of every entry (A and AAAA), in a stable order, without repeats."""
    peers: dict[Peer, None] = {}
    for host, port in entries:
        for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            if family in (socket.AF_INET, socket.AF_INET6):
                peers[Peer(str(sockaddr[0]), port)] = None
    return list(peers)


@functools.cache
def is_local_address(address: str) -> bool:
    """True when this host owns ``address``: only then can a socket be bound to it."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


class PeerNotifier:
    def __init__(self, entries: Sequence[tuple[str, int]], secret: str | None, metrics: Metrics,
                 own_port: int | None = None, me: str | None = None,
                 resolver: Callable[[Sequence[tuple[str, int]]], list[Peer]] = resolve,
                 resolve_timeout_s: float = RESOLVE_TIMEOUT_S) -> None:
        self.entries = tuple(entries)
        self.secret = secret
        self.metrics = metrics
        self.own_port = own_port
        """The port this process listens on; set once it is bound (``--port 0``)."""
        self.me = me or f"{socket.gethostname()}:{own_port}"
        """How forwarded calls name their sender (X-Hotreload-Forwarded-By, in peers' logs)."""
        self._resolve = resolver
        self.resolve_timeout_s = resolve_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="peer-forward")
        self._lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peer-resolve")
        self._closed = threading.Event()

    def others(self) -> list[Peer]:
        """The peers to notify now: every resolved address but this process's own."""
        return [p for p in self._resolve(self.entries) if p.port != self.own_port or not is_local_address(p.address)]

    def forward(self, body: bytes, headers: dict[str, str], trace_id: str | None = None) -> list[str]:
        """Start forwarding ``body`` to every other peer; returns the entries it goes to
        at once, before their names are resolved (DNS can take seconds)."""
        if not self.entries or self.secret is None or self._closed.is_set():
            return []
        sent = {name: value for name, value in headers.items() if name in PASSED_HEADERS and value}
        signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()  # what the webhook verifies
        sent.update({"X-Hub-Signature-256": f"sha256={signature}", FORWARDED_HEADER: self.me,
                     "Content-Type": sent.get("Content-Type", "application/json")})
        if trace_id:
            sent["X-Request-Id"] = trace_id
        try:
            self._pool.submit(self._fan_out, body, sent)
        except RuntimeError:  # shutting down
            return []
        return [str(Peer(host, port)) for host, port in self.entries]

    def _fan_out(self, body: bytes, headers: dict[str, str]) -> None:
        """Resolve the entries (one lookup at a time), then send to each other peer. A name
        that does not resolve in time is logged and skips the fan-out (the poll,
        ``CFP_DATA_POLL_SECONDS``, is the safety net)."""
        lookup = self._lookups.submit(self.others)
        try:
            peers = lookup.result(timeout=self.resolve_timeout_s)
        except (OSError, TimeoutError) as exc:
            lookup.cancel()  # if still queued behind a lookup that hangs
            self.metrics.peer_forwards.labels("unresolved").inc()
            log.warning("CFP_RELOAD_PEERS: cannot resolve %s: %s; peers are not notified (the poll "
                        "catches them up)", ", ".join(f"{h}:{p}" for h, p in self.entries),
                        str(exc) or f"no answer in {self.resolve_timeout_s:g} s",
                        extra={"traceId": headers.get("X-Request-Id")})
            return
        for peer in peers:
            try:
                self._pool.submit(self._send, peer, body, headers)
            except RuntimeError:  # shutting down
                break

    def _send(self, peer: Peer, body: bytes, headers: dict[str, str]) -> None:
        conn = http.client.HTTPConnection(peer.address, peer.port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(TIMEOUT_S)
            conn.request("POST", RELOAD_PATH, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            self.metrics.peer_forwards.labels("error").inc()
            log.warning("forward to peer %s failed: %s (its poll catches it up)", peer, exc,
                        extra={"peer": str(peer), "traceId": headers.get("X-Request-Id")})
            return
        finally:
            conn.close()
        result = "ok" if status < 500 and status not in (401, 429) else "error"
        self.metrics.peer_forwards.labels(result).inc()
        log.log(logging.INFO if result == "ok" else logging.WARNING, "forwarded the webhook to %s: %d",
                peer, status, extra={"peer": str(peer), "status": status,
                                     "traceId": headers.get("X-Request-Id")})

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._lookups.shutdown(wait=False, cancel_futures=True)
