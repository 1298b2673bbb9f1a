"""The poll: the safety net under the webhook (``CFP_DATA_POLL_SECONDS``).

Every interval (with +-10% jitter, so replicas started together do not ask the
remote in step) the poller asks the remote for the branch tip: refs only, no
pack. Unless the service has caught up with that tip it runs the normal reload,
single-flight with webhooks, announcing the tip, so the usual pre-check and
outcomes apply and the metrics say ``trigger="poll"``. A lost webhook therefore
costs at most one interval.

Caught up (:meth:`Poller.caught_up`) means: the tip is the last one this clone
fetched (``refs/remotes/origin/<branch>``; another tip is a move, or a rewind) *and*
the served commit contains it. The second half is what makes the poll converge
whatever left the tracking ref at a tip the service does not serve (a write's check
fetch, a reload that failed after its fetch, a process killed between the two):
comparing with the tracking ref alone, the poll saw nothing to do, and the replica
stayed behind for good. A served commit ahead of the tip (local commits the push
daemon has yet to deliver) is caught up: delivering them is the daemon's job. One
exception keeps a tip that failed to build from being fetched and built every
interval: the reloader remembers it (:attr:`Reloader.unbuildable`), and the next move
of the branch is what a fix looks like.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from dataclasses import dataclass

from hotreload.git.repo import GitError, GitRepo, Remote, tracking_ref
from hotreload.metrics import Metrics
from hotreload.service.reloader import Reloader

log = logging.getLogger(__name__)

JITTER = 0.1


@dataclass(frozen=True)
class PollStatus:
    interval_s: float
    last_at: str | None = None
    last_result: str | None = None
    """``unchanged``, ``moved`` (a reload ran) or ``error``."""
    last_error: str | None = None


class Poller:
    def __init__(self, reloader: Reloader, repo: GitRepo, remote: str | Remote, branch: str, interval_s: float,
                 metrics: Metrics, rng: random.Random | None = None) -> None:
        self.reloader = reloader
        self.repo = repo
        self.remote = remote
        self.branch = branch
        self.interval_s = interval_s
        self.metrics = metrics
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._status = PollStatus(interval_s)
        self._thread = threading.Thread(target=self._run, name="poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> PollStatus:
        return self._status

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s * self._rng.uniform(1 - JITTER, 1 + JITTER)):
            try:
                self.poll_once()
            except Exception:  # never let the safety net die; the next interval tries again
                log.exception("poll failed unexpectedly")

    def poll_once(self) -> str:
        """Ask the remote once; reload if its tip moved. Returns the result."""
        try:
            tip = self.repo.remote_tip(self.remote, self.branch)
        except GitError as exc:
            return self._done("error", str(exc))
        if tip is None:
            return self._done("error", f"the remote has no branch {self.branch!r}")
        if self.caught_up(tip):
            return self._done("unchanged")
        log.info("poll: %s moved on the remote to %s; reloading", self.branch, tip[:12],
                 extra={"trigger": "poll", "remoteTip": tip})
        try:
            result = self.reloader.reload(tip, trigger="poll")
        except Exception as exc:  # recorded by the reloader (health, metrics, log)
            return self._done("error", f"reload after the poll: {exc}")
        log.info("poll: reload %s: %s -> %s", result.outcome, result.old_commit[:12], result.new_commit[:12],
                 extra={"trigger": "poll", "outcome": result.outcome, "oldCommit": result.old_commit,
                        "newCommit": result.new_commit})
        return self._done("moved")

    def caught_up(self, tip: str) -> bool:
        """Nothing for a reload to do about the remote's ``tip``: it is the last tip fetched,
        and it is served (or the served commit contains it, or it failed to build)."""
        if tip == self.reloader.unbuildable:  # (after a rewrite, the tracking ref stays before it)
            return True
        if tip != self.repo.resolve(tracking_ref(self.branch)):
            return False  # the remote moved (or was rewound) since this clone last fetched
        served = self.reloader.holder.current.commit
        if tip == served:
            return True
        try:
            return self.repo.is_ancestor(tip, served)
        except GitError:
            return False  # cannot tell: the reload can

    def _done(self, result: str, error: str | None = None) -> str:
        self.metrics.polls.labels(result).inc()
        if error is not None and error != self._status.last_error:
            log.warning("poll: %s", error, extra={"trigger": "poll"})  # once per distinct error
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self._status = PollStatus(self.interval_s, now, result, error)
        return result
