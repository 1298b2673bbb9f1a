"""Writes: one commit per success, nothing on failure, never lost in a race."""

from __future__ import annotations

import datetime as dt
import json
import threading
import tomllib
from collections.abc import Iterator

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.service.runtime import Runtime, boot
from tests.conftest import WRITE_TOKEN, World, bearer, git, project_toml

AUTH = bearer(WRITE_TOKEN)


def write(client: testing.TestClient, method: str, path: str, body: object = None,
          headers: dict[str, str] | None = None) -> testing.Result:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return client.simulate_request(method, path, body=raw, headers={"Content-Type": "application/json",
                                                                    **(AUTH if headers is None else headers)})


def commits(world: World) -> int:
    return int(git("--git-dir", str(world.clone), "rev-list", "--count", "published"))


def test_create_project_is_one_commit_with_trailers(client: testing.TestClient, runtime: Runtime, world: World) -> None:
    before = commits(world)
    resp = write(client, "POST", "/api/projects", {"slug": "bus-bunching", "title": "Bus Bunching",
                                                   "summary": "Where buses bunch", "stage": "prototyping"})
    assert resp.status_code == 201, resp.text
    data = resp.json["data"]
    assert data["slug"] == "bus-bunching" and data["stage"] == "prototyping" and len(data["id"]) == 36
    assert data["createdAt"] == data["updatedAt"] and data["deletedAt"] is None
    head = world.clone_head()
    assert resp.headers["X-Data-Commit"] == head == runtime.holder.current.commit
    assert commits(world) == before + 1
    message = git("--git-dir", str(world.clone), "log", "-1", "--format=%an <%ae>%n%B", "published")
    assert message.splitlines() == [
        "Code for Philly API <api@users.noreply.codeforphilly.org>",
        "api: POST /api/projects", "",
        "Action: project.create", "Subject-Type: project", f"Subject-Id: {data['id']}",
        "Subject-Slug: bus-bunching",
    ]
    stored = git("--git-dir", str(world.clone), "show", "published:projects/bus-bunching.toml")
    assert 'title = "Bus Bunching"' in stored and "deletedAt" not in stored
    assert client.simulate_get("/api/projects/bus-bunching").json["data"]["id"] == data["id"]
    assert [p["slug"] for p in client.simulate_get("/api/projects", params={"q": "bunch"}).json["data"]] == ["bus-bunching"]


def test_patch_renames_by_moving_the_file(client: testing.TestClient, world: World) -> None:
    write(client, "POST", "/api/projects", {"slug": "old-name", "title": "Old"})
    resp = write(client, "PATCH", "/api/projects/old-name", {"slug": "new-name", "title": "New"})
    assert resp.status_code == 200 and resp.json["data"]["slug"] == "new-name"
    files = git("--git-dir", str(world.clone), "ls-tree", "-r", "--name-only", "published").split()
    assert "projects/new-name.toml" in files and "projects/old-name.toml" not in files
    # the seed's rule: the old slug redirects for 90 days, recorded in the same commit
    assert "slug-history/project/old-name.toml" in files
    entry = tomllib.loads(git("--git-dir", str(world.clone), "show", "published:slug-history/project/old-name.toml"))
    assert (entry["oldSlug"], entry["newSlug"], entry["entityType"]) == ("old-name", "new-name", "project")
    changed = dt.datetime.fromisoformat(entry["changedAt"].replace("Z", "+00:00"))
    assert dt.datetime.fromisoformat(entry["expiresAt"].replace("Z", "+00:00")) - changed == dt.timedelta(days=90)
    moved = client.simulate_get("/api/projects/old-name")
    assert moved.status_code == 301 and moved.headers["Location"] == "/api/projects/new-name"
    assert client.simulate_get("/api/projects/new-name").json["data"]["title"] == "New"
    trailer = git("--git-dir", str(world.clone), "log", "-1", "--format=%B", "published")
    assert "Action: project.update" in trailer and "api: PATCH /api/projects/old-name" in trailer
    # an edit that keeps the slug writes no history
    write(client, "PATCH", "/api/projects/new-name", {"title": "Newer"})
    assert git("--git-dir", str(world.clone), "diff", "--name-only", "published~1", "published") == \
        "projects/new-name.toml"


def test_delete_is_soft(client: testing.TestClient, world: World) -> None:
    write(client, "POST", "/api/projects", {"slug": "short-lived", "title": "Short"})
    resp = write(client, "DELETE", "/api/projects/short-lived")
    assert resp.status_code == 200 and resp.json["data"]["deletedAt"] is not None
    assert client.simulate_get("/api/projects/short-lived").status_code == 404
    assert "deletedAt" in git("--git-dir", str(world.clone), "show", "published:projects/short-lived.toml")
    assert write(client, "DELETE", "/api/projects/short-lived").status_code == 404
    assert "Action: project.soft-delete" in git("--git-dir", str(world.clone), "log", "-1", "--format=%B", "published")


def test_people_create_update_delete(client: testing.TestClient, world: World) -> None:
    resp = write(client, "POST", "/api/people", {"slug": "jane-doe", "fullName": "Jane Doe", "bio": "Maps."})
    assert resp.status_code == 201 and resp.json["data"]["fullName"] == "Jane Doe"
    assert write(client, "PATCH", "/api/people/jane-doe", {"bio": None}).json["data"]["bio"] is None
    assert write(client, "DELETE", "/api/people/jane-doe").status_code == 200
    assert client.simulate_get("/api/people/jane-doe").status_code == 404
    assert "Subject-Type: person" in git("--git-dir", str(world.clone), "log", "-1", "--format=%B", "published")


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code", "field"), [
    ("POST", "/api/projects", {"slug": "x1", "title": "X"}, {}, 401, "unauthorized", None),
    ("POST", "/api/projects", {"slug": "x1", "title": "X"}, bearer("nope-nope-nope"), 401, "unauthorized", None),
    ("POST", "/api/projects", b"{oops", None, 400, "bad_request", None),
    ("POST", "/api/projects", [1], None, 400, "bad_request", None),
    ("POST", "/api/projects", {"slug": "x1", "title": "X", "color": "red"}, None, 400, "bad_request", "color"),
    ("POST", "/api/projects", {"slug": "x1", "title": "X", "id": "mine"}, None, 400, "bad_request", "id"),
    ("POST", "/api/projects", {"slug": "x1"}, None, 422, "invalid_data", "title"),
    ("POST", "/api/projects", {"slug": "x1", "title": "X", "stage": "done"}, None, 422, "invalid_data", "stage"),
    ("POST", "/api/projects", {"slug": "X 1", "title": "X"}, None, 422, "invalid_data", "slug"),
    ("POST", "/api/projects", {"slug": "x1", "title": 5}, None, 422, "invalid_data", "title"),
    ("POST", "/api/people", {"slug": "p1", "fullName": ""}, None, 422, "invalid_data", "fullName"),
    ("PATCH", "/api/projects/no-such", {"title": "Y"}, None, 404, "not_found", None),
    ("PATCH", "/api/projects/EXISTING", {}, None, 400, "bad_request", "body"),
    ("PATCH", "/api/projects/EXISTING", {"title": None}, None, 422, "invalid_data", "title"),
    ("POST", "/api/projects", {"slug": "EXISTING", "title": "Dup"}, None, 409, "conflict", "slug"),
    ("DELETE", "/api/people/no-such", None, None, 404, "not_found", None),
])
def test_rejected_writes_make_no_commit(client: testing.TestClient, runtime: Runtime, world: World, method: str,
                                        path: str, body: object, headers: dict[str, str] | None, status: int,
                                        code: str, field: str | None) -> None:
    existing = next(p for p in runtime.holder.current.table("projects").by_id.values() if not p.deleted_at)  # type: ignore[attr-defined]
    path = path.replace("EXISTING", existing.slug)  # type: ignore[attr-defined]
    if isinstance(body, dict) and body.get("slug") == "EXISTING":
        body = {**body, "slug": existing.slug}  # type: ignore[attr-defined]
    head, served = world.clone_head(), runtime.holder.current
    resp = write(client, method, path, body, headers)
    assert resp.status_code == status, resp.text
    assert resp.json["error"]["code"] == code
    if field:
        assert resp.json["error"]["message"].startswith(f"{field}:")
    assert world.clone_head() == head and runtime.holder.current is served


def test_writes_are_503_without_a_token(world: World) -> None:
    rt = boot(world.settings(write_token=None))
    try:
        client = testing.TestClient(create_app(rt))
        assert write(client, "POST", "/api/projects", {"slug": "x1", "title": "X"}, {}).status_code == 401
        assert write(client, "POST", "/api/projects", {"slug": "x1", "title": "X"}).status_code == 503
    finally:
        rt.close()


def test_a_write_checks_the_bearer_token_before_the_body_size(client: testing.TestClient, world: World) -> None:
    head, oversized = world.clone_head(), b"x" * (256 * 1024 + 1)
    for headers in ({}, {"X-Gitlab-Token": WRITE_TOKEN}, bearer("x" * 32)):  # only a bearer counts, and the right one
        assert write(client, "POST", "/api/projects", oversized, headers).status_code == 401
    resp = write(client, "POST", "/api/projects", oversized)
    assert resp.status_code == 413 and resp.json["error"] == {
        "code": "payload_too_large", "message": "request body is larger than 262144 bytes",
        "traceId": resp.headers["X-Request-Id"]}
    assert write(client, "PATCH", "/api/projects/x1", b"[]", {**AUTH, "Content-Type": "text/plain"}).status_code == 415
    assert world.clone_head() == head


@pytest.fixture
def offline_runtime(world: World) -> Iterator[Runtime]:
    """A runtime whose push daemon is stopped, so divergence can be staged."""
    rt = boot(world.settings())
    assert rt.push_daemon is not None
    rt.push_daemon.stop()
    rt.push_daemon = None
    rt.reloader.push_daemon = None
    rt.writer.push_daemon = None
    yield rt
    rt.close()


@pytest.mark.parametrize("order", ["write-then-reload", "reload-then-write"])
def test_a_write_racing_a_reload_is_never_lost(offline_runtime: Runtime, world: World, order: str) -> None:
    """Whichever takes the lock second sees the other's commit."""
    rt = offline_runtime
    world.commit_upstream({"projects/zz-remote.toml": project_toml("zz-remote", "Remote")})
    if order == "write-then-reload":
        rt.writer.create("projects", {"slug": "zz-local", "title": "Local"}, "/api/projects")
        result = rt.reloader.reload()
        assert result.outcome == "rebased"
    else:
        assert rt.reloader.reload().outcome == "fast-forwarded"
        rt.writer.create("projects", {"slug": "zz-local", "title": "Local"}, "/api/projects")
        assert rt.reloader.reload().outcome == "pushed-ahead"
    snap = rt.holder.current
    assert snap.project_by_slug("zz-local") and snap.project_by_slug("zz-remote")
    assert snap.commit == world.clone_head() == world.origin_head()


def test_threaded_writes_and_reloads_lose_nothing(offline_runtime: Runtime, world: World) -> None:
    rt = offline_runtime
    errors: list[BaseException] = []
    n_writers, per_writer = 4, 5

    def writer(w: int) -> None:
        try:
            for i in range(per_writer):
                rt.writer.create("projects", {"slug": f"zz-w{w}-{i}", "title": f"W{w} {i}"}, "/api/projects")
        except BaseException as exc:
            errors.append(exc)

    def reloader() -> None:
        try:
            for i in range(4):
                world.commit_upstream({f"projects/zz-up-{i}.toml": project_toml(f"zz-up-{i}", f"Up {i}")})
                rt.reloader.reload()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    threads.append(threading.Thread(target=reloader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    rt.reloader.reload()
    snap = rt.holder.current
    for w in range(n_writers):
        for i in range(per_writer):
            assert snap.project_by_slug(f"zz-w{w}-{i}") is not None, (w, i)
    for i in range(4):
        assert snap.project_by_slug(f"zz-up-{i}") is not None
    assert snap.commit == world.clone_head() == world.origin_head()
    files = git("--git-dir", str(world.origin), "ls-tree", "-r", "--name-only", "published")
    assert files.count("projects/zz-w") == n_writers * per_writer


def test_same_record_edited_on_both_sides_escapes(offline_runtime: Runtime, world: World) -> None:
    rt = offline_runtime
    project = next(p for p in rt.holder.current.table("projects").by_id.values() if not p.deleted_at)  # type: ignore[attr-defined]
    path = f"projects/{project.slug}.toml"  # type: ignore[attr-defined]
    world.commit_upstream({path: project_toml(project.slug, "Theirs", id=project.id)})  # type: ignore[attr-defined]
    local = rt.writer.update("projects", project.slug, {"title": "Ours"}, "/x").commit  # type: ignore[attr-defined]
    result = rt.reloader.reload()
    assert result.outcome == "conflict-escaped" and result.conflict_branch
    assert git("--git-dir", str(world.origin), "rev-parse", result.conflict_branch) == local
    assert rt.holder.current.project_by_slug(project.slug).title == "Theirs"  # type: ignore[attr-defined, union-attr]


def test_a_rename_cycle_then_a_delete_leaves_no_redirect_loop(client: testing.TestClient, world: World) -> None:
    """a -> b -> c -> a through the API: the last rename takes back a slug that history
    redirects; then a DELETE. Every old slug is a 404, none a 301 to a slug that is not live."""
    assert write(client, "POST", "/api/projects", {"slug": "zz-a", "title": "Cycled"}).status_code == 201
    for old, new in [("zz-a", "zz-b"), ("zz-b", "zz-c"), ("zz-c", "zz-a")]:
        assert write(client, "PATCH", f"/api/projects/{old}", {"slug": new}).status_code == 200
    for old in ("zz-b", "zz-c"):
        moved = client.simulate_get(f"/api/projects/{old}")
        assert moved.status_code == 301 and moved.headers["Location"] == "/api/projects/zz-a", old
    history = git("--git-dir", str(world.clone), "ls-tree", "-r", "--name-only", "published", "slug-history/project/")
    assert "slug-history/project/zz-a.toml" not in history.split()  # the slug is live again: no entry from it
    assert write(client, "DELETE", "/api/projects/zz-a").status_code == 200
    for slug in ("zz-a", "zz-b", "zz-c"):
        assert client.simulate_get(f"/api/projects/{slug}").status_code == 404, slug
