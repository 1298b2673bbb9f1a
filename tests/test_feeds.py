"""The seed's global feeds (``/api/project-updates``, ``/api/project-buzz``) and buzz by slug,
checked against the records as the work tree holds them (read with ``tomllib``)."""

from __future__ import annotations

import datetime as dt
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from tests.conftest import World, make_world
from tests.test_sheets import reload, toml


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, records=600)  # 48 updates, 18 buzz


def records(world: World, sheet: str) -> list[dict[str, Any]]:
    return [tomllib.loads(p.read_text()) for p in sorted((world.work / sheet).rglob("*.toml"))]


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.upper())


def expected(world: World, sheet: str, field: str, since: dt.datetime | None = None,
             tags: tuple[str, ...] = ()) -> list[str]:
    """The seed's global feed, computed from the tree: items of live projects, newest first."""
    live = {p["id"] for p in records(world, "projects") if "deletedAt" not in p}
    if tags:
        tag_ids = {t["id"] for t in records(world, "tags") if f"{t['namespace']}.{t['slug']}" in tags}
        live &= {a["taggableId"] for a in records(world, "tag-assignments")
                 if a["taggableType"] == "project" and a["tagId"] in tag_ids}
    items = [r for r in records(world, sheet) if r["projectId"] in live
             and (since is None or when(r[field]) >= since)]
    return [r["id"] for r in sorted(items, key=lambda r: (when(r[field]), r["id"]), reverse=True)]


def every_page(client: testing.TestClient, path: str, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in range(1, 100):
        body = client.simulate_get(path, params={**params, "page": str(page), "perPage": "100"}).json
        found += body["data"]
        if len(found) >= body["meta"]["total"]:
            return found
    raise AssertionError("the feed never ended")


def test_global_feeds_list_every_live_projects_items_newest_first(world: World, client: testing.TestClient) -> None:
    for path, sheet, field in (("/api/project-updates", "project-updates", "createdAt"),
                               ("/api/project-buzz", "project-buzz", "publishedAt")):
        items = every_page(client, path)
        assert [i["id"] for i in items] == expected(world, sheet, field), path
        assert all(isinstance(i["project"], str) and i[field] for i in items)
        first = client.simulate_get(path).json
        assert first["meta"]["perPage"] == 30 and first["meta"]["total"] == len(items)
        assert first["data"] == items[:30]


def test_global_feeds_filter_by_time_and_by_any_of_the_tags(world: World, client: testing.TestClient) -> None:
    handle = {t["id"]: f"{t['namespace']}.{t['slug']}" for t in records(world, "tags")}
    tagged_projects = {a["taggableId"]: handle[a["tagId"]] for a in records(world, "tag-assignments")
                       if a["taggableType"] == "project"}
    # one tag of a project with updates, one of a project with buzz: "any of them" matters for both
    tags = [next(tagged_projects[r["projectId"]] for r in records(world, sheet) if r["projectId"] in tagged_projects)
            for sheet in ("project-updates", "project-buzz")]
    for path, sheet, field in (("/api/project-updates", "project-updates", "createdAt"),
                               ("/api/project-buzz", "project-buzz", "publishedAt")):
        times = sorted(when(r[field]) for r in records(world, sheet))
        since = times[len(times) // 2]
        got = every_page(client, path, since=since.isoformat())
        assert [i["id"] for i in got] == expected(world, sheet, field, since=since)
        assert 0 < len(got) < len(times) - 1
        tagged = client.simulate_get(path, params={"tag": tags, "perPage": "100"}).json["data"]
        assert [i["id"] for i in tagged] == expected(world, sheet, field, tags=tuple(tags))[:100]
        assert len(tagged) > 0 and len(tagged) >= len(expected(world, sheet, field, tags=tuple(tags[:1])))
        assert client.simulate_get(path, params={"tag": "topic.no-such-tag"}).json["data"] == []
        for bad in ("yesterday", "2024-13-01", "2024-01-01T25:00:00Z", "\uff12\uff10\uff12\uff14-01-01"):
            answer = client.simulate_get(path, params={"since": bad})
            assert answer.status_code == 400 and answer.json["error"]["message"].startswith("since"), bad


def test_a_new_update_tops_the_feed_and_a_deleted_projects_leave_it(world: World,
                                                                  client: testing.TestClient) -> None:
    project = next(p for p in records(world, "projects") if "deletedAt" not in p)
    world.commit_upstream({f"project-updates/{project['slug']}/999.toml": toml(
        id=uuid.uuid4(), projectId=project["id"], body="Newest", number=999,
        createdAt="2099-01-01T00:00:00Z", updatedAt="2099-01-01T00:00:00Z")})
    reload(client)
    top = client.simulate_get("/api/project-updates", params={"perPage": "1"}).json["data"][0]
    assert top["body"] == "Newest" and top["project"] == project["slug"]
    path = next(world.work.joinpath("projects").glob(f"{project['slug']}.toml"))
    world.commit_upstream({str(path.relative_to(world.work)): path.read_text() + 'deletedAt = "2024-06-01T00:00:00Z"\n'})
    reload(client)
    ids = [i["id"] for i in every_page(client, "/api/project-updates")]
    assert top["id"] not in ids and ids == expected(world, "project-updates", "createdAt")


def test_buzz_by_slug_follows_its_slug_history_and_its_projects(world: World, client: testing.TestClient) -> None:
    item = records(world, "project-buzz")[0]
    project = next(p for p in records(world, "projects") if p["id"] == item["projectId"])
    if "deletedAt" in project:  # the corpus may have deleted it: bring it back
        path = Path("projects") / f"{project['slug']}.toml"
        world.commit_upstream({str(path): (world.work / path).read_text().replace("deletedAt", "# deletedAt")})
    slug, old = project["slug"], item["slug"]
    moved = {**item, "slug": f"{old}-moved"}
    world.commit_upstream({
        f"project-buzz/{slug}/{old}.toml": None,
        f"project-buzz/{slug}/{old}-moved.toml": toml(**moved),
        f"slug-history/buzz/{old}.toml": toml(id=uuid.uuid4(), entityType="buzz", oldSlug=old, newSlug=f"{old}-moved",
                                              entityId=item["id"], changedAt="2024-02-01T00:00:00Z",
                                              expiresAt="2099-01-01T00:00:00Z"),
    })
    reload(client)
    found = client.simulate_get(f"/api/projects/{slug}/buzz/{old}-moved")
    assert found.status_code == 200 and found.json["data"]["id"] == item["id"]
    assert found.json["data"]["project"] == slug and found.headers["etag"]
    redirect = client.simulate_get(f"/api/projects/{slug}/buzz/{old}", params={"x": "1"})
    assert redirect.status_code == 301
    assert redirect.headers["Location"] == f"/api/projects/{slug}/buzz/{old}-moved?x=1"
    assert client.simulate_get(f"/api/projects/{slug}/buzz/never-was").status_code == 404
    assert client.simulate_get(f"/api/projects/no-such-project/buzz/{old}").status_code == 404
