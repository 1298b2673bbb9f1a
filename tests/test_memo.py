"""Readers do not stall after a swap: answers are computed once per key (single
flight) and the previous snapshot's answers are recomputed on the new one before
the swap (issue #14, part 2)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotreload.api.app import create_app
from hotreload.data.snapshot import Snapshot, build_full, build_incremental
from hotreload.git.repo import GitRepo
from hotreload.service.runtime import Runtime, boot
from tests.conftest import World, bearer, git, make_world, project_toml
from tests.test_incremental import OPS, apply_ops


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
    warmed, carried, ms = new.warm_from(old, budget_s=5)
    assert warmed == 2 and carried == 0 and ms >= 0
    # the warmed answers are the new snapshot's, equal to computing them fresh
    fresh = build_full(repo, commit)
    assert new.cached(("count", "projects"), lambda s: -1) == len(fresh.table("projects")) == len(old.table("projects")) + 1
    assert "Warm Title" in new.cached(("titles",), lambda s: [])
    assert ("fails",) not in {k for k, *_ in new.memo.recent()}  # skipped, left for a reader to compute (and see why)
    repo.close()


def test_warming_stops_at_its_budget(world: World) -> None:
    repo = GitRepo(str(world.origin))
    old = build_full(repo, world.origin_head())
    for i in range(5):
        old.cached(("slow", i), lambda s: time.sleep(0.05) or 1)
    new = build_incremental(repo, old, world.commit_upstream({"projects/zz-b.toml": project_toml("zz-b", "B")}))
    warmed, carried, ms = new.warm_from(old, budget_s=0.01)
    assert warmed == 1 and carried == 0 and ms >= 40  # the first one runs (50 ms), then the budget is spent
    repo.close()


def test_after_a_reload_readers_find_the_query_they_were_asking_already_answered(
        world: World, client: testing.TestClient, runtime: Runtime) -> None:
    before = client.simulate_get("/api/projects", params={"q": "transit"}).json["meta"]["total"]
    world.commit_upstream({"projects/zz-transit.toml": project_toml("zz-transit", "Transit Warmth")})
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 200 and resp.json["data"]["warmed"]["queries"] >= 1
    snap = runtime.holder.current
    keys = {k for k, *_ in snap.memo.recent()}
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
    assert ("projects", "transit", None, ()) in {k for k, *_ in runtime.holder.current.memo.recent()}


def test_the_memo_stays_bounded_least_recently_used_out() -> None:
    from hotreload.data.snapshot import Memo

    memo = Memo(size=3)
    for i in range(10):
        memo.get(i, lambda s, i=i: i, None)
    memo.get(7, lambda s: "not recomputed", None)
    assert len(memo) == 3 and [k for k, *_ in memo.recent()] == [7, 9, 8]


def test_an_answer_whose_sheets_did_not_change_is_carried_over_not_recomputed(world: World) -> None:
    repo = GitRepo(str(world.origin))
    old = build_full(repo, world.origin_head())
    calls: list[str] = []

    def people_names(s: Snapshot) -> list[str]:
        calls.append("people")
        return sorted(p.full_name for p in s.table("people").by_id.values())  # type: ignore[attr-defined]

    def project_titles(s: Snapshot) -> list[str]:
        calls.append("projects")
        return sorted(p.title for p in s.table("projects").by_id.values())  # type: ignore[attr-defined]

    kept = old.cached(("people",), people_names, reads=("people",))
    old.cached(("projects",), project_titles, reads=("projects",))
    old.cached(("undeclared",), lambda s: len(s.table("people")))  # reads unknown: always recomputed
    calls.clear()
    new = build_incremental(repo, old, world.commit_upstream({"projects/zz-c.toml": project_toml("zz-c", "Carry")}))
    warmed, carried, _ = new.warm_from(old, budget_s=0)  # no time to recompute anything
    assert (warmed, carried) == (0, 1) and calls == []
    assert new.cached(("people",), lambda s: pytest.fail("recomputed")) is kept
    newer = build_incremental(repo, new, world.commit_upstream({"projects/zz-d.toml": project_toml("zz-d", "D")}))
    assert newer.warm_from(new, budget_s=5)[:2] == (0, 1)  # new's memo held only the carried answer
    again = build_incremental(repo, old, world.commit_upstream({"projects/zz-e.toml": project_toml("zz-e", "E")}))
    warmed, carried, _ = again.warm_from(old, budget_s=5)
    assert (warmed, carried) == (2, 1) and sorted(calls) == ["projects"]
    repo.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10**6), st.integers(0, 10**6)),
                               min_size=1, max_size=4), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_every_answer_after_a_reload_equals_computing_it_fresh(tmp_path_factory: pytest.TempPathFactory,
                                                              steps: list[list[tuple[str, int, int]]],
                                                              seed: int) -> None:
    """Through the real routes: whatever the reload carried over or recomputed, each
    answer in the new snapshot's memo, and each page rendered of one (the encoded
    response), equals its function run on that snapshot."""
    world = make_world(tmp_path_factory.mktemp("carry"))
    runtime = boot(world.settings())
    client = testing.TestClient(create_app(runtime))
    origin = GitRepo(str(world.origin))
    try:
        tag = next(iter(runtime.holder.current.table("tags").by_id.values())).handle  # type: ignore[attr-defined]
        for i, ops in enumerate(steps):
            for path, params in [("/api/projects", {"q": "transit"}), ("/api/projects", {"tag": tag}),
                                 ("/api/projects", {}), ("/api/people", {"q": "data"}), ("/api/tags", {}),
                                 (f"/api/tags/{tag}", {}), ("/api/help-wanted", {}),
                                 ("/api/sheets/projects", {})]:
                client.simulate_get(path, params=params)
            commit = apply_ops(origin, runtime.holder.current, ops, seed + i)
            runtime.reloader.reload(commit)
            snap = runtime.holder.current
            assert snap.commit == commit
            for key, value, fn, _ in [*snap.memo.recent(), *snap.pages.recent()]:
                try:
                    fresh = fn(snap)
                except LookupError:
                    continue  # the record it was about is gone (never carried: its sheet changed)
                assert value == fresh, key
    finally:
        origin.close()
        runtime.close()


def test_help_wanted_answers_follow_their_projects_after_a_reload(world: World, client: testing.TestClient,
                                                                  runtime: Runtime) -> None:
    """A change to the projects sheet alone (the role untouched) must reach the
    memoised help-wanted answer: it lists roles of live projects only."""
    roles = client.simulate_get("/api/help-wanted").json["data"]
    assert roles, "the corpus has an open role"
    slug = roles[0]["project"]
    text = git("--git-dir", str(world.origin), "show", f"published:projects/{slug}.toml")
    world.commit_upstream({f"projects/{slug}.toml": text + '\ndeletedAt = "2024-06-01T00:00:00Z"\n'})
    assert client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer()).status_code == 200
    assert slug not in [r["project"] for r in client.simulate_get("/api/help-wanted").json["data"]]
