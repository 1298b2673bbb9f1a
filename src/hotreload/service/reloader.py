"""The reload use case: pre-check, single flight, reconcile, build, swap.

Everything slow happens before the data lock is taken: fetch, plan (a rebase writes
its commits but moves no ref), build and warm the new snapshot. The lock is held
only to move the ref (CAS) and assign ``holder.current``, by the protocol writes
share (:mod:`~hotreload.service.swap`). A build that fails moves nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

from hotreload.data.records import RecordError
from hotreload.data.snapshot import Changes, Snapshot, SnapshotHolder
from hotreload.git import reconcile
from hotreload.git.errors import NetworkTimeout
from hotreload.git.push import PushDaemon
from hotreload.git.reconcile import Clock, Outcome, Plan, ReconcileResult, utc_now
from hotreload.git.repo import GitError, GitRepo, Remote, tracking_ref
from hotreload.metrics import Metrics
from hotreload.service.lock import DataLock
from hotreload.service.swap import Swapped, build, swap
from hotreload.service.writer import write_trailers

log = logging.getLogger(__name__)


class FetchFailed(Exception):
    def __init__(self, head: str, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.head = head
        self.timed_out = timed_out


class RebuildFailed(Exception):
    def __init__(self, commit: str, path: str, error: str) -> None:
        super().__init__(f"{path}: {error}")
        self.commit = commit
        self.path = path
        self.error = error


@dataclass(frozen=True)
class ReloadResult:
    outcome: str
    no_changes: bool
    rebuilt: bool
    old_commit: str
    new_commit: str
    duration_ms: float
    prechecked: bool = False
    lock_held_ms: float = 0.0
    ahead: int = 0
    behind: int = 0
    conflict_branch: str | None = None
    changes: Changes = field(default=Changes())
    rewritten_from: str | None = None
    warmed: int = 0
    """Answers of the previous snapshot recomputed on the new one before the swap."""
    carried: int = 0
    """... and carried over as they were (none of the sheets they read changed)."""
    warm_ms: float = 0.0


@dataclass(frozen=True)
class LastReload:
    outcome: str
    at: str
    duration_ms: float
    lock_held_ms: float
    error: str | None = None
    trigger: str = "webhook"


@dataclass
class Flight:
    """A reload run: who asked (``trigger``), since when (``time.time()``), and how it ended."""

    started_seq: int
    trigger: str = "webhook"
    since: float = field(default_factory=time.time)
    result: ReloadResult | None = None
    error: BaseException | None = None

    def outcome(self) -> ReloadResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@dataclass(eq=False)
class Reloader:
    repo: GitRepo
    holder: SnapshotHolder
    lock: DataLock
    branch: str
    remote: str | Remote | None
    metrics: Metrics
    push_daemon: PushDaemon | None = None
    clock: Clock = utc_now
    last: LastReload | None = field(default=None, init=False)
    unbuildable: str | None = field(default=None, init=False)
    """The remote tip whose reload failed to build, last (the poll does not fetch it again)."""
    _running: threading.Lock = field(default_factory=threading.Lock, init=False)
    _flight: Flight | None = field(default=None, init=False)
    _done: Flight | None = field(default=None, init=False)
    _seq: Iterator[int] = field(default_factory=itertools.count, init=False)

    def reload(self, commit_hash: str | None = None, precheck: bool = True,
               trigger: str = "webhook") -> ReloadResult:
        """Reconcile with the remote and serve the result. Raises FetchFailed or
        RebuildFailed (nothing changed), or anything else (invariant intact).
        ``precheck=False`` always reconciles (a GitHub push with ``forced``).
        ``trigger`` labels the metrics: webhook, peer, poll, push-rejected,
        min-commit or startup (a run shared by several callers counts as its leader's).
        Single flight: a call that arrives while a run is in flight waits for it, then
        answers from the pre-check, or from a run that started after it arrived, or runs."""
        started = time.perf_counter()
        announced = commit_hash if precheck else None
        if (short := self._precheck(announced, started)) is not None:
            return short
        arrived = next(self._seq)
        with self._running:
            # the run we waited for may have served the commit we were told about
            if (short := self._precheck(announced, started)) is not None:
                return short
            if self._done is not None and self._done.started_seq > arrived:  # it saw what we were told
                return self._done.outcome()
            flight = self._flight = Flight(next(self._seq), trigger)
            try:
                flight.result = self._run(started, trigger)
            except BaseException as exc:
                flight.error = exc
            self._flight, self._done = None, flight
        return flight.outcome()

    def _precheck(self, commit_hash: str | None, started: float) -> ReloadResult | None:
        """Is the announced commit the one served, or the last remote tip this clone
        saw and serves (the self-trigger: our own push)? No lock, no fetch. Any other commit,
        even an ancestor of the served one, goes through the full reconcile: an
        older commit announced is how a rewind of the remote is noticed. A prefix
        counts only when it names exactly one object here."""
        if not commit_hash:
            return None
        served = self.holder.current.commit
        announced = self.repo.resolve_commit_prefix(commit_hash)
        if announced is None:
            return None
        if announced != served and not (
                announced == self.repo.resolve(tracking_ref(self.branch))
                and self.repo.is_ancestor(announced, served)):  # seen, and served (not a failed build)
            return None
        return ReloadResult(
            outcome=str(Outcome.IN_SYNC), no_changes=True, rebuilt=False, old_commit=served,
            new_commit=served, duration_ms=_ms_since(started), prechecked=True,
        )

    def in_flight(self) -> Flight | None:
        """The reload running now, if any (health and metrics show it)."""
        return self._flight

    # -- one run ------------------------------------------------------------------

    def reload_in_background(self, commit_hash: str | None, trigger: str) -> threading.Event:
        """Start a reload on its own thread (single-flight with every other); the
        event is set when it has ended, however it ended (errors are recorded)."""
        done = threading.Event()

        def run() -> None:
            try:
                self.reload(commit_hash, trigger=trigger)
            except Exception as exc:  # recorded in health and metrics by _run
                log.info("background reload (%s) ended with %s", trigger, exc, extra={"trigger": trigger})
            finally:
                done.set()

        threading.Thread(target=run, name=f"reload-{trigger}", daemon=True).start()
        return done

    def _run(self, started: float, trigger: str) -> ReloadResult:
        try:
            result = self._reconcile_and_swap(started)
        except FetchFailed as exc:
            self._record(str(Outcome.FETCH_FAILED), trigger, started, 0.0, str(exc))
            raise
        except RebuildFailed as exc:
            self._record("rebuild-failed", trigger, started, 0.0, str(exc))
            raise
        except Exception as exc:
            self._record("error", trigger, started, 0.0, f"{type(exc).__name__}: {exc}")
            raise
        self._record(result.outcome, trigger, started, result.lock_held_ms, None)
        self.metrics.reload_duration.observe(result.duration_ms / 1000)
        return result

    def _reconcile_and_swap(self, started: float) -> ReloadResult:
        with self.push_daemon.remote_lock if self.push_daemon is not None else nullcontext():
            # the remote tip last reconciled with: a remote that no longer contains it was rewritten
            last_seen = self.repo.last_seen(self.branch)
            remote_tip = self._fetch()
            try:
                swapped = swap(self.lock, self.holder, "reload",
                               lambda base, warm: self._plan_and_build(base, remote_tip, last_seen, warm),
                               lambda plan: reconcile.apply(self.repo, plan, self.branch, self.clock))
            except RebuildFailed:
                self.unbuildable = remote_tip
                raise
            reconcile.log_diversion(swapped.applied, self.branch)
            if swapped.applied.conflict_branch:
                self._report_diverted_writes(swapped.applied)
            result = self._push(swapped.applied)
        return _answer(swapped, result, self.holder.current.commit, _ms_since(started))

    def _report_diverted_writes(self, result: ReconcileResult) -> None:
        """Each API write (a commit with the writer's trailers) that the branch no longer holds
        and the remote never had: an ERROR naming it and its branch, and the metric."""
        lost = set(self.repo.compare(result.new_commit, result.old_commit).right_only)
        if result.rewritten_from:  # commits the remote had and removed were not diverted by us
            lost &= set(self.repo.compare(result.rewritten_from, result.old_commit).right_only)
        for sha in sorted(lost):
            trailers = write_trailers(self.repo.commit(sha).message.decode("utf-8", "replace"))
            if "Action" not in trailers:
                continue
            self.metrics.writes_diverted.inc()
            log.error("an acknowledged API write is not served: %s of %s %s (%s) was diverted to %s",
                      trailers["Action"], trailers.get("Subject-Type"), trailers.get("Subject-Id"),
                      trailers.get("Subject-Slug"), result.conflict_branch,
                      extra={"outcome": str(result.outcome), "commit": sha, "action": trailers["Action"],
                             "subjectType": trailers.get("Subject-Type"), "subjectId": trailers.get("Subject-Id"),
                             "subjectSlug": trailers.get("Subject-Slug"), "conflictBranch": result.conflict_branch})

    def _push(self, result: ReconcileResult) -> ReconcileResult:
        if self.remote is not None:
            result = reconcile.push_result(self.repo, self.remote, self.branch, result)
        if self.push_daemon is not None:
            # refs moved: recount what is pending, and retry (with backoff) a push that failed
            self.push_daemon.notify()
        return result

    def _fetch(self) -> str | None:
        served = self.holder.current.commit
        if self.remote is None:  # no remote configured: serve whatever the branch holds
            return self.repo.branch_commit(self.branch)
        try:
            return self.repo.fetch_branch(self.remote, self.branch)
        except GitError as exc:
            log.warning("fetch failed: %s", exc, extra={"outcome": "fetch-failed", "head": served})
            raise FetchFailed(served, str(exc), isinstance(exc, NetworkTimeout)) from None

    def _plan_and_build(self, base: Snapshot, remote_tip: str | None, last_seen: str | None,
                        warm: bool = True) -> tuple[Snapshot | None, Plan]:
        """The plan, and the snapshot of its commit (None when the served tree stays)."""
        local = self.repo.branch_commit(self.branch)
        assert local is not None
        plan = reconcile.plan(self.repo, local, remote_tip, self.clock, last_seen)
        if plan.new_commit == base.commit:
            return None, plan
        try:
            return self._build(base, plan.new_commit, warm), plan
        except RebuildFailed as exc:
            if plan.outcome not in (Outcome.REBASED, Outcome.REMOTE_REWRITTEN) or not plan.ahead:
                raise
            # the replayed commits merged cleanly but the data does not validate:
            # a conflict in substance; never serve it
            plan = plan.escape(str(exc))
        return self._build(base, plan.new_commit, warm), plan

    def _build(self, base: Snapshot, commit: str, warm: bool) -> Snapshot:
        try:
            return build(self.repo, base, commit, warm)
        except RecordError as exc:
            raise RebuildFailed(commit, exc.path, exc.message) from None

    def _record(self, outcome: str, trigger: str, started: float, lock_held_ms: float,
                error: str | None) -> None:
        self.metrics.reloads.labels(outcome, trigger).inc()
        if error is None:
            self.metrics.last_successful_reload.set_to_current_time()
        at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.last = LastReload(outcome, at, round(_ms_since(started), 3), round(lock_held_ms, 3), error, trigger)


def _answer(swapped: Swapped[Plan, ReconcileResult], result: ReconcileResult, served: str,
            duration_ms: float) -> ReloadResult:
    snapshot = swapped.snapshot
    warmed, carried, warm_ms = snapshot.memo.warmed if snapshot is not None else (0, 0, 0.0)
    return ReloadResult(
        outcome=str(result.outcome), no_changes=result.outcome is Outcome.IN_SYNC and snapshot is None,
        rebuilt=snapshot is not None, old_commit=swapped.base.commit, new_commit=served, duration_ms=duration_ms,
        lock_held_ms=swapped.lock_held_ms, ahead=result.ahead, behind=result.behind,
        conflict_branch=result.conflict_branch, changes=snapshot.changes if snapshot is not None else Changes(),
        rewritten_from=result.rewritten_from, warmed=warmed, carried=carried, warm_ms=warm_ms,
    )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
