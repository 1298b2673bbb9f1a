"""The optimistic swap: the one protocol by which reloads and writes change what is served:
prepare outside the data lock, then under it check the base, move the branch (CAS) and
assign ``holder.current``; on a lost race prepare again, and after :data:`ATTEMPTS` of
them do the work under the lock, logged at WARN, so it is never dropped (decision 4).
Each swap that serves a new snapshot is told to ``holder.on_swap`` in the critical section,
so downstream's events (:mod:`~hotreload.service.events`) keep the swaps' order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from hotreload.data.snapshot import Snapshot, SnapshotHolder, build_incremental
from hotreload.git.repo import BranchMoved, GitRepo
from hotreload.service.lock import DataLock

log = logging.getLogger(__name__)

ATTEMPTS = 5
"""Optimistic attempts before the fallback under the lock, for reloads and writes alike."""


P = TypeVar("P")
A = TypeVar("A")


@dataclass(frozen=True)
class Swapped(Generic[P, A]):
    base: Snapshot  # served before the swap, and what ``prepared`` was built against
    snapshot: Snapshot | None  # served after it; None: the served tree stayed
    prepared: P
    applied: A  # what ``apply_under_lock`` returned
    lock_held_ms: float


def swap(lock: DataLock, holder: SnapshotHolder, reason: str,
         prepare: Callable[[Snapshot, bool], tuple[Snapshot | None, P]],
         apply_under_lock: Callable[[P], A]) -> Swapped[P, A]:
    """``prepare(base, warm)`` does the slow work against ``base``: the snapshot to serve
    (None: the tree stays) and what ``apply_under_lock`` needs (``warm`` is False under
    the lock: a memo is never warmed while holding it). ``apply_under_lock`` moves the
    refs, raising :class:`BranchMoved` if the branch is not where ``prepare`` found it.
    The lock is held as ``reason``, or ``<reason>-fallback``; a BranchMoved there means
    something outside this process moved the branch: it propagates. The swap's outcome is
    the ``outcome`` of what ``apply_under_lock`` returned (a reconcile's), else ``committed``."""
    for attempt in range(1, ATTEMPTS + 1):
        base = holder.current
        snapshot, prepared = prepare(base, True)
        try:
            return commit_prepared(lock, holder, reason, base, snapshot, prepared, apply_under_lock)
        except BranchMoved as exc:
            log.info("%s: preparing again from the served snapshot: %s", reason, exc,
                     extra={"reason": reason, "attempt": attempt})
    log.warning("the branch kept moving during %d optimistic attempts; %s under the data lock",
                ATTEMPTS, reason, extra={"reason": reason})
    with lock.hold(f"{reason}-fallback") as hold:
        base = holder.current
        snapshot, prepared = prepare(base, False)
        applied = apply_under_lock(prepared)
        _serve(holder, reason, base, snapshot, applied)
    return Swapped(base, snapshot, prepared, applied, hold.held_ms)


def commit_prepared(lock: DataLock, holder: SnapshotHolder, reason: str, base: Snapshot, snapshot: Snapshot | None,
                    prepared: P, apply_under_lock: Callable[[P], A]) -> Swapped[P, A]:
    """One optimistic attempt's end: under the lock, if ``base`` is still served, move the refs
    and serve ``snapshot``; else :class:`BranchMoved`, and nothing changed."""
    with lock.hold(reason) as hold:
        if holder.current is not base:
            raise BranchMoved("another reload or write swapped while this one prepared")
        applied = apply_under_lock(prepared)
        _serve(holder, reason, base, snapshot, applied)
    return Swapped(base, snapshot, prepared, applied, hold.held_ms)


def _serve(holder: SnapshotHolder, reason: str, base: Snapshot, snapshot: Snapshot | None, applied: object) -> None:
    if snapshot is not None:  # the refs moved: the one assignment readers see
        holder.current = snapshot
        holder.degraded = None  # a snapshot of the branch head is served again
        holder.on_swap(reason, str(getattr(applied, "outcome", "committed")), base, snapshot)


def build(repo: GitRepo, base: Snapshot, commit: str, warm: bool) -> Snapshot:
    """The snapshot of ``commit``, derived from ``base``; with ``warm``, the answers readers
    were getting from ``base`` computed on it, so readers after the swap find them."""
    snapshot = build_incremental(repo, base, commit)
    if warm:
        snapshot.warm_from(base)
    return snapshot
