"""The push daemon and the self-trigger, against real remotes."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from hotreload.git.push import PushDaemon
from hotreload.git.repo import GitRepo
from hotreload.metrics import Metrics
from hotreload.service.runtime import Runtime, boot
from simulator.server import ServerProcess
from tests.conftest import WRITE_TOKEN, World, bearer, git, project_toml
from tests.test_reconcile import local_commit


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def daemon(world: World) -> Iterator[tuple[PushDaemon, GitRepo, Metrics]]:
    repo = GitRepo(str(world.clone))
    repo.fetch_branch(str(world.origin), "published")  # as the service's start-up reconcile does
    metrics = Metrics()
    d = PushDaemon(repo, str(world.origin), "published", metrics, backoff_seconds=0.05,
                   backoff_cap_seconds=0.2)
    d.start()
    yield d, repo, metrics
    d.stop()
    repo.close()


def test_pushes_local_commits(daemon: tuple[PushDaemon, GitRepo, Metrics], world: World) -> None:
    d, repo, _metrics = daemon
    mine = local_commit(repo, {"projects/aa-p.toml": project_toml("aa-p", "P")})
    d.notify()
    assert d.flush(20)
    assert world.origin_head() == mine and d.status().pending == 0


def test_backs_off_while_the_remote_is_down_then_delivers(daemon: tuple[PushDaemon, GitRepo, Metrics],
                                                           world: World, caplog: pytest.LogCaptureFixture) -> None:
    d, repo, _metrics = daemon
    caplog.set_level(logging.WARNING, logger="hotreload.git.push")
    hidden = world.root / "origin-away.git"
    os.rename(world.origin, hidden)
    try:
        mine = local_commit(repo, {"projects/aa-p.toml": project_toml("aa-p", "P")})
        d.notify()
        wait_for(lambda: len([r for r in caplog.records if "retrying in" in r.getMessage()]) >= 4)
        status = d.status()
        assert status.pending == 1 and status.last_error and "origin.git" in status.last_error
        delays = [r.retryInS for r in caplog.records if hasattr(r, "retryInS")][:4]  # type: ignore[attr-defined]
        assert delays == [0.05, 0.1, 0.2, 0.2]  # doubling, capped
    finally:
        os.rename(hidden, world.origin)
    assert d.flush(20)
    assert world.origin_head() == mine and d.status().last_error is None


def test_non_fast_forward_is_terminal_until_the_next_commit(daemon: tuple[PushDaemon, GitRepo, Metrics],
                                                             world: World) -> None:
    d, repo, _metrics = daemon
    theirs = world.commit_upstream({"projects/aa-remote.toml": project_toml("aa-remote", "R")})
    local_commit(repo, {"projects/aa-local.toml": project_toml("aa-local", "L")})
    d.notify()
    assert d.flush(10) is False  # gave up: rejected
    status = d.status()
    assert status.rejected and "non-fast-forward" in (status.last_error or "")
    assert status.next_attempt_in_s is None  # no retry loop
    assert world.origin_head() == theirs


@pytest.fixture
def rt(world: World) -> Iterator[Runtime]:
    runtime = boot(world.settings())
    yield runtime
    runtime.close()


def test_a_rejected_push_reconciles_at_once_and_both_writes_are_visible(rt: Runtime, world: World) -> None:
    """Another writer moved the remote: the daemon's push is rejected, and the daemon
    reconciles right away (fetch, rebase, push) instead of waiting for a webhook."""
    world.commit_upstream({"projects/zz-remote.toml": project_toml("zz-remote", "Remote")})
    rt.writer.create("projects", {"slug": "zz-local", "title": "Local"}, "/api/projects")
    assert rt.push_daemon is not None
    assert rt.push_daemon.flush(20)  # delivered, after the rebase
    snap = rt.holder.current
    assert snap.project_by_slug("zz-local") and snap.project_by_slug("zz-remote")
    assert world.origin_head() == world.clone_head() == snap.commit
    assert rt.push_daemon.status().last_error is None and not rt.push_daemon.status().rejected
    text = generate_latest(rt.metrics.registry).decode()
    assert 'hotreload_reloads_total{outcome="rebased",trigger="push-rejected"} 1.0' in text
    assert 'hotreload_pushes_total{result="rejected"} 1.0' in text
    assert rt.reloader.reload().outcome == "in-sync"  # nothing left for a webhook to do


def test_replicas_racing_for_the_branch_all_get_through(world: World, tmp_path: Path) -> None:
    """Two replicas write at once, again and again: each rejection reconciles (with
    jittered backoff after the first), and in the end the remote holds every write
    once, both clones agree, and the origin never went backwards."""
    second = tmp_path / "second.git"
    git("clone", "-q", "--bare", str(world.origin), str(second))
    a = boot(world.settings())
    b = boot(world.settings(repo_path=str(second)))
    try:
        tips = [world.origin_head()]
        for round_ in range(4):
            a.writer.create("projects", {"slug": f"zz-a-{round_}", "title": f"A {round_}"}, "/api/projects")
            b.writer.create("projects", {"slug": f"zz-b-{round_}", "title": f"B {round_}"}, "/api/projects")
            tips.append(world.origin_head())
        assert a.push_daemon is not None and b.push_daemon is not None
        wait_for(lambda: a.push_daemon.flush(1) and b.push_daemon.flush(1), 60)
        a.reloader.reload()
        b.reloader.reload()
        assert a.holder.current.commit == b.holder.current.commit == world.origin_head()
        origin = GitRepo(str(world.origin))
        try:
            slugs = [path for commit in origin.walk(world.origin_head())
                     for path in _added_project_files(origin, commit)]
            for i, tip in enumerate(tips[1:]):
                assert origin.is_ancestor(tips[i], tip)  # never rewritten
        finally:
            origin.close()
        want = sorted(f"projects/zz-{who}-{r}.toml" for who in "ab" for r in range(4))
        assert sorted(s for s in slugs if s.startswith("projects/zz-")) == want  # each exactly once
    finally:
        a.close()
        b.close()


def _added_project_files(repo: GitRepo, commit: str) -> list[str]:
    parents = repo.commit(commit).parents
    if not parents:
        return []
    before = repo.tree_of(parents[0].decode())
    return [c.path for c in repo.diff_trees(before, repo.tree_of(commit)) if c.old is None]


@pytest.mark.slow
def test_self_trigger_end_to_end(world: World) -> None:
    """write -> the daemon pushes -> the remote's workflow calls the webhook for a
    commit the service already has -> 200 noChanges, and no reconcile ran."""
    with ServerProcess(world.env()) as server:
        resp = server.request("POST", "/api/projects", {"slug": "self-trigger", "title": "Self"},
                              bearer(WRITE_TOKEN))
        assert resp.status == 201
        commit = resp.commit
        wait_for(lambda: server.get("/api/health").data["push"]["pending"] == 0)
        assert world.origin_head() == commit
        before = server.get("/metrics").body
        hook = server.request("POST", "/api/_internal/reload-data", {"commitHash": commit}, bearer())
        assert hook.status == 200
        assert hook.data == {"noChanges": True, "outcome": "in-sync", "precheck": True, "head": commit,
                             "durationMs": hook.data["durationMs"]}
        after = server.get("/metrics").body
        count = lambda text: [x for x in text.decode().splitlines() if x.startswith("hotreload_reloads_total")]  # noqa: E731
        assert count(before) == count(after)  # the pre-check answered; nothing was reconciled


@pytest.mark.slow
def test_writes_succeed_while_the_remote_is_down(world: World) -> None:
    with ServerProcess(world.env()) as server:
        hidden = world.root / "origin-away.git"
        os.rename(world.origin, hidden)
        try:
            resp = server.request("POST", "/api/projects", {"slug": "offline-write", "title": "Offline"},
                                  bearer(WRITE_TOKEN))
            assert resp.status == 201
            wait_for(lambda: "lastError" in server.get("/api/health").data["push"])
            assert server.get("/api/health").data["push"]["pending"] == 1
        finally:
            os.rename(hidden, world.origin)
        wait_for(lambda: server.get("/api/health").data["push"]["pending"] == 0)
        assert world.origin_head() == resp.commit
        assert "lastError" not in server.get("/api/health").data["push"]  # the cause has cleared


def test_a_remote_ref_locked_by_another_push_is_transient(world: World) -> None:
    """Found by the simulator: the reload's push and the daemon's push met on the
    remote's ref lock file, and dulwich's FileLocked became a 500."""
    from hotreload.git.repo import TransportError, branch_ref

    repo = GitRepo(str(world.clone))
    mine = local_commit(repo, {"projects/aa-l.toml": project_toml("aa-l", "L")})
    lock = world.origin / "refs" / "heads" / "published.lock"
    lock.write_text("held by another pusher\n")
    try:
        # transient (retried with backoff), and the message names the file to delete if it is stale
        with pytest.raises(TransportError, match=r"refs/heads/published\.lock exists: another push is under way"):
            repo.push_ref(str(world.origin), mine, branch_ref("published"))
    finally:
        lock.unlink()
    repo.push_ref(str(world.origin), mine, branch_ref("published"))
    assert world.origin_head() == mine
    repo.close()


def test_a_delivery_by_someone_else_ends_the_backoff(world: World) -> None:
    """The backoff is for an unreachable remote: once a reconcile's push reached it,
    the daemon pushes later commits at once instead of waiting out the backoff."""
    repo = GitRepo(str(world.clone))
    repo.fetch_branch(str(world.origin), "published")
    d = PushDaemon(repo, str(world.origin), "published", Metrics(), backoff_seconds=60, backoff_cap_seconds=60)
    d.start()
    try:
        hidden = world.root / "origin-away.git"
        os.rename(world.origin, hidden)
        first = local_commit(repo, {"projects/aa-one.toml": project_toml("aa-one", "One")})
        d.notify()
        wait_for(lambda: d.status().next_attempt_in_s is not None)  # backing off for a minute
        os.rename(hidden, world.origin)
        repo.push_ref(str(world.origin), first, b"refs/heads/published")  # as a reconcile's push does
        repo.set_ref(b"refs/remotes/origin/published", first)
        d.notify()
        assert d.status().next_attempt_in_s is None and d.status().last_error is None
        second = local_commit(repo, {"projects/aa-two.toml": project_toml("aa-two", "Two")})
        d.notify()
        wait_for(lambda: world.origin_head() == second, 5)
    finally:
        d.stop()
        repo.close()


def test_a_branch_that_is_only_behind_is_not_pushed(daemon: tuple[PushDaemon, GitRepo, Metrics],
                                                    world: World) -> None:
    """After a fetch whose tip failed to build, the local branch is behind the remote:
    there is nothing to push, and trying would only be "rejected" (and, in the
    service, set off a reconcile per attempt)."""
    d, repo, metrics = daemon
    calls = []
    d.on_rejected = lambda: calls.append(1)
    world.commit_upstream({"projects/zz-newer.toml": project_toml("zz-newer", "Newer")})
    repo.fetch_branch(str(world.origin), "published")  # the tracking ref moves; the branch does not
    d.notify()
    assert d.flush(5)
    assert d.status().pending == 0 and not d.status().rejected and calls == []
    assert "rejected" not in generate_latest(metrics.registry).decode().split("hotreload_pushes_total")[-1]
