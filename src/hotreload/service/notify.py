"""Signed notifications (specs/downstream.md): every URL in ``CFP_NOTIFY_URLS`` gets a ``POST``
of each event's JSON, signed ``X-Hotreload-Signature-256: sha256=<HMAC-SHA256 of the body with
CFP_NOTIFY_SECRET>``, with a delivery id its retries keep. :meth:`Notifier.put` only queues
(never on a reload's path); each receiver has its own bounded queue and thread, delivers in
order and retries with backoff until it succeeds, so a receiver that was down gets what it
missed once it is back. A request waits at most ``CFP_DATA_NETWORK_TIMEOUT_SECONDS`` to connect
and for each read; a redirect is a failure (a URL to fix)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import threading
import urllib.parse
import urllib.request
import uuid
from collections import deque
from typing import Any

from hotreload import __version__
from hotreload.metrics import Metrics
from hotreload.service.events import Event

log = logging.getLogger(__name__)

QUEUE = 1000
"""Deliveries waiting per receiver at most (the oldest is dropped, logged and counted)."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


class Receiver:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)  # shown in health and logs: no credentials, no query
        port = f":{parts.port}" if parts.port else ""
        self.url, self.shown = url, f"{parts.scheme}://{parts.hostname}{port}{parts.path}"
        self.queue: deque[tuple[str, Event]] = deque()  # (delivery id, event), oldest first
        self.last_error: str | None = None
        self.last_delivered_at: str | None = None


class Notifier:
    def __init__(self, urls: tuple[str, ...], secret: str, timeout_s: float, metrics: Metrics,
                 backoff_s: float = 1.0, backoff_cap_s: float = 300.0, limit: int = QUEUE) -> None:
        self.receivers = [Receiver(url) for url in urls]
        self._secret, self._timeout_s, self.metrics, self._limit = secret.encode(), timeout_s, metrics, limit
        self._opener = urllib.request.build_opener(_NoRedirects)
        self._cond = threading.Condition()
        self._stopped = False
        metrics.watch("hotreload_notify_pending", "Notifications waiting for delivery (CFP_NOTIFY_URLS)",
                      lambda: sum(len(r.queue) for r in self.receivers))
        self._threads = [threading.Thread(target=self._deliver, args=(r, backoff_s, backoff_cap_s), daemon=True,
                                          name=f"notify-{n}") for n, r in enumerate(self.receivers)]
        for thread in self._threads:
            thread.start()

    def put(self, event: Event) -> None:
        """Queue ``event`` for every receiver (never blocks on the network)."""
        with self._cond:
            for r in self.receivers:
                if len(r.queue) >= self._limit:
                    lost = r.queue.popleft()[1]
                    self.metrics.notifications.labels("dropped").inc()
                    log.error("notify: %s is %d deliveries behind; dropped the one for %s", r.shown, self._limit,
                              lost.id, extra={"url": r.shown, "commit": lost.id})
                r.queue.append((uuid.uuid4().hex, event))
            self._cond.notify_all()

    def _deliver(self, r: Receiver, backoff_s: float, backoff_cap_s: float) -> None:
        delay = backoff_s
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopped or bool(r.queue))
                if self._stopped:
                    return
                delivery, event = r.queue[0]
            try:
                self._post(r.url, delivery, event)
            except Exception as exc:  # down, refused, timed out, a non-2xx: the same delivery again later
                r.last_error = f"{type(exc).__name__}: {exc}"
                self.metrics.notifications.labels("failed").inc()
                log.warning("notify: delivery %s of %s to %s failed (again in %.0f s): %s", delivery, event.id,
                            r.shown, delay, r.last_error, extra={"url": r.shown, "commit": event.id})
                with self._cond:
                    self._cond.wait_for(lambda: self._stopped, delay)
                delay = min(delay * 2, backoff_cap_s)
                continue
            with self._cond:
                if r.queue and r.queue[0][0] == delivery:  # not dropped meanwhile
                    r.queue.popleft()
            delay, r.last_error = backoff_s, None
            r.last_delivered_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            self.metrics.notifications.labels("delivered").inc()

    def _post(self, url: str, delivery: str, event: Event) -> None:
        signature = hmac.new(self._secret, event.data, hashlib.sha256).hexdigest()
        request = urllib.request.Request(url, data=event.data, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"hotreload/{__version__}",
            "X-Hotreload-Event": event.kind, "X-Hotreload-Commit": event.id, "X-Hotreload-Delivery": delivery,
            "X-Hotreload-Signature-256": f"sha256={signature}"})
        with self._opener.open(request, timeout=self._timeout_s) as response:  # a status >= 300 raises
            response.read(64 * 1024)

    def status(self) -> list[dict[str, Any]]:
        return [{"url": r.shown, "pending": len(r.queue), "lastError": r.last_error,
                 "lastDeliveredAt": r.last_delivered_at} for r in self.receivers]

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=1.0)  # one stuck in a POST is a daemon: it ends with the process
