"""Snapshots: records, secondary indices, search; and the read API over them."""

from __future__ import annotations

from falcon import testing

from hotreload.data.records import Project, Untyped
from hotreload.data.snapshot import build_full
from hotreload.git.repo import GitRepo
from hotreload.service.runtime import Runtime
from tests.conftest import World, project_toml


def test_full_build_indexes_every_sheet(world: World) -> None:
    repo = GitRepo(str(world.origin))
    snap = build_full(repo, repo.branch_commit("published") or "")
    counts = snap.record_counts()
    assert set(counts) == {"projects", "people", "tags", "tag-assignments", "project-memberships",
                           "project-updates", "project-buzz", "help-wanted-roles", "help-wanted-interest",
                           "slug-history", "revocations", "sponsors"}
    assert sum(counts.values()) == 60
    for project in snap.table("projects").by_id.values():
        assert isinstance(project, Project)
        assert snap.project_by_slug(project.slug) is project
        assert snap.indices["project_by_legacy_id"][project.legacy_id] == project.id
    for membership in snap.table("project-memberships").by_id.values():
        assert membership.id in snap.indices["memberships_by_project"][membership.project_id]  # type: ignore[attr-defined]
        assert membership.id in snap.indices["memberships_by_person"][membership.person_id]  # type: ignore[attr-defined]
    for assignment in snap.table("tag-assignments").by_id.values():
        key = (assignment.taggable_type, assignment.taggable_id)  # type: ignore[attr-defined]
        assert assignment.id in snap.indices["assignments_by_taggable"][key]
        assert assignment.id in snap.indices["assignments_by_tag"][assignment.tag_id]  # type: ignore[attr-defined]
    for tag in snap.table("tags").by_id.values():
        assert snap.indices["tag_by_handle"][tag.handle] == tag.id  # type: ignore[attr-defined]
    for sheet, index in (("project-updates", "updates_by_project"), ("project-buzz", "buzz_by_project"),
                         ("help-wanted-roles", "roles_by_project")):
        for child in snap.table(sheet).by_id.values():
            assert child.id in snap.indices[index][child.project_id]  # type: ignore[attr-defined]
    for update in snap.table("project-updates").by_id.values():
        assert snap.indices["update_by_project_number"][(update.project_id, update.number)] == update.id  # type: ignore[attr-defined]
    for interest in snap.table("help-wanted-interest").by_id.values():
        assert interest.id in snap.indices["interest_by_role"][interest.role_id]  # type: ignore[attr-defined]
    for entry in snap.table("slug-history").by_id.values():
        assert snap.indices["slug_history"][(entry.entity_type, entry.old_slug)] == entry.id  # type: ignore[attr-defined]
    for jti, revocation in snap.table("revocations").by_id.items():
        assert revocation.jti == jti == snap.table("revocations").path_by_id[jti][len("revocations/"):-5]  # type: ignore[attr-defined]


def test_duplicate_ids_and_legacy_ids_are_invalid(world: World) -> None:
    import pytest

    from hotreload.data.records import RecordError
    from hotreload.data.snapshot import build_incremental

    repo = GitRepo(str(world.origin))
    base = build_full(repo, world.origin_head())
    some = next(iter(base.table("projects").by_id.values()))
    twin = world.commit_upstream({"projects/a-twin.toml": project_toml("a-twin", "Twin", id=some.id)})
    with pytest.raises(RecordError) as err:
        build_incremental(repo, base, twin)
    assert err.value.path == "projects/a-twin.toml"
    assert f"is also the id of projects/{some.slug}.toml" in err.value.message  # type: ignore[attr-defined]
    with pytest.raises(RecordError):
        build_full(repo, twin)  # both build paths agree

    legacy = project_toml("a-legacy", "Legacy") + f"legacyId = {some.legacy_id}\n"  # type: ignore[attr-defined]
    world.commit_upstream({"projects/a-twin.toml": None})
    commit = world.commit_upstream({"projects/a-legacy.toml": legacy})
    with pytest.raises(RecordError) as err:
        build_full(repo, commit)
    assert f"legacyId: {some.legacy_id} is also used by" in str(err.value)  # type: ignore[attr-defined]
    assert {err.value.path, str(err.value).rsplit(" ", 1)[1]} == {
        "projects/a-legacy.toml", f"projects/{some.slug}.toml"}


def test_a_sheet_without_a_schema_is_loaded_untyped(world: World) -> None:
    commit = world.commit_upstream({".gitsheets/events.toml": '[gitsheet]\nroot = "events"\npath = "${{ slug }}"\n',
                                    "events/x.toml": 'slug = "x"\nwhatever = 1\n'})
    repo = GitRepo(str(world.origin))
    snap = build_full(repo, commit)
    record = snap.table("events").by_id["x"]
    assert isinstance(record, Untyped) and record.data == {"slug": "x", "whatever": 1}


def test_projects_search_filters_facets_and_paging(client: testing.TestClient, runtime: Runtime) -> None:
    snap = runtime.holder.current
    resp = client.simulate_get("/api/projects", params={"q": "transit", "perPage": "100"})
    assert resp.status_code == 200
    assert resp.headers["X-Data-Commit"] == snap.commit
    body = resp.json
    ids = [p["id"] for p in body["data"]]
    expected = [p.id for p in snap.table("projects").by_id.values()  # type: ignore[attr-defined]
                if p.deleted_at is None and "transit" in f"{p.title} {p.summary} {p.overview}".lower()]  # type: ignore[attr-defined]
    assert sorted(ids) == sorted(expected) and body["meta"]["total"] == len(expected)
    facets = body["meta"]["facets"]
    assert set(facets) == {"byTopic", "byTech", "byEvent", "byStage"}
    assert sum(f["count"] for f in facets["byStage"]) == len(expected)

    # a tag filter narrows the list; its own namespace's facet ignores it (self-exclusion)
    topic = facets["byTopic"][0] if facets["byTopic"] else None
    if topic is not None:
        narrowed = client.simulate_get("/api/projects", params={"q": "transit", "tag": topic["handle"]}).json
        assert narrowed["meta"]["total"] == topic["count"]
        assert narrowed["meta"]["facets"]["byTopic"] == facets["byTopic"]
        for p in narrowed["data"]:
            assert topic["handle"] in p["tags"]

    stage = body["data"][0]["stage"] if body["data"] else "testing"
    staged = client.simulate_get("/api/projects", params={"stage": stage, "perPage": "1"}).json
    assert all(p["stage"] == stage for p in staged["data"]) and staged["meta"]["perPage"] == 1


def test_detail_routes_and_soft_deleted_records(client: testing.TestClient, runtime: Runtime) -> None:
    snap = runtime.holder.current
    deleted = [p for p in snap.table("projects").by_id.values() if p.deleted_at]  # type: ignore[attr-defined]
    live = next(p for p in snap.table("projects").by_id.values() if not p.deleted_at)  # type: ignore[attr-defined]
    detail = client.simulate_get(f"/api/projects/{live.slug}").json["data"]  # type: ignore[attr-defined]
    assert detail["id"] == live.id and "members" in detail and "tags" in detail
    for p in deleted:
        assert client.simulate_get(f"/api/projects/{p.slug}").status_code == 404  # type: ignore[attr-defined]
    listed = client.simulate_get("/api/projects", params={"perPage": "100"}).json
    assert not {p.id for p in deleted} & {p["id"] for p in listed["data"]}
    person = next(iter(snap.table("people").by_id.values()))
    assert client.simulate_get(f"/api/people/{person.slug}").json["data"]["id"] == person.id  # type: ignore[attr-defined]
    tags = client.simulate_get("/api/tags").json["data"]
    assert len(tags) == len(snap.table("tags")) and all("." in t["handle"] for t in tags)


def test_bad_parameters_name_the_parameter(client: testing.TestClient) -> None:
    for params, name in [({"stage": "done"}, "stage"), ({"perPage": "101"}, "perPage"),
                         ({"page": "0"}, "page"), ({"tag": "colour.red"}, "tag")]:
        resp = client.simulate_get("/api/projects", params=params)
        assert resp.status_code == 400, params
        assert resp.json["error"]["code"] == "bad_request"
        assert resp.json["error"]["message"].startswith(f"{name}:")
    assert client.simulate_get("/api/tags", params={"namespace": "x"}).status_code == 400


def test_unknown_routes_slugs_and_methods_use_the_envelope(client: testing.TestClient) -> None:
    for path, status, code in [("/api/nope", 404, "not_found"), ("/api/projects/no-such", 404, "not_found")]:
        resp = client.simulate_get(path)
        assert resp.status_code == status and resp.json["error"]["code"] == code
        assert resp.headers["X-Request-Id"] == resp.json["error"]["traceId"]
    resp = client.simulate_put("/api/tags")
    assert resp.status_code == 405 and resp.json["error"]["code"] == "method_not_allowed"


def test_openapi_lists_public_routes_only(client: testing.TestClient) -> None:
    doc = client.simulate_get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert "/api/projects" in doc["paths"] and "/api/health" in doc["paths"]
    assert not [p for p in doc["paths"] if p.startswith("/api/_internal")]


def test_metrics_and_health(client: testing.TestClient, runtime: Runtime) -> None:
    text = client.simulate_get("/metrics").text
    assert 'hotreload_records{sheet="projects"}' in text
    health = client.simulate_get("/api/health").json["data"]
    assert health["servedCommit"] == health["headCommit"] == runtime.holder.current.commit
    assert health["branch"] == "published" and health["records"]["projects"] > 0


def test_answers_from_data_name_their_commit_even_when_not_found(client: testing.TestClient, runtime: Runtime) -> None:
    """Found by the stateful model: a soft-deleted record's 404 is an answer from the
    snapshot, and must say which one."""
    snap = runtime.holder.current
    deleted = next(p for p in snap.table("projects").by_id.values() if p.deleted_at)  # type: ignore[attr-defined]
    for path in (f"/api/projects/{deleted.slug}", "/api/people/nobody", "/api/projects?stage=done"):  # type: ignore[attr-defined]
        resp = client.simulate_get(path)
        assert resp.status_code in (400, 404)
        assert resp.headers["X-Data-Commit"] == snap.commit
