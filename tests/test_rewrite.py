"""Remote rewrites are detected and never undone (a force-push rewind, an unrelated
history); a force-pushed GitHub event always reconciles; a replayed commit that
the remote already made is dropped, as git drops it."""

from __future__ import annotations

import threading
from typing import Any

from dulwich.objects import Blob
from falcon import testing

from hotreload.service.runtime import Runtime
from tests.conftest import World, bearer, git, project_toml
from tests.test_reload_api import github, post


def origin_log(world: World) -> list[str]:
    return git("--git-dir", str(world.origin), "rev-list", "published").split()


def test_a_force_push_rewind_is_served_and_never_pushed_back(client: testing.TestClient, runtime: Runtime,
                                                             world: World) -> None:
    before = world.origin_head()
    leaked = world.commit_upstream({"projects/leaked.toml": project_toml("leaked", "Leaked data")})
    assert post(client, {"commitHash": leaked}, headers=bearer()).json["data"]["outcome"] == "fast-forwarded"
    assert client.simulate_get("/api/projects/leaked").status_code == 200
    # an admin rewinds the branch to remove the record (git push --force origin <before>:published)
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before)
    # GitHub announces the older commit: an ancestor of what is served, but not what we last saw
    resp = post(client, {"commitHash": before}, headers=bearer())
    data = resp.json["data"]
    assert resp.status_code == 200 and data["outcome"] == "remote-rewritten", data
    assert data["rewrittenFrom"] == leaked and data["newCommit"] == before and data["rebuilt"] is True
    assert client.simulate_get("/api/projects/leaked").status_code == 404
    assert runtime.holder.current.commit == before == world.clone_head()
    assert world.origin_head() == before  # the removed commit was not pushed back
    # and later reloads leave the remote alone
    again = post(client, headers=bearer()).json["data"]
    assert again["outcome"] == "in-sync" and world.origin_head() == before
    assert leaked not in origin_log(world)
    health = client.simulate_get("/api/health").json["data"]
    assert health["lastReload"]["outcome"] in ("remote-rewritten", "in-sync")


class WatchedLock:
    """A lock that says (``contended``) when someone is about to wait for it."""

    def __init__(self, contended: threading.Event) -> None:
        self.lock = threading.Lock()
        self.contended = contended

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            self.contended.set()
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_a_push_attempt_in_a_rewinds_window_does_not_push_the_removed_commit_back(
        client: testing.TestClient, runtime: Runtime, world: World) -> None:
    """The reload has fetched the rewound tip but not yet moved the branch: a push attempt
    now would read the old branch and the new tracking ref, and push the removed commit
    back as a fast-forward. The attempt must wait for the reconcile instead."""
    before = world.origin_head()
    leaked = world.commit_upstream({"projects/leaked.toml": project_toml("leaked", "Leaked data")})
    assert post(client, {"commitHash": leaked}, headers=bearer()).json["data"]["outcome"] == "fast-forwarded"
    daemon, reloader = runtime.push_daemon, runtime.reloader
    assert daemon is not None and daemon.flush(5)
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before)
    attempted_or_waiting = threading.Event()
    daemon.remote_lock = WatchedLock(attempted_or_waiting)  # type: ignore[assignment]
    attempt, plan_and_build = daemon._attempt, reloader._plan_and_build

    def attempt_and_say() -> None:
        attempt()
        attempted_or_waiting.set()

    def plan_after_a_push_attempt(*args: Any, **kwargs: Any) -> Any:
        daemon.notify()  # the daemon wakes in the window between the fetch and the ref move
        assert attempted_or_waiting.wait(10)
        return plan_and_build(*args, **kwargs)

    daemon._attempt = attempt_and_say  # type: ignore[method-assign]
    reloader._plan_and_build = plan_after_a_push_attempt  # type: ignore[method-assign]
    result = reloader.reload(before)
    assert result.outcome == "remote-rewritten" and result.new_commit == before
    assert daemon.flush(5)
    assert world.origin_head() == before and leaked not in origin_log(world)


def test_an_unrelated_history_replaces_the_old_one(client: testing.TestClient, runtime: Runtime,
                                                    world: World) -> None:
    old = world.origin_head()
    # a fresh re-import: a new root commit holding the same sheets and one new project
    tree = git("--git-dir", str(world.origin), "rev-parse", f"{old}^{{tree}}")
    root = git("--git-dir", str(world.origin), "commit-tree", tree, "-m", "Re-import")
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", root)
    resp = post(client, {"commitHash": root}, headers=bearer())
    data = resp.json["data"]
    assert data["outcome"] == "remote-rewritten" and data["newCommit"] == root, data
    assert world.origin_head() == root and old not in origin_log(world)
    assert runtime.holder.current.commit == root


def test_a_local_write_the_remote_never_had_survives_a_rewrite(client: testing.TestClient, runtime: Runtime,
                                                               world: World) -> None:
    before = world.origin_head()
    gone = world.commit_upstream({"projects/gone.toml": project_toml("gone", "Gone")})
    post(client, {"commitHash": gone}, headers=bearer())
    assert runtime.push_daemon is not None
    runtime.push_daemon.stop()  # the write below stays local
    mine = runtime.writer.create("projects", {"slug": "kept-write", "title": "Kept"}, "/api/projects").commit
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before)
    data = post(client, headers=bearer()).json["data"]
    assert data["outcome"] == "remote-rewritten" and data["ahead"] == 1, data
    served = runtime.holder.current
    assert served.project_by_slug("kept-write") is not None and served.project_by_slug("gone") is None
    history = origin_log(world)
    assert world.origin_head() == served.commit and before in history and gone not in history
    assert mine not in history  # replayed onto the new tip: a new commit with the same change
    message = git("--git-dir", str(world.origin), "log", "-1", "--format=%s", "published")
    assert message == "api: POST /api/projects"


def test_a_forced_github_push_always_reconciles(client: testing.TestClient, runtime: Runtime, world: World) -> None:
    served = runtime.holder.current.commit
    payload = {"ref": "refs/heads/published", "before": served, "after": served, "forced": True}
    data = github(client, "push", payload).json["data"]
    assert "head" not in data and data["outcome"] == "in-sync"  # reconciled, not pre-checked
    plain = github(client, "push", {**payload, "forced": False}).json["data"]
    assert plain["noChanges"] is True and "head" in plain  # the pre-check answered


def test_an_older_commit_is_not_answered_in_sync_without_fetching(client: testing.TestClient, world: World) -> None:
    first = world.origin_head()
    tip = world.commit_upstream({"projects/newer.toml": project_toml("newer", "Newer")})
    post(client, {"commitHash": tip}, headers=bearer())
    data = post(client, {"commitHash": first}, headers=bearer()).json["data"]
    assert "head" not in data and data["outcome"] == "in-sync"  # fetched: the remote is still at tip


def test_a_replayed_commit_the_remote_already_made_is_dropped(client: testing.TestClient, runtime: Runtime,
                                                              world: World) -> None:
    assert runtime.push_daemon is not None
    runtime.push_daemon.stop()
    same = {"slug": "same-change", "title": "Same Change"}
    local = runtime.writer.create("projects", same, "/api/projects").commit
    # the remote gets the identical file from elsewhere (e.g. the same write replayed by hand)
    content = git("--git-dir", str(world.clone), "show", f"{local}:projects/same-change.toml")
    upstream = world.commit_upstream({"projects/same-change.toml": content + "\n"})
    data = post(client, {"commitHash": upstream}, headers=bearer()).json["data"]
    assert data["outcome"] == "rebased", data
    assert runtime.holder.current.commit == upstream == world.origin_head()  # no empty commit on top


def test_an_ambiguous_4_character_prefix_is_never_answered_in_sync_without_fetching(
        client: testing.TestClient, runtime: Runtime, world: World) -> None:
    import hashlib

    served = runtime.holder.current.commit
    prefix = served[:4]
    # another object whose id starts with the same 4 characters (about 65,000 tries)
    n = 0
    while True:
        data = f"collision {n}\n".encode()
        if hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest().startswith(prefix):
            break
        n += 1
    runtime.repo.add_object(Blob.from_string(data))
    assert runtime.repo.resolve_commit_prefix(prefix) is None  # ambiguous now
    data_out = post(client, {"commitHash": prefix}, headers=bearer()).json["data"]
    assert "head" not in data_out and data_out["outcome"] == "in-sync", data_out  # reconciled
    assert data_out["newCommit"] == served  # and the answer names the served commit
    unique = post(client, {"commitHash": served[:12]}, headers=bearer()).json["data"]
    assert unique["head"] == served  # a unique prefix of the served commit: the pre-check answers
