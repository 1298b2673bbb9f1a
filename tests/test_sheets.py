"""Every sheet reloads: the seed's eleven typed sheets, any other sheet served untyped,
slug history (301) and legacy ids right after any reload, revocations in health."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from falcon import testing

from hotreload.service.runtime import Runtime
from tests.conftest import World, bearer, project_toml

TS = "2024-02-01T00:00:00Z"


def reload(client: testing.TestClient) -> dict[str, Any]:
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json
    return body


def toml(**fields: object) -> str:
    def value(v: object) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int) else f'"{v}"'
    return "".join(f"{k} = {value(v)}\n" for k, v in fields.items())


def a_project(client: testing.TestClient) -> dict[str, Any]:
    data: dict[str, Any] = client.simulate_get("/api/projects", params={"perPage": "1"}).json["data"][0]
    return data


def test_all_eleven_seed_sheets_and_an_unknown_one_load_and_are_listed(client: testing.TestClient,
                                                                      runtime: Runtime) -> None:
    sheets = {s["name"]: s for s in client.simulate_get("/api/sheets").json["data"]}
    seed = {"projects", "people", "tags", "tag-assignments", "project-memberships", "project-updates",
            "project-buzz", "help-wanted-roles", "help-wanted-interest", "slug-history", "revocations"}
    assert set(sheets) == seed | {"sponsors"}
    assert all(sheets[name]["typed"] for name in seed) and not sheets["sponsors"]["typed"]
    counts = runtime.holder.current.record_counts()
    for name, sheet in sheets.items():
        assert sheet["count"] == counts[name] > 0, name


def test_an_untyped_sheet_is_served_read_only_by_key(client: testing.TestClient) -> None:
    listing = client.simulate_get("/api/sheets/sponsors").json
    first = listing["data"][0]
    assert first["path"] == f"sponsors/{first['key']}.toml"
    # TOML values a generic reader must turn into JSON: a date, an array, a table
    assert first["data"]["since"].count("-") == 2 and isinstance(first["data"]["projects"], list)
    assert "@example.org" in first["data"]["contact"]["email"]
    one = client.simulate_get(f"/api/sheets/sponsors/{first['key']}")
    assert one.status_code == 200 and one.json["data"] == first
    # keys with slashes: a typed sheet read the same way
    tag = client.simulate_get("/api/sheets/tags").json["data"][0]
    assert "/" in tag["key"] and client.simulate_get(f"/api/sheets/tags/{tag['key']}").json["data"] == tag
    assert client.simulate_get("/api/sheets/sponsors/nope").status_code == 404
    missing = client.simulate_get("/api/sheets/nope")
    assert missing.status_code == 404 and "sponsors" in missing.json["error"]["message"]
    assert client.simulate_post("/api/sheets/sponsors", json={}).status_code == 405


def test_an_unknown_sheet_reloads_and_logs_that_it_is_untyped(world: World, client: testing.TestClient,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    world.commit_upstream({".gitsheets/festivals.toml": '[gitsheet]\nroot = "festivals"\npath = "${{ slug }}"\n',
                           "festivals/fall-fest.toml": "slug = 'fall-fest'\nwhen = 2024-10-01T18:00:00-04:00\n"})
    reload(client)
    event = client.simulate_get("/api/sheets/festivals/fall-fest").json["data"]
    assert event["data"] == {"slug": "fall-fest", "when": "2024-10-01T18:00:00-04:00"}
    assert any("serving sheet 'festivals' untyped" in r.getMessage() for r in caplog.records)
    # the path template is checked for untyped sheets too: a refused tree keeps the served one
    world.commit_upstream({"festivals/fall-fest.toml": "slug = 'spring-fest'\n"})
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 422 and "festivals/spring-fest.toml" in resp.json["error"]["message"]
    assert client.simulate_get("/api/sheets/festivals/fall-fest").json["data"]["data"]["when"]


def test_project_updates_buzz_and_help_wanted_reload(world: World, client: testing.TestClient) -> None:
    project = a_project(client)
    person_id = client.simulate_get("/api/people", params={"perPage": "1"}).json["data"][0]["id"]
    role_id = str(uuid.uuid4())
    slug = project["slug"]
    world.commit_upstream({
        f"project-updates/{slug}/900.toml": toml(id=uuid.uuid4(), projectId=project["id"], body="Shipped v2",
                                                 number=900, createdAt=TS, updatedAt=TS),
        f"project-buzz/{slug}/on-the-news.toml": toml(
            id=uuid.uuid4(), projectId=project["id"], slug="on-the-news", headline="On the news",
            url="https://news.example.org/x", publishedAt="2030-01-01T00:00:00Z", createdAt=TS, updatedAt=TS),
        f"help-wanted-roles/{slug}/{role_id}.toml": toml(
            id=role_id, projectId=project["id"], postedById=person_id, title="Cartographer wanted",
            description="Draw zebra crossings", commitmentHoursPerWeek=3, createdAt=TS, updatedAt=TS),
        f"help-wanted-interest/{role_id}/someone.toml": toml(id=uuid.uuid4(), roleId=role_id,
                                                            personId=person_id, createdAt=TS),
    })
    reload(client)
    updates = client.simulate_get(f"/api/projects/{slug}/updates").json["data"]
    assert updates[0]["number"] == 900 and updates[0]["body"] == "Shipped v2"
    assert [u["number"] for u in updates] == sorted((u["number"] for u in updates), reverse=True)
    assert client.simulate_get(f"/api/projects/{slug}/updates/900").json["data"]["body"] == "Shipped v2"
    assert client.simulate_get(f"/api/projects/{slug}/updates/901").status_code == 404
    assert client.simulate_get(f"/api/projects/{slug}/updates/x1").status_code == 400
    buzz = client.simulate_get(f"/api/projects/{slug}/buzz").json["data"]
    assert buzz[0]["slug"] == "on-the-news"
    roles = client.simulate_get(f"/api/projects/{slug}/help-wanted").json["data"]
    assert [r["interestCount"] for r in roles if r["id"] == role_id] == [1]
    found = client.simulate_get("/api/help-wanted", params={"q": "zebra"}).json
    assert [r["id"] for r in found["data"]] == [role_id] and found["data"][0]["project"] == slug
    assert client.simulate_get("/api/help-wanted", params={"q": "zebra", "commitmentMax": "2"}).json["data"] == []
    assert client.simulate_get("/api/help-wanted", params={"q": "zebra", "status": "filled"}).json["data"] == []
    assert client.simulate_get("/api/help-wanted", params={"status": "hired"}).status_code == 400

    # the role is filled upstream: the default (open) search no longer shows it
    world.commit_upstream({f"help-wanted-roles/{slug}/{role_id}.toml": toml(
        id=role_id, projectId=project["id"], postedById=person_id, title="Cartographer wanted",
        description="Draw zebra crossings", status="filled", createdAt=TS, updatedAt=TS)})
    reload(client)
    assert client.simulate_get("/api/help-wanted", params={"q": "zebra"}).json["data"] == []
    assert len(client.simulate_get("/api/help-wanted", params={"q": "zebra", "status": "filled"}).json["data"]) == 1


def test_tag_detail_lists_its_live_projects_and_people(client: testing.TestClient, runtime: Runtime) -> None:
    snap = runtime.holder.current
    assignment: Any = next(a for a in snap.table("tag-assignments").by_id.values() if a.taggable_type == "project")
    tag: Any = snap.table("tags").by_id[assignment.tag_id]
    body = client.simulate_get(f"/api/tags/{tag.handle}").json["data"]
    assert body["handle"] == tag.handle
    project: Any = snap.table("projects").by_id[assignment.taggable_id]
    assert (project.slug in [p["slug"] for p in body["projects"]]) == (project.deleted_at is None)
    assert client.simulate_get("/api/tags/topic.no-such-tag").status_code == 404
    assert client.simulate_get("/api/tags/nonsense").status_code == 400


def test_a_project_renamed_upstream_redirects_and_keeps_its_legacy_id(world: World,
                                                                    client: testing.TestClient) -> None:
    project = a_project(client)
    old, legacy = project["slug"], project["legacyId"]
    renamed = {k: v for k, v in project.items() if isinstance(v, str | int) and not isinstance(v, bool)}
    renamed["slug"] = f"{old}-renamed"
    world.commit_upstream({
        f"projects/{old}.toml": None,
        f"projects/{old}-renamed.toml": toml(**renamed),
        f"slug-history/project/{old}.toml": toml(id=uuid.uuid4(), entityType="project", oldSlug=old,
                                                 newSlug=f"{old}-renamed", entityId=project["id"],
                                                 changedAt=TS, expiresAt="2099-01-01T00:00:00Z"),
    })
    reload(client)
    moved = client.simulate_get(f"/api/projects/{old}", params={"x": "1"})
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"/api/projects/{old}-renamed?x=1"
    assert moved.headers["X-Data-Commit"] == world.origin_head()
    sub = client.simulate_get(f"/api/projects/{old}/updates")
    assert sub.status_code == 301 and sub.headers["Location"] == f"/api/projects/{old}-renamed/updates"
    assert client.simulate_get(f"/api/projects/{old}-renamed").json["data"]["legacyId"] == legacy
    by_legacy = client.simulate_get("/api/projects", params={"legacyId": str(legacy)}).json
    assert [p["slug"] for p in by_legacy["data"]] == [f"{old}-renamed"]
    seed_form = client.simulate_get("/api/projects", params={"ID": str(legacy)})
    assert seed_form.status_code == 301 and seed_form.headers["Location"] == f"/api/projects/{old}-renamed"
    assert client.simulate_get("/api/projects", params={"ID": "99999999"}).status_code == 404
    assert client.simulate_get("/api/projects", params={"legacyId": "x"}).status_code == 400
    # a bad parameter is a 400 even where the record moved: no 301 carrying it on
    for path, params in [(f"/api/projects/{old}/updates", {"page": "null"}),
                         (f"/api/projects/{old}/buzz", {"perPage": "2.5"}),
                         (f"/api/projects/{old}/help-wanted", {"status": "nope"}),
                         (f"/api/projects/{old}/updates/abc", {}),
                         ("/api/projects", {"ID": str(legacy), "page": "0"}),
                         ("/api/projects", {"ID": str(legacy), "stage": "nope"})]:
        answer = client.simulate_get(path, params=params)
        assert answer.status_code == 400, (path, params, answer.status_code)

    # an unrelated reload (the incremental path) keeps both
    world.commit_upstream({"projects/zz-unrelated.toml": project_toml("zz-unrelated", "Unrelated")})
    reload(client)
    assert client.simulate_get(f"/api/projects/{old}").status_code == 301
    assert client.simulate_get("/api/projects", params={"ID": str(legacy)}).status_code == 301


def test_slug_history_follows_chains_lets_live_slugs_win_and_ignores_expired(world: World,
                                                                           client: testing.TestClient) -> None:
    people = client.simulate_get("/api/people", params={"perPage": "2"}).json["data"]
    live, other = people[0]["slug"], people[1]["slug"]

    def entry(old: str, new: str, expires: str = "2099-01-01T00:00:00Z") -> str:
        return toml(id=uuid.uuid4(), entityType="person", oldSlug=old, newSlug=new,
                    entityId=people[0]["id"], changedAt=TS, expiresAt=expires)

    world.commit_upstream({
        "slug-history/person/aa-first.toml": entry("aa-first", "aa-second"),
        "slug-history/person/aa-second.toml": entry("aa-second", live),      # a chain: first -> second -> live
        f"slug-history/person/{other}.toml": entry(other, live),              # live wins: never redirected
        "slug-history/person/aa-gone.toml": entry("aa-gone", live, "2001-01-01T00:00:00Z"),  # expired
        "slug-history/person/aa-loop.toml": entry("aa-loop", "aa-loop"),
        "slug-history/person/aa-ping.toml": entry("aa-ping", "aa-pong"),      # a cycle of two
        "slug-history/person/aa-pong.toml": entry("aa-pong", "aa-ping"),
        "slug-history/person/aa-dead.toml": entry("aa-dead", "aa-nowhere"),   # a dead end: no live slug
    })
    reload(client)
    chain = client.simulate_get("/api/people/aa-first")
    assert chain.status_code == 301 and chain.headers["Location"] == f"/api/people/{live}"
    assert client.simulate_get(f"/api/people/{other}").status_code == 200
    assert client.simulate_get("/api/people/aa-gone").status_code == 404
    for slug in ("aa-loop", "aa-ping", "aa-pong", "aa-dead"):  # never a 301 to a slug that is not live
        assert client.simulate_get(f"/api/people/{slug}").status_code == 404, slug


def test_a_revocation_is_in_health_after_the_reload_that_adds_it(world: World, client: testing.TestClient) -> None:
    before = client.simulate_get("/api/health").json["data"]["revocations"]
    person_id = client.simulate_get("/api/people", params={"perPage": "1"}).json["data"][0]["id"]
    commit = world.commit_upstream({"revocations/tok-123.toml": toml(
        jti="tok-123", personId=person_id, revokedAt="2030-05-05T05:05:05Z", expiresAt="2031-01-01T00:00:00Z")})
    reload(client)
    after = client.simulate_get("/api/health").json["data"]["revocations"]
    assert after == {"count": before["count"] + 1, "latestRevokedAt": "2030-05-05T05:05:05Z",
                     "changedInCommit": commit}
    assert client.simulate_get("/api/sheets/revocations/tok-123").json["data"]["data"]["personId"] == person_id
    # a change elsewhere does not move the revocations' commit
    world.commit_upstream({"projects/zz-other.toml": project_toml("zz-other", "Other")})
    reload(client)
    assert client.simulate_get("/api/health").json["data"]["revocations"]["changedInCommit"] == commit
    # two revocations with one jti (two paths): the tree is refused, naming both
    world.commit_upstream({"revocations/tok-124.toml": toml(
        jti="tok-123", personId=person_id, revokedAt=TS, expiresAt="2031-01-01T00:00:00Z")})
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 422 and "revocations/tok-124.toml" in resp.json["error"]["message"]


def test_new_sheet_records_are_validated_with_their_path(world: World, client: testing.TestClient) -> None:
    world.commit_upstream({"project-buzz/x/bad.toml": toml(id=uuid.uuid4(), projectId=uuid.uuid4(), slug="bad",
                                                         headline="H", url="not a url", publishedAt=TS,
                                                         createdAt=TS, updatedAt=TS)})
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 422
    assert "project-buzz/x/bad.toml: url: must match" in resp.json["error"]["message"]


@pytest.mark.parametrize("field", ["newSlug", "oldSlug"])
@pytest.mark.parametrize("odd", ["zz-x\r\nSet-Cookie: a=b", "zz-snow\u2603man", "../../../x"])
def test_a_slug_history_entry_whose_slug_is_not_a_slug_is_refused_naming_the_file(
        world: World, client: testing.TestClient, field: str, odd: str) -> None:
    """Were it loaded, every GET of the old slug would be a 500 (a header waitress
    refuses) or a ``Location`` outside the API."""
    project = a_project(client)
    slugs = {"oldSlug": "zz-was", "newSlug": project["slug"], field: odd}
    old = slugs["oldSlug"]
    path = f"slug-history/project/{'zz-odd' if '/' in old else old}.toml"  # where the template puts it
    entry = "".join(f"{k} = {json.dumps(v)}\n" for k, v in {
        "id": str(uuid.uuid4()), "entityType": "project", **slugs, "entityId": project["id"],
        "changedAt": TS, "expiresAt": "2099-01-01T00:00:00Z"}.items())
    world.commit_upstream({path: entry})
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 422, resp.text
    assert resp.json["error"]["details"]["path"] == path and field in resp.json["error"]["details"]["error"]
    assert client.simulate_get("/api/projects/zz-was").status_code == 404  # nothing of it served
