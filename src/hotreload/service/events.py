"""One event per swap (a reload or a write, :mod:`~hotreload.service.swap`), for downstream:
the ``/api/events`` streams and the signed notifications hear it (specs/downstream.md).
:meth:`EventHub.publish` is called under the data lock and only queues, so events keep the
swaps' order; the hub's thread builds each, keeps the last :data:`HISTORY` (a stream resumes
from its ``Last-Event-ID``) and offers it to every subscriber's bounded queue and to the
listeners (the notifier's queue), waiting for none."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from hotreload.data.snapshot import Snapshot
from hotreload.metrics import Metrics

log = logging.getLogger(__name__)

HISTORY = 256
QUEUE_BYTES = 256 * 1024
"""A subscriber whose frames not yet sent pass this is dropped (it resumes by reconnecting)."""
HEARTBEAT_S = 15.0
RETRY_MS = 3000


@dataclass(frozen=True)
class Event:
    id: str  # the commit served after the swap
    base: str  # the commit served before it: the previous event's id
    kind: str  # reload | write
    data: bytes  # {event, from, to, outcome, counts: {sheet: {added, changed, removed}}, at}

    @classmethod
    def of(cls, kind: str, outcome: str, base: Snapshot, snapshot: Snapshot) -> Event:
        at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return cls(snapshot.commit, base.commit, kind, msgspec.json.encode({
            "event": kind, "from": base.commit, "to": snapshot.commit, "outcome": outcome,
            "counts": snapshot.changes.sheets, "at": at}))

    @property
    def frame(self) -> bytes:
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (self.id.encode(), self.kind.encode(), self.data)


class TooManySubscribers(Exception):
    pass


class Subscriber:
    """One open stream: the frames not yet handed to its connection. ``wake`` is called after
    each offer (server.py sets it to put the connection back into its loop)."""

    def __init__(self, hub: EventHub, limit: int) -> None:
        self._hub, self.limit, self.closed = hub, limit, False
        self._frames: list[bytes] = []
        self._lock = threading.Lock()
        self.wake: Callable[[], Any] = lambda: None

    @property
    def pending(self) -> bool:
        return bool(self._frames)

    def offer(self, frame: bytes) -> None:
        with self._lock:
            fits = not self.closed and sum(map(len, self._frames)) + len(frame) <= self.limit
            if fits:
                self._frames.append(frame)
        if fits:
            self.wake()
        elif not self.closed:  # too slow: dropped, never waited for
            self._hub.metrics.stream_dropped.inc()
            self.close()

    def take(self) -> bytes:
        with self._lock:
            frames, self._frames = self._frames, []
        return b"".join(frames)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.forget(self)
            self.wake()


class EventHub:
    def __init__(self, metrics: Metrics, max_subscribers: int, queue_bytes: int = QUEUE_BYTES,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.metrics, self.max_subscribers, self.queue_bytes = metrics, max_subscribers, queue_bytes
        self.listeners: list[Callable[[Event], None]] = []
        """Called with every event, on the hub's thread: must not block."""
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._subscribers: set[Subscriber] = set()
        self._swaps: list[tuple[str, str, Snapshot, Snapshot]] = []
        self._cond = threading.Condition()
        self._stopped = False
        metrics.watch("hotreload_stream_subscribers", "Open /api/events streams", lambda: len(self._subscribers))
        threading.Thread(target=self._run, args=(heartbeat_s,), name="events", daemon=True).start()

    def publish(self, kind: str, outcome: str, base: Snapshot, snapshot: Snapshot) -> None:
        with self._cond:
            self._swaps.append((kind, outcome, base, snapshot))
            self._cond.notify()

    def _run(self, heartbeat_s: float) -> None:
        beat_at = time.monotonic() + heartbeat_s
        while not self._stopped:
            with self._cond:
                self._cond.wait_for(lambda: self._swaps or self._stopped, max(0.0, beat_at - time.monotonic()))
                events, self._swaps = [Event.of(*swap) for swap in self._swaps], []
                self._history.extend(events)
                subscribers = list(self._subscribers)
            frames = b"".join(e.frame for e in events)
            if time.monotonic() >= beat_at:  # a comment line keeps proxies and idle timeouts off
                frames, beat_at = frames + b": heartbeat\n\n", time.monotonic() + heartbeat_s
            for subscriber in subscribers:
                try:
                    subscriber.offer(frames)
                except Exception:  # one subscriber's failure must not end every stream's events
                    log.exception("an event stream could not be offered its events; dropping it")
                    self.forget(subscriber)
            for event in events:
                for listener in self.listeners:
                    try:
                        listener(event)
                    except Exception:
                        log.exception("a listener of events failed on %s", event.id)

    def subscribe(self, last_id: str | None, served: str) -> tuple[Subscriber, bytes]:
        """A new subscriber and what its stream starts with: the retry interval, then the events
        after ``last_id`` (its ``Last-Event-ID``) if the history reaches back to it (an id, or the
        oldest's ``base``), else one ``catch-up`` event naming the change feed from it."""
        with self._cond:
            if len(self._subscribers) >= self.max_subscribers:
                raise TooManySubscribers(f"{self.max_subscribers} event streams are open")
            subscriber = Subscriber(self, self.queue_bytes)
            self._subscribers.add(subscriber)
            history = list(self._history)
        start, ids = b"retry: %d\n\n" % RETRY_MS, [history[0].base, *(e.id for e in history)] if history else []
        last_id = last_id or served  # the request read ``served`` before it subscribed: a swap may have come since
        if last_id in ids:  # the events after its last place (a rewound branch may come back to a commit)
            return subscriber, start + b"".join(e.frame for e in history[len(ids) - 1 - ids[::-1].index(last_id):])
        if last_id == served:
            return subscriber, start
        gap = msgspec.json.encode({"from": last_id, "to": served, "changes": f"/api/changes?since={last_id}"})
        return subscriber, start + b"event: catch-up\ndata: %s\n\n" % gap

    def forget(self, subscriber: Subscriber) -> None:
        with self._cond:
            self._subscribers.discard(subscriber)

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.close()
