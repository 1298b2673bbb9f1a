"""The push daemon: after each local commit, push the branch to the remote in the
background, so a write returns as soon as its commit is local.

* Transport errors are retried with exponential backoff (1 s, 2 s, 4 s ... capped
  at 1 h by default). A new commit during a backoff does not cut it short: the
  next attempt pushes the branch tip, which carries every commit since.
* A non-fast-forward rejection means the remote moved (another replica wrote, or
  an outside author). With ``on_rejected`` set (the service sets it to a reload),
  the daemon reconciles at once: fetch, rebase (or escape), push. A reconcile
  whose push is rejected again (replicas racing for the branch) is retried after
  a jittered backoff, so racing replicas fall out of step and each gets through.
  Without ``on_rejected`` a rejection is terminal for that tip: logged at ERROR
  and left for the next reconcile; a later local commit, or :meth:`notify`,
  tries again.
* ``refs/remotes/origin/<branch>`` is the last tip known to be on the remote;
  ``pending`` counts the local commits not reachable from it. The count is kept
  current when it can change (a local commit, a push, a reload: each calls
  :meth:`PushDaemon.notify`) with one walk over the pending commits, and
  :meth:`PushDaemon.status` only reads the last published :class:`PushStatus`:
  a health probe never walks history and never waits on the daemon.
* An attempt reads the branch and the tracking ref under ``remote_lock``, which a
  reconcile holds from its fetch to its push: read in the middle of a reconcile that
  applies a rewind of the remote, the old branch and the new tracking ref would push
  the removed commits back (a fast-forward of the rewound remote). The push itself
  runs outside the lock (a webhook never waits for it) and expects the remote where
  the tracking ref says it is: a remote rewound meanwhile refuses it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hotreload.git.repo import GitError, GitRepo, PushRejected, Remote, branch_ref, tracking_ref
from hotreload.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushStatus:
    pending: int
    last_error: str | None
    rejected: bool
    retry_at: float | None = None
    """``time.monotonic()`` of the next attempt after a failure, else None."""

    @property
    def next_attempt_in_s(self) -> float | None:
        return None if self.retry_at is None else max(0.0, self.retry_at - time.monotonic())


class PushDaemon:
    def __init__(
        self,
        repo: GitRepo,
        remote: str | Remote,
        branch: str,
        metrics: Metrics,
        backoff_seconds: float = 1.0,
        backoff_cap_seconds: float = 3600.0,
        on_rejected: Callable[[], object] | None = None,
    ) -> None:
        self._repo = repo
        self._remote = remote
        self._branch = branch
        self._metrics = metrics
        self._backoff = backoff_seconds
        self._cap = backoff_cap_seconds
        self._cond = threading.Condition()
        self._wake = False
        self._stopping = False
        self._failures = 0
        self._retry_at: float | None = None
        self._last_error: str | None = None
        self._rejected_tip: str | None = None
        self.on_rejected = on_rejected
        """Called on the daemon's thread after a non-fast-forward rejection: reconcile."""
        self._rejections = 0
        self._reconcile_at: float | None = None
        self._busy = False
        self._published = PushStatus(0, None, False)
        self._pending_lock = threading.Lock()  # one count at a time; never held by status()
        self.remote_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="push-daemon", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.notify()  # push anything left unpushed by a previous run

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def notify(self) -> None:
        """A local commit landed (or a reconcile moved a ref): count what is
        pending now, and push soon."""
        self._count_pending()
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def pending(self) -> int:
        """Local commits the remote is not known to have (one walk over them)."""
        local = self._repo.branch_commit(self._branch)
        if local is None:
            return 0
        known = self._repo.resolve(tracking_ref(self._branch))
        if known == local:
            return 0
        if known is None or not self._repo.has_object(known):
            return self._repo.count_commits(local)
        return len(self._repo.compare(known, local).right_only)

    def status(self) -> PushStatus:
        """The last published status: no lock, no history walk."""
        return self._published

    def _count_pending(self) -> None:
        with self._pending_lock:
            pending = self.pending()
            with self._cond:
                if pending == 0:
                    # delivered (by us or by a reconcile's push): an old error no longer applies,
                    # and a backoff for an unreachable remote neither (it was just reached)
                    self._last_error, self._rejected_tip, self._rejections = None, None, 0
                    self._failures, self._retry_at, self._reconcile_at = 0, None, None
                self._publish(pending)

    def _publish(self, pending: int | None = None) -> None:
        """Replace the published status (call with ``self._cond`` held)."""
        self._published = PushStatus(
            self._published.pending if pending is None else pending,
            self._last_error, self._rejected_tip is not None, self._retry_at)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the remote has the local branch tip (True), or the daemon gave
        up on it (rejected) or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        self.notify()
        with self._cond:
            while True:
                if not self._busy and not self._wake:
                    if self.pending() == 0:
                        return True
                    if self._reconcile_at is None and \
                            self._rejected_tip == self._repo.branch_commit(self._branch):
                        return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))

    # -- the thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._retry_at is not None:
                        if now >= self._retry_at:
                            break
                        self._cond.wait(self._retry_at - now)
                    elif self._wake:
                        break
                    else:
                        self._cond.wait()
                if self._stopping:
                    return
                self._wake = False
                self._retry_at = None
                self._busy = True
                reconcile = self._reconcile_at is not None and time.monotonic() >= self._reconcile_at
                if reconcile:
                    self._reconcile_at = None
            try:
                if reconcile:
                    self._reconcile()
                else:
                    self._attempt()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _rejection_delay(self) -> float:
        """No delay after the first rejection; then the backoff, jittered (0.5-1.5x) so
        replicas that keep rejecting each other fall out of step."""
        if self._rejections <= 1:
            return 0.0
        delay: float = min(self._backoff * 2.0 ** (self._rejections - 2), self._cap)
        return delay * random.uniform(0.5, 1.5)

    def _reconcile(self) -> None:
        assert self.on_rejected is not None
        log.info("push rejected: reconciling with the remote (attempt %d)", self._rejections,
                 extra={"trigger": "push-rejected", "attempt": self._rejections})
        try:
            self.on_rejected()  # a reload: fetch, rebase or escape, push; it notifies us back
        except Exception as exc:  # recorded by the reload (health, metrics, log)
            log.warning("reconcile after a rejected push failed: %s", exc, extra={"trigger": "push-rejected"})
        with self._cond:
            self._wake = True  # look again: pushed by the reconcile, or push what it made

    def _attempt(self) -> None:
        with self.remote_lock:
            local = self._repo.branch_commit(self._branch)
            known = self._repo.resolve(tracking_ref(self._branch))
        if local is None or known == local or (
                known is not None and self._repo.has_object(known) and self._repo.is_ancestor(local, known)):
            # nothing the remote lacks: a reload fast-forwarded or escaped, or the branch is only
            # behind (the remote's newer tip failed to build): pushing it would be "rejected"
            self._count_pending()
            return
        try:
            self._repo.push_ref(self._remote, local, branch_ref(self._branch), expect=known)
        except PushRejected as exc:
            self._metrics.pushes.labels("rejected").inc()
            if self.on_rejected is None:
                log.error("push rejected; the next reconcile will resolve it: %s", exc,
                          extra={"commit": local, "result": "rejected"})
            else:  # another writer got there first: expected with several replicas
                log.warning("push rejected; reconciling with the remote: %s", exc,
                            extra={"commit": local, "result": "rejected"})
            with self._cond:
                self._last_error, self._rejected_tip, self._failures = str(exc), local, 0
                if self.on_rejected is not None:
                    self._rejections += 1
                    self._reconcile_at = self._retry_at = time.monotonic() + self._rejection_delay()
                self._publish()
            return
        except Exception as exc:
            if not isinstance(exc, GitError):
                log.exception("unexpected error while pushing; retrying with backoff")
            self._metrics.pushes.labels("error").inc()
            with self._cond:
                delay = min(self._backoff * 2**self._failures, self._cap)
                self._failures += 1
                self._last_error = str(exc)
                self._retry_at = time.monotonic() + delay
                self._publish()
            log.warning("push failed; retrying in %.1f s: %s", delay, exc,
                        extra={"commit": local, "result": "error", "retryInS": delay})
            return
        self._repo.set_ref(tracking_ref(self._branch), local)
        self._metrics.pushes.labels("success").inc()
        log.info("pushed %s", local[:12], extra={"commit": local, "result": "success"})
        with self._cond:
            self._failures, self._last_error, self._rejected_tip = 0, None, None
            self._publish()
        self._count_pending()
        with self._cond:
            # a commit may have landed while we pushed: go round again
            if self._repo.branch_commit(self._branch) != local:
                self._wake = True
