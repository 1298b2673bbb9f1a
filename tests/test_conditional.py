"""Conditional reads (issue #17, part 2): every data response carries an ETag naming
the served commit and the request; If-None-Match with it answers 304, no body,
before any query work; a reload changes it; caches are told to revalidate."""

from __future__ import annotations

from typing import Any

import pytest
from falcon import testing

from hotreload.api.conditional import CACHE_CONTROL, VARY, parse_etag
from hotreload.api.openapi import document
from hotreload.data.snapshot import Snapshot
from hotreload.service.runtime import Runtime
from hotreload.service.writer import SHEETS
from tests.conftest import World, bearer, project_toml


def data_reads(runtime: Runtime) -> dict[str, str]:
    """An answerable example of every data route, by its template."""
    snap = runtime.holder.current
    update: Any = next(iter(snap.table("project-updates").by_id.values()))
    updated: Any = snap.table("projects").by_id[update.project_id]
    person: Any = next(p for p in snap.table("people").by_id.values() if p.deleted_at is None)
    tag: Any = next(iter(snap.table("tags").by_id.values()))
    buzz: Any = next(b for b in snap.table("project-buzz").by_id.values()
                     if snap.table("projects").by_id[b.project_id].deleted_at is None)
    buzzed: Any = snap.table("projects").by_id[buzz.project_id]
    return {
        "/api/projects": "/api/projects?q=transit&perPage=5",
        "/api/projects/{slug}": f"/api/projects/{updated.slug}",
        "/api/people": "/api/people?perPage=5",
        "/api/people/{slug}": f"/api/people/{person.slug}",
        "/api/projects/{slug}/updates": f"/api/projects/{updated.slug}/updates",
        "/api/projects/{slug}/updates/{number}": f"/api/projects/{updated.slug}/updates/{update.number}",
        "/api/projects/{slug}/buzz": f"/api/projects/{updated.slug}/buzz",
        "/api/projects/{slug}/buzz/{buzz}": f"/api/projects/{buzzed.slug}/buzz/{buzz.slug}",
        "/api/project-updates": "/api/project-updates?perPage=5",
        "/api/project-buzz": "/api/project-buzz?since=2020-01-01",
        "/api/changes": f"/api/changes?since={snap.commit}",
        "/api/projects/{slug}/help-wanted": f"/api/projects/{updated.slug}/help-wanted",
        "/api/help-wanted": "/api/help-wanted",
        "/api/tags": "/api/tags?namespace=topic",
        "/api/tags/{handle}": f"/api/tags/{tag.handle}",
        "/api/sheets": "/api/sheets",
        "/api/sheets/{sheet}": "/api/sheets/sponsors?perPage=3",
        "/api/sheets/{sheet}/{key}": f"/api/sheets/people/{person.slug}",
    }


def get(client: testing.TestClient, url: str, method: str = "GET", **headers: str) -> testing.Result:
    path, _, query = url.partition("?")
    return client.simulate_request(method, path, query_string=query, headers=headers)


def test_every_data_route_answers_its_own_etag_with_304_and_no_body(client: testing.TestClient,
                                                                     runtime: Runtime) -> None:
    commit = runtime.holder.current.commit
    for template, url in data_reads(runtime).items():
        first = get(client, url)
        assert first.status_code == 200, url
        tag = first.headers["etag"]
        assert parse_etag(tag) is not None and parse_etag(tag).commit == commit == first.headers["x-data-commit"]
        assert first.headers["cache-control"] == CACHE_CONTROL and first.headers["vary"] == VARY
        for method in ("GET", "HEAD"):
            again = get(client, url, method, **{"If-None-Match": f'W/"nope", {tag}'})
            assert again.status_code == 304, (template, method)
            assert again.content == b"" and again.headers["etag"] == tag
            assert again.headers["x-data-commit"] == commit and again.headers["cache-control"] == CACHE_CONTROL
        assert get(client, url, **{"If-None-Match": '"' + "0" * 40 + '-0000000000000000"'}).status_code == 200


def test_a_matching_etag_is_answered_before_any_query_work(client: testing.TestClient, runtime: Runtime,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    urls = list(data_reads(runtime).values())
    tags = {url: get(client, url).headers["etag"] for url in urls}

    def no_work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a 304 read the snapshot's data")

    for name in ("cached", "page", "table", "project_by_slug", "person_by_slug", "tags_of", "slug_redirect"):
        monkeypatch.setattr(Snapshot, name, no_work)
    for url in urls:
        assert get(client, url, **{"If-None-Match": tags[url]}).status_code == 304, url
    assert get(client, urls[0]).status_code == 500  # the spy is in place: a full answer trips it


def test_a_reload_changes_every_etag(world: World, client: testing.TestClient, runtime: Runtime) -> None:
    urls = list(data_reads(runtime).values())
    before = {url: get(client, url).headers["etag"] for url in urls}
    world.commit_upstream({"projects/zz-new.toml": project_toml("zz-new", "Brand New")})
    assert client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer()).status_code == 200
    served = runtime.holder.current.commit
    for url in urls:
        after = get(client, url, **{"If-None-Match": before[url]})
        assert after.status_code == 200, url  # the old tag no longer matches
        assert parse_etag(after.headers["etag"]) == (served, parse_etag(before[url]).identity)  # type: ignore[union-attr]


def test_the_etag_names_the_request_whatever_the_order_of_its_parameters(client: testing.TestClient) -> None:
    one = get(client, "/api/projects?q=transit&perPage=5&tag=topic.transit&tag=tech.python")
    same = get(client, "/api/projects/?tag=topic.transit&perPage=5&tag=tech.python&q=transit", "HEAD")
    other = get(client, "/api/projects?q=transit&perPage=6&tag=topic.transit&tag=tech.python")
    assert one.headers["etag"] == same.headers["etag"] != other.headers["etag"]


def test_if_none_match_star_is_a_304_only_where_there_is_an_answer(client: testing.TestClient) -> None:
    star = {"If-None-Match": "*"}
    assert get(client, "/api/tags?namespace=topic", **star).status_code == 304
    assert get(client, "/api/tags?namespace=nope", **star).status_code == 400  # schemathesis found it a 304
    assert get(client, "/api/tags/topic.no-such-tag", **star).status_code == 404


def test_errors_and_service_routes_carry_no_etag(client: testing.TestClient) -> None:
    missing = get(client, "/api/projects/no-such-project")
    assert missing.status_code == 404 and "etag" not in missing.headers
    assert missing.headers["cache-control"] == CACHE_CONTROL  # never kept as it is: the record may come
    for url in ("/api/health", "/api/openapi.json", "/metrics"):
        resp = get(client, url, **{"If-None-Match": "*"})
        assert resp.status_code == 200 and "etag" not in resp.headers, url


def test_the_openapi_document_has_conditional_reads_on_exactly_the_data_routes(runtime: Runtime) -> None:
    paths = document()["paths"]
    conditional = {path for path, item in paths.items() if "304" in item.get("get", {}).get("responses", {})}
    assert conditional == set(data_reads(runtime))
    for path in conditional:
        get_ = paths[path]["get"]
        assert "If-None-Match" in [p["name"] for p in get_["parameters"]]
        assert {"ETag", "Cache-Control", "Vary"} <= set(get_["responses"]["200"]["headers"])


@pytest.mark.parametrize(("value", "parsed"), [
    ('"' + "a" * 40 + '-0123456789abcdef"', ("a" * 40, "0123456789abcdef")),
    ('W/"' + "b" * 40 + '-0123456789abcdef"', ("b" * 40, "0123456789abcdef")),
    (" " + "c" * 40 + "-0123456789abcdef ", ("c" * 40, "0123456789abcdef")),
    ('"' + "a" * 39 + '-0123456789abcdef"', None),
    ('"' + "a" * 40 + '"', None),
    ("*", None),
    ("", None),
])
def test_parse_etag_reads_back_the_commit_a_tag_names(value: str, parsed: tuple[str, str] | None) -> None:
    assert parse_etag(value) == parsed


def test_the_write_bodies_list_every_writable_field_and_no_default() -> None:
    """A PATCH leaves out the fields it keeps and sends null to remove one: a declared default
    would lead a generated client to send it, resetting a project's stage on an edit of its title."""
    schemas = document()["components"]["schemas"]
    for spec in SHEETS.values():
        name = spec.record_type.__name__
        create, update = schemas[f"{name}Create"], schemas[f"{name}Update"]
        assert set(create["properties"]) == set(update["properties"]) == set(spec.editable)
        assert set(create["required"]) == set(spec.required) and not update.get("required")
        assert update["minProperties"] == 1
        assert not [(field, schema) for body in (create, update) for field, schema in body["properties"].items()
                    if "default" in schema], name
