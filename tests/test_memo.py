"""Readers do not stall after a swap: answers are computed once per key (single
flight) and the previous snapshot's answers are recomputed on the new one before
the swap (issue #14, part 2)."""

from __future__ import annotations

import threading
import time
from typing import Any

from falcon import testing

from hotreload.data.snapshot import Snapshot, build_full, build_incremental
from hotreload.git.repo import GitRepo
from hotreload.service.runtime import Runtime
from tests.conftest import World, bearer, project_toml


def test_a_key_is_computed_by_one_thread_while_the_others_wait_for_its_answer(world: World) -> None:
    repo = GitRepo(str(world.origin))
    snap = build_full(repo, world.origin_head())
    calls = []
    gate = threading.Event()

    def slow(s: Snapshot) -> object:
        calls.append(threading.get_ident())
        gate.wait(5)
        return object()

    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(snap.cached("k", slow))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # every thread has asked by now
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(answers) == 8 and all(a is answers[0] for a in answers)
    repo.close()


def test_when_the_computing_thread_fails_a_waiting_one_computes_instead(world: World) -> None:
    repo = GitRepo(str(world.origin))
    snap = build_full(repo, world.origin_head())
    attempts = []
    started = threading.Event()

    def flaky(s: Snapshot) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            started.set()
            time.sleep(0.2)
            raise RuntimeError("first try fails")
        return "second try"

    errors: list[BaseException] = []

    def leader() -> None:
        try:
            snap.cached("k", flaky)
        except RuntimeError as exc:
            errors.append(exc)

    first = threading.Thread(target=leader)
    first.start()
    started.wait(5)
    assert snap.cached("k", flaky) == "second try"  # waited, then computed it itself
    first.join()
    assert len(errors) == 1 and len(attempts) == 2
    repo.close()


def test_warming_recomputes_the_previous_answers_on_the_new_snapshot(world: World) -> None:
    repo = GitRepo(str(world.origin))
    old = build_full(repo, world.origin_head())
    old.cached(("count", "projects"), lambda s: len(s.table("projects")))
    old.cached(("titles",), lambda s: sorted(p.title for p in s.table("projects").by_id.values()))

    def fails_on_new(s: Snapshot) -> int:
        if s is not old:
            raise KeyError("the record it was about is gone")
        return 1

    old.cached(("fails",), fails_on_new)
    commit = world.commit_upstream({"projects/zz-warm.toml": project_toml("zz-warm", "Warm Title")})
    new = build_incremental(repo, old, commit)
    warmed, ms = new.warm_from(old, budget_s=5)
    assert warmed == 2 and ms >= 0
    # the warmed answers are the new snapshot's, equal to computing them fresh
    fresh = build_full(repo, commit)
    assert new.cached(("count", "projects"), lambda s: -1) == len(fresh.table("projects")) == len(old.table("projects")) + 1
    assert "Warm Title" in new.cached(("titles",), lambda s: [])
    assert ("fails",) not in dict(new.memo.recent())  # skipped, left for a reader to compute (and see why)
    repo.close()


def test_warming_stops_at_its_budget(world: World) -> None:
    repo = GitRepo(str(world.origin))
    old = build_full(repo, world.origin_head())
    for i in range(5):
        old.cached(("slow", i), lambda s: time.sleep(0.05) or 1)
    new = build_incremental(repo, old, world.commit_upstream({"projects/zz-b.toml": project_toml("zz-b", "B")}))
    warmed, ms = new.warm_from(old, budget_s=0.01)
    assert warmed == 1 and ms >= 40  # the first one runs (50 ms), then the budget is spent
    repo.close()


def test_after_a_reload_readers_find_the_query_they_were_asking_already_answered(
        world: World, client: testing.TestClient, runtime: Runtime) -> None:
    before = client.simulate_get("/api/projects", params={"q": "transit"}).json["meta"]["total"]
    world.commit_upstream({"projects/zz-transit.toml": project_toml("zz-transit", "Transit Warmth")})
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 200 and resp.json["data"]["warmed"]["queries"] >= 1
    snap = runtime.holder.current
    keys = dict(snap.memo.recent())
    assert ("projects", "transit", None, ()) in keys  # answered before any reader asked this snapshot
    after = client.simulate_get("/api/projects", params={"q": "transit"}).json
    assert after["meta"]["total"] == before + 1
    assert "zz-transit" in [p["slug"] for p in client.simulate_get(
        "/api/projects", params={"q": "transit", "perPage": "100"}).json["data"]]


def test_a_write_warms_too(world: World, client: testing.TestClient, runtime: Runtime) -> None:
    from tests.conftest import WRITE_TOKEN

    client.simulate_get("/api/projects", params={"q": "transit"})
    resp = client.simulate_post("/api/projects", json={"slug": "zz-written", "title": "Transit Written"},
                                headers=bearer(WRITE_TOKEN))
    assert resp.status_code == 201
    assert ("projects", "transit", None, ()) in dict(runtime.holder.current.memo.recent())


def test_the_memo_stays_bounded_least_recently_used_out() -> None:
    from hotreload.data.snapshot import Memo

    memo = Memo(size=3)
    for i in range(10):
        memo.get(i, lambda s, i=i: i, None)
    memo.get(7, lambda s: "not recomputed", None)
    assert len(memo) == 3 and [k for k, _ in memo.recent()] == [7, 9, 8]


def test_cycles_a_reload_leaves_are_collected_after_the_swap(world: World, runtime: Runtime) -> None:
    """dulwich ``Repo`` objects sit in reference cycles; on a big heap no full collection
    came, and memory grew with every reload (issue #14). After a swap the reloader
    collects, then freezes the survivors, so the next collection is one reload's work."""
    import gc
    import weakref

    class Cyclic:
        pass

    left = Cyclic()
    left.me = left  # type: ignore[attr-defined]
    gone = weakref.ref(left)
    del left
    gc.disable()  # no automatic collection may do it for us
    try:
        world.commit_upstream({"projects/zz-gc.toml": project_toml("zz-gc", "Collected")})
        runtime.reloader.reload()
        assert gone() is None
        assert gc.get_freeze_count() > 0  # survivors are out of the next collection's way
    finally:
        gc.enable()
        gc.unfreeze()
