"""No request can make a 500: wrong types, lone surrogates, deep JSON, odd digits,
trailing newlines and bad content types are 4xx answers naming the field, and
nothing is committed."""

from __future__ import annotations

import json

import pytest
from falcon import testing

from hotreload.data.sheets import Sheet, tree_path_problem
from hotreload.service.runtime import Runtime
from tests.conftest import SECRET, WRITE_TOKEN, World, bearer
from tests.test_reload_api import github, post

W = bearer(WRITE_TOKEN)


def write(client: testing.TestClient, method: str, path: str, raw: bytes,
          content_type: str = "application/json") -> testing.Result:
    return client.simulate_request(method, path, body=raw, headers={**W, "Content-Type": content_type})


@pytest.mark.parametrize(("method", "path", "raw", "status", "field"), [
    ("POST", "/api/projects", b'{"slug": ["a"], "title": "T"}', 422, "slug"),
    ("POST", "/api/projects", b'{"slug": {"a": 1}, "title": "T"}', 422, "slug"),
    ("PATCH", "/api/projects/x", b'{"slug": ["a"]}', 422, "slug"),
    ("POST", "/api/projects", b'{"slug": "lone", "title": "\\ud800"}', 422, "title"),
    ("POST", "/api/people", b'{"slug": "dupe\\n", "fullName": "D"}', 422, "slug"),
    ("POST", "/api/projects", b'{"slug": "deep", "title": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "body"),
    ("POST", "/api/projects", b'{"slug": "deep", "title": ' + b"[" * 40 + b"]" * 40 + b"}", 400, "body"),
])
def test_bad_write_input_is_a_4xx_naming_the_field_and_commits_nothing(
        client: testing.TestClient, runtime: Runtime, world: World,
        method: str, path: str, raw: bytes, status: int, field: str) -> None:
    head = world.clone_head()
    resp = write(client, method, path, raw)
    assert resp.status_code == status, resp.json
    assert resp.json["error"]["message"].startswith(field), resp.json
    assert world.clone_head() == head


def test_a_write_that_is_not_json_is_415(client: testing.TestClient, world: World) -> None:
    head = world.clone_head()
    resp = write(client, "POST", "/api/projects", b'{"slug": "plain", "title": "P"}', "text/plain")
    assert resp.status_code == 415 and resp.json["error"]["code"] == "unsupported_media_type"
    assert world.clone_head() == head
    ok = write(client, "POST", "/api/projects", b'{"slug": "plain", "title": "P"}', "application/json; charset=utf-8")
    assert ok.status_code == 201


@pytest.mark.parametrize("query", ["page=%C2%B2", "perPage=%E2%91%A0", "page=" + "9" * 5000, "page=-1", "page=1%0A"])
def test_numeric_query_parameters_are_parsed_strictly(client: testing.TestClient, query: str) -> None:
    resp = client.simulate_get("/api/projects", query_string=query)
    assert resp.status_code == 400, resp.text


def test_deep_json_on_the_webhook_and_a_signed_github_push_is_a_400(client: testing.TestClient) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    assert post(client, raw=deep, headers=bearer()).status_code == 400
    payload = json.loads(b'{"ref": "refs/heads/published", "after": "' + b"a" * 40 + b'", "x": '
                         + b"[" * 100 + b"]" * 100 + b"}")
    assert github(client, "push", payload, secret=SECRET).status_code == 400


def test_a_commit_hash_with_a_trailing_newline_is_refused(client: testing.TestClient) -> None:
    resp = post(client, {"commitHash": "abcd\n"}, headers=bearer())
    assert resp.status_code == 400 and resp.json["error"]["message"].startswith("commitHash")


def test_rendered_record_paths_follow_gits_tree_entry_rules() -> None:
    sheet = Sheet("projects", "projects", "${{ title }}/record")  # a free-text field as a folder
    for title, bad in [("Fine Title", False), ("..", True), (".", True), ("", True), (".GIT", True),
                       ("a/../b", True), ("a//b", True), ("a\0b", True)]:
        path = sheet.record_path({"title": title})
        assert path is not None
        assert (tree_path_problem(path) is not None) == bad, (title, path)
