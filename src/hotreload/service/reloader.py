"""The reload use case: pre-check, single-flight, reconcile, build, swap.

Outside the data lock, always: the served snapshot was built from exactly the tree
of the local branch. So a reload does everything slow *before* taking the lock —
fetch, plan (a rebase writes its commits but moves no ref), and build the new
snapshot from the planned commit — and holds the lock only to check that the
branch is still where it planned from, move the ref (CAS) and assign
``holder.current``. A build that fails moves nothing. If a write moved the branch
meanwhile, the reload plans again from the new branch (bounded), and as a last
resort does the whole thing under the lock, saying so in the log.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

from hotreload.data.records import RecordError
from hotreload.data.snapshot import Changes, Snapshot, SnapshotHolder, build_incremental
from hotreload.git import reconcile
from hotreload.git.errors import NetworkTimeout
from hotreload.git.push import PushDaemon
from hotreload.git.reconcile import BranchMoved, Clock, Outcome, Plan, utc_now
from hotreload.git.repo import GitError, GitRepo, Remote, tracking_ref
from hotreload.metrics import Metrics
from hotreload.service.lock import DataLock
from hotreload.service.memory import release_free_memory

log = logging.getLogger(__name__)

OPTIMISTIC_ATTEMPTS = 3


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
    """The reload running now: who asked (``trigger``) and since when (``time.time()``)."""

    started_seq: int
    trigger: str = "webhook"
    since: float = field(default_factory=time.time)
    done: threading.Event = field(default_factory=threading.Event)
    result: ReloadResult | None = None
    error: BaseException | None = None


class Reloader:
    def __init__(
        self,
        repo: GitRepo,
        holder: SnapshotHolder,
        lock: DataLock,
        branch: str,
        remote: str | Remote | None,
        metrics: Metrics,
        push_daemon: PushDaemon | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.repo = repo
        self.holder = holder
        self.lock = lock
        self.branch = branch
        self.remote = remote
        self.metrics = metrics
        self.push_daemon = push_daemon
        self.clock = clock
        self.last: LastReload | None = None
        self._flight_lock = threading.Lock()
        self._flight: Flight | None = None
        self._seq = 0

    # -- entry point --------------------------------------------------------------

    def reload(self, commit_hash: str | None = None, precheck: bool = True,
               trigger: str = "webhook") -> ReloadResult:
        """Reconcile with the remote and serve the result. Raises FetchFailed or
        RebuildFailed (nothing changed), or anything else (invariant intact).
        ``precheck=False`` always reconciles (a GitHub push with ``forced``).
        ``trigger`` labels the metrics: webhook, peer, poll, push-rejected,
        min-commit or startup (a run shared by several callers counts as its leader's)."""
        started = time.perf_counter()
        if not precheck:
            commit_hash = None
        short = self._precheck(commit_hash, started)
        if short is not None:
            return short
        with self._flight_lock:
            self._seq += 1
            arrived = self._seq
        while True:
            with self._flight_lock:
                flight = self._flight
                if flight is None:
                    self._seq += 1
                    flight = self._flight = Flight(self._seq, trigger)
                    leader = True
                else:
                    leader = False
            if leader:
                try:
                    flight.result = self._run(started, trigger)
                except BaseException as exc:
                    flight.error = exc
                finally:
                    with self._flight_lock:
                        self._flight = None
                    flight.done.set()
                if flight.error is not None:
                    raise flight.error
                assert flight.result is not None
                return flight.result
            flight.done.wait()
            short = self._precheck(commit_hash, started)
            if short is not None:
                return short
            if flight.started_seq > arrived:
                # this run started after we arrived, so it saw what we were told about
                if flight.error is not None:
                    raise flight.error
                assert flight.result is not None
                return flight.result

    def in_flight(self) -> Flight | None:
        """The reload running now, if any (health and metrics show it)."""
        return self._flight

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
        last_seen = self.repo.resolve(tracking_ref(self.branch))  # before the fetch moves it
        remote_tip = self._fetch()
        for attempt in range(OPTIMISTIC_ATTEMPTS):
            base = self.holder.current
            local = self.repo.branch_commit(self.branch)
            assert local is not None
            plan, snapshot = self._plan_and_build(base, local, remote_tip, last_seen)
            try:
                with self.lock.hold("reload") as hold:
                    if self.holder.current is not base:
                        raise BranchMoved("a write landed while the reload was building")
                    result = reconcile.apply(self.repo, plan, self.branch, self.clock)
                    if snapshot is not None:
                        self.holder.current = snapshot
                        self.holder.degraded = None  # the branch head is served again
                break
            except BranchMoved as exc:
                log.info("retrying reconcile: %s", exc, extra={"attempt": attempt + 1})
        else:
            # writes kept landing while we built: do this one under the lock
            log.warning("the branch kept moving during %d optimistic attempts; "
                        "reconciling under the data lock", OPTIMISTIC_ATTEMPTS)
            with self.lock.hold("reload-fallback") as hold:
                base = self.holder.current
                local = self.repo.branch_commit(self.branch)
                assert local is not None
                plan, snapshot = self._plan_and_build(base, local, remote_tip, last_seen, warm=False)
                result = reconcile.apply(self.repo, plan, self.branch, self.clock)
                if snapshot is not None:
                    self.holder.current = snapshot
                    self.holder.degraded = None
        if result.outcome is Outcome.REMOTE_REWRITTEN:
            log.error(
                "hot-reload: the remote rewrote %s: %s is no longer in its history; serving its tip "
                "%s (%d local commit(s) it never had replayed%s); nothing it removed is pushed back",
                self.branch, result.rewritten_from, result.new_commit, result.ahead,
                f", old branch kept on {result.conflict_branch}" if result.conflict_branch else "",
                extra={"outcome": str(result.outcome), "branch": self.branch,
                       "rewrittenFrom": result.rewritten_from, "oldCommit": result.old_commit,
                       "newCommit": result.new_commit, "conflictBranch": result.conflict_branch},
            )
        elif result.outcome is Outcome.CONFLICT_ESCAPED:
            log.error(
                "conflict: local commits kept on %s; %s reset to the remote (%s)",
                result.conflict_branch, self.branch, ", ".join(plan.conflict_paths),
                extra={"outcome": str(result.outcome), "conflictBranch": result.conflict_branch,
                       "oldCommit": result.old_commit, "newCommit": result.new_commit},
            )
        if self.remote is not None:
            result = reconcile.push_result(self.repo, self.remote, self.branch, result)
        if self.push_daemon is not None:
            # refs moved: recount what is pending, and retry (with backoff) a push that failed
            self.push_daemon.notify()
        rebuilt = snapshot is not None
        built_in_full = snapshot is not None and not snapshot.incremental
        old_commit = base.commit
        changes = snapshot.changes if snapshot is not None else Changes()
        warmed, carried, warm_ms = snapshot.memo.warmed if snapshot is not None else (0, 0, 0.0)
        if rebuilt:
            del base, snapshot  # drop our references to the old snapshot, then trim
            release_free_memory(force=built_in_full)
        return ReloadResult(
            outcome=str(result.outcome),
            no_changes=result.outcome is Outcome.IN_SYNC and not rebuilt,
            rebuilt=rebuilt,
            old_commit=old_commit,
            new_commit=self.holder.current.commit,
            duration_ms=_ms_since(started),
            lock_held_ms=hold.held_ms,
            ahead=result.ahead,
            behind=result.behind,
            conflict_branch=result.conflict_branch,
            changes=changes,
            rewritten_from=result.rewritten_from,
            warmed=warmed,
            carried=carried,
            warm_ms=warm_ms,
        )

    def _fetch(self) -> str | None:
        served = self.holder.current.commit
        if self.remote is None:  # no remote configured: serve whatever the branch holds
            return self.repo.branch_commit(self.branch)
        try:
            return reconcile.fetch(self.repo, self.remote, self.branch)
        except GitError as exc:
            log.warning("fetch failed: %s", exc, extra={"outcome": "fetch-failed", "head": served})
            raise FetchFailed(served, str(exc), isinstance(exc, NetworkTimeout)) from None

    def _plan_and_build(
        self, base: Snapshot, local: str, remote_tip: str | None, last_seen: str | None,
        warm: bool = True,
    ) -> tuple[Plan, Snapshot | None]:
        plan = reconcile.plan(self.repo, local, remote_tip, self.clock, last_seen)
        if plan.new_commit == base.commit:
            return plan, None
        try:
            return plan, self._build(base, plan.new_commit, warm)
        except RecordError as exc:
            if plan.outcome not in (Outcome.REBASED, Outcome.REMOTE_REWRITTEN) or not plan.ahead:
                raise RebuildFailed(plan.new_commit, exc.path, exc.message) from None
            # the replayed commits merged cleanly but the data does not validate:
            # a conflict in substance; never serve it
            plan = plan.escape(str(exc))
        try:
            return plan, self._build(base, plan.new_commit, warm)
        except RecordError as exc:
            raise RebuildFailed(plan.new_commit, exc.path, exc.message) from None

    def _build(self, base: Snapshot, commit: str, warm: bool) -> Snapshot:
        """The new snapshot, with the answers readers were getting from ``base``
        already computed on it (outside the lock, before the swap; never under it)."""
        snapshot = build_incremental(self.repo, base, commit)
        if warm:
            snapshot.warm_from(base)
        return snapshot

    def _record(self, outcome: str, trigger: str, started: float, lock_held_ms: float,
                error: str | None) -> None:
        self.metrics.reloads.labels(outcome, trigger).inc()
        if error is None:
            self.metrics.last_successful_reload.set_to_current_time()
        self.last = LastReload(
            outcome=outcome,
            at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            duration_ms=round(_ms_since(started), 3),
            lock_held_ms=round(lock_held_ms, 3),
            error=error,
            trigger=trigger,
        )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
