"""The data lock: serialises ref moves, local commits and snapshot swaps.

FIFO-fair (a steady stream of writers cannot starve a reload, or the other way
round) and measured: every hold is timed, reported to a callback (metrics), and
available to the holder as ``hold.held_ms`` once released.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Hold:
    reason: str
    held_ms: float = 0.0


class DataLock:
    def __init__(self, on_release: Callable[[Hold], None] | None = None) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[object] = deque()
        self._held = False
        self._on_release = on_release

    @contextmanager
    def hold(self, reason: str) -> Iterator[Hold]:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._held or self._queue[0] is not ticket:
                self._cond.wait()
            self._queue.popleft()
            self._held = True
        hold = Hold(reason)
        started = time.perf_counter()
        try:
            yield hold
        finally:
            hold.held_ms = (time.perf_counter() - started) * 1000
            with self._cond:
                self._held = False
                self._cond.notify_all()
            if self._on_release is not None:
                self._on_release(hold)

    @property
    def locked(self) -> bool:
        return self._held
