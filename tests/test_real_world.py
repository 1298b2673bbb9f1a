"""Trees, remotes and processes as they are in the wild: odd file names, huge and
deeply nested values, a blocked conflicts/ namespace, a first clone that fails, a
second instance on one clone, durability, oversized bodies, a stale lock on the
remote. Each of these stopped the service or lost data before."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.config import Settings
from hotreload.service.runtime import Runtime, StartupError, boot
from simulator.server import ServerProcess
from tests.conftest import WRITE_TOKEN, World, bearer, git, project_toml
from tests.test_reload_api import post


def commit_raw(world: World, files: dict[bytes, bytes | None], message: str = "odd") -> str:
    """Commit files whose names are arbitrary bytes (None: remove), with git
    plumbing (a work tree cannot hold every name)."""
    parent = world.origin_head()
    env = {**os.environ, "GIT_INDEX_FILE": str(world.root / "odd.index")}
    subprocess.run(["git", "--git-dir", str(world.origin), "read-tree", parent], check=True, env=env)
    for name, content in files.items():
        if content is None:
            line = b"0 " + b"0" * 40 + b"\t" + name + b"\0"  # mode 0: remove the entry
            subprocess.run(["git", "--git-dir", str(world.origin), "update-index", "-z", "--index-info"],
                           input=line, check=True, env=env)
            continue
        blob = subprocess.run(["git", "--git-dir", str(world.origin), "hash-object", "-w", "--stdin"],
                              input=content, capture_output=True, check=True).stdout.strip()
        line = b"100644 " + blob + b"\t" + name + b"\0"
        subprocess.run(["git", "--git-dir", str(world.origin), "update-index", "-z", "--index-info"],
                       input=line, check=True, env=env)
    tree = subprocess.run(["git", "--git-dir", str(world.origin), "write-tree"], capture_output=True,
                          check=True, env=env, text=True).stdout.strip()
    commit = git("--git-dir", str(world.origin), "commit-tree", tree, "-p", parent, "-m", message)
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", commit)
    return commit


def test_a_non_utf8_name_outside_the_sheets_is_ignored_and_restart_works(client: testing.TestClient,
                                                                         runtime: Runtime, world: World) -> None:
    tip = commit_raw(world, {b"docs/caf\xe9.md": b"notes\n"})
    resp = post(client, {"commitHash": tip}, headers=bearer())
    assert resp.status_code == 200 and resp.json["data"]["outcome"] == "fast-forwarded"
    runtime.close()
    again = boot(world.settings(upkeep_seconds=0))
    try:
        assert again.holder.current.commit == tip and again.holder.degraded is None
    finally:
        again.close()


@pytest.mark.parametrize(("name", "content", "message"), [
    (b"projects/caf\xe9.toml", project_toml("cafe", "Cafe").encode(), "file name is not UTF-8"),
    (b"projects/huge.toml", project_toml("huge", "Huge").encode() + b"legacyId = " + b"9" * 5000 + b"\n",
     "invalid TOML"),
    (b"projects/deep.toml", project_toml("deep", "Deep").encode() + b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n",
     "invalid TOML"),
])
def test_an_unreadable_record_is_a_422_naming_it_and_nothing_changes(client: testing.TestClient, runtime: Runtime,
                                                                     world: World, name: bytes, content: bytes,
                                                                     message: str) -> None:
    served = runtime.holder.current.commit
    tip = commit_raw(world, {name: content})
    resp = post(client, {"commitHash": tip}, headers=bearer())
    assert resp.status_code == 422, resp.json
    details = resp.json["error"]["details"]
    assert details["path"] == name.decode("utf-8", "backslashreplace") and message in details["error"]
    assert runtime.holder.current.commit == served == world.clone_head()


def test_a_head_that_does_not_build_at_start_serves_the_newest_that_does(world: World) -> None:
    good = world.origin_head()
    bad = commit_raw(world, {b"projects/caf\xe9.toml": project_toml("cafe", "Cafe").encode()})
    later = commit_raw(world, {b"README.md": b"still broken\n"})
    git("--git-dir", str(world.clone), "fetch", "-q", str(world.origin), "+published:published")
    rt = boot(world.settings(upkeep_seconds=0), reconcile_at_start=False)
    try:
        assert rt.holder.current.commit == good and rt.holder.degraded
        assert "caf\\xe9" in rt.holder.degraded
        client = testing.TestClient(create_app(rt))
        health = client.simulate_get("/api/health").json["data"]
        assert health["status"] == "degraded" and health["headCommit"] == later and health["servedCommit"] == good
        write = client.simulate_post("/api/projects", json={"slug": "x-new", "title": "X"},
                                     headers=bearer(WRITE_TOKEN))
        assert write.status_code == 503, write.json
        # the data is fixed upstream: the reload serves the head and clears the state
        fixed = commit_raw(world, {b"projects/caf\xe9.toml": None}, "remove the misnamed file")
        resp = client.simulate_post("/api/_internal/reload-data", json={"commitHash": fixed}, headers=bearer())
        assert resp.status_code == 200 and resp.json["data"]["outcome"] == "fast-forwarded", resp.json
        assert rt.holder.current.commit == fixed and rt.holder.degraded is None
        assert client.simulate_get("/api/health").json["data"]["status"] == "ok"
        assert client.simulate_post("/api/projects", json={"slug": "x-new", "title": "X"},
                                    headers=bearer(WRITE_TOKEN)).status_code == 201
        assert bad != fixed
    finally:
        rt.close()


def test_a_branch_named_conflicts_does_not_block_the_escape(client: testing.TestClient, runtime: Runtime,
                                                           world: World) -> None:
    assert runtime.push_daemon is not None
    runtime.push_daemon.stop()
    head = world.clone_head()
    git("--git-dir", str(world.clone), "update-ref", "refs/heads/conflicts", head)
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/conflicts", head)
    runtime.writer.create("projects", {"slug": "clash", "title": "Ours"}, "/api/projects")
    upstream = world.commit_upstream({"projects/clash.toml": project_toml("clash", "Theirs")})
    data = post(client, {"commitHash": upstream}, headers=bearer()).json["data"]
    assert data["outcome"] == "conflict-escaped" and data["conflictBranch"].startswith("conflicts-"), data
    assert runtime.holder.current.commit == upstream


def test_a_failed_first_clone_leaves_nothing_and_the_next_start_clones(tmp_path: Path, world: World) -> None:
    target = tmp_path / "fresh" / "clone.git"
    settings = Settings(str(target), str(tmp_path / "no-such-remote.git"), "published", "s" * 40, None,
                        upkeep_seconds=0)
    with pytest.raises(StartupError, match=r"no-such-remote\.git"):
        boot(settings)
    assert not target.exists() and os.listdir(target.parent) == []
    rt = boot(Settings(str(target), str(world.origin), "published", "s" * 40, None, upkeep_seconds=0))
    try:
        assert rt.holder.current.commit == world.origin_head()
    finally:
        rt.close()


def test_a_second_instance_on_one_clone_exits_at_once_naming_the_first(world: World) -> None:
    with ServerProcess(world.env()) as first:
        assert first.get("/api/health").status == 200
        env = {**os.environ, **world.env()}
        second = subprocess.run([sys.executable, "-m", "hotreload.cli", "serve", "--port", "0"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"another hotreload process (pid {first.proc.pid if first.proc else '?'})" in second.stderr
        assert first.get("/api/health").data["status"] == "ok"


def test_objects_are_fsynced_before_the_ref_that_names_them_moves(runtime: Runtime,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_cas = os.fsync, runtime.repo.cas_ref
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])

    def cas(*args, **kwargs):  # type: ignore[no-untyped-def]
        events.append("ref")
        return real_cas(*args, **kwargs)

    monkeypatch.setattr(runtime.repo, "cas_ref", cas)
    runtime.writer.create("projects", {"slug": "durable", "title": "Durable"}, "/api/projects")
    first_ref = events.index("ref")
    # blob, tree(s) and commit: each file and its folder synced, all before the branch moved
    assert events[:first_ref].count("fsync") >= 6


def test_an_oversized_body_is_refused_by_the_server_without_reading_it(server: ServerProcess) -> None:
    host, port = server.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/api/_internal/reload-data")
    conn.putheader("Content-Length", str(300 * 1024 * 1024))
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()  # no body is sent: the answer must come anyway
    assert conn.getresponse().status == 413
    conn.close()
