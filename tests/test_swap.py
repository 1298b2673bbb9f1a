"""The optimistic swap protocol (service/swap.py) that reloads and writes share: who
prepares against what, when the lock is held, and what is served afterwards. Lost races
are staged by the prepare step itself (another swap lands while it works), so no thread
timing is involved; tests/test_writes.py races real writers and reloads."""

from __future__ import annotations

from typing import Any, cast

import pytest

from hotreload.data.snapshot import Snapshot, SnapshotHolder
from hotreload.git.repo import BranchMoved
from hotreload.service import swap as swap_module
from hotreload.service.lock import DataLock, Hold
from hotreload.service.swap import swap


def snapshot(name: str) -> Snapshot:
    return cast(Snapshot, name)  # the protocol only compares and assigns snapshots


class Stage:
    """A holder and a measured lock; ``prepare`` records what it was called with and
    lands ``lose`` other swaps while it works."""

    def __init__(self, lose: int) -> None:
        self.holds: list[str] = []
        self.lock = DataLock(lambda hold: self.holds.append(hold.reason))
        self.holder = SnapshotHolder(snapshot("served"), degraded="head did not build")
        self.lose = lose
        self.calls: list[tuple[Any, bool, bool]] = []  # base, warm, lock held meanwhile

    def prepare(self, base: Snapshot, warm: bool) -> tuple[Snapshot | None, str]:
        self.calls.append((base, warm, self.lock.locked))
        if len(self.calls) <= self.lose:
            self.holder.current = snapshot(f"winner {len(self.calls)}")  # someone else swapped first
        return snapshot(f"built on {base}"), f"plan {len(self.calls)}"


def test_an_uncontended_swap_prepares_once_outside_the_lock_and_serves_the_result() -> None:
    stage = Stage(lose=0)
    swapped = swap(stage.lock, stage.holder, "write", stage.prepare, lambda plan: f"applied {plan}")
    assert stage.calls == [("served", True, False)]
    assert stage.holder.current == "built on served" == swapped.snapshot
    assert stage.holder.degraded is None  # the branch head is served again
    assert (swapped.base, swapped.prepared, swapped.applied) == ("served", "plan 1", "applied plan 1")
    assert stage.holds == ["write"]


def test_a_lost_race_prepares_again_from_the_winners_snapshot() -> None:
    stage = Stage(lose=2)
    swapped = swap(stage.lock, stage.holder, "reload", stage.prepare, lambda plan: plan)
    assert [base for base, _, _ in stage.calls] == ["served", "winner 1", "winner 2"]
    assert all(warm and not locked for _, warm, locked in stage.calls)
    assert stage.holder.current == "built on winner 2" and swapped.base == "winner 2"
    assert stage.holds == ["reload"] * 3  # two checks that found the base moved, one swap


def test_after_the_last_lost_race_the_work_is_done_under_the_lock_without_warming() -> None:
    stage = Stage(lose=swap_module.ATTEMPTS)
    swapped = swap(stage.lock, stage.holder, "write", stage.prepare, lambda plan: plan)
    assert len(stage.calls) == swap_module.ATTEMPTS + 1
    assert stage.calls[-1] == (f"winner {swap_module.ATTEMPTS}", False, True)
    assert stage.holder.current == swapped.snapshot == f"built on winner {swap_module.ATTEMPTS}"
    assert stage.holds == ["write"] * swap_module.ATTEMPTS + ["write-fallback"]


def test_a_branch_moved_outside_the_process_is_retried_then_raised_with_nothing_served() -> None:
    stage = Stage(lose=0)

    def moved_elsewhere(plan: str) -> None:
        raise BranchMoved("published moved away")

    with pytest.raises(BranchMoved):
        swap(stage.lock, stage.holder, "write", stage.prepare, moved_elsewhere)
    assert stage.holder.current == "served" and stage.holder.degraded == "head did not build"
    assert stage.holds[-1] == "write-fallback" and len(stage.calls) == swap_module.ATTEMPTS + 1


def test_a_plan_that_keeps_the_tree_moves_refs_but_serves_the_same_snapshot() -> None:
    stage = Stage(lose=0)
    applied: list[str] = []
    swapped = swap(stage.lock, stage.holder, "reload", lambda base, warm: (None, "pushed-ahead"), applied.append)
    assert applied == ["pushed-ahead"] and swapped.snapshot is None
    assert stage.holder.current == "served" and stage.holder.degraded == "head did not build"


def test_each_hold_is_measured() -> None:
    held: list[Hold] = []
    lock = DataLock(held.append)
    swapped = swap(lock, SnapshotHolder(snapshot("served")), "write",
                   lambda base, warm: (snapshot("next"), None), lambda _: None)
    assert [h.reason for h in held] == ["write"] and swapped.lock_held_ms == held[0].held_ms >= 0
