"""A write changes only the fields it names: every other key of the stored TOML,
known to this service or not (a newer app's field, arrays, tables), keeps its
value, and the file keeps its comments; and whatever text a field holds (TOML
syntax, control characters, any Unicode) is stored as exactly that text."""

from __future__ import annotations

import tomllib

import pytest
from falcon import testing

from hotreload.service.runtime import Runtime
from tests.conftest import WRITE_TOKEN, World, bearer, git
from tests.test_reload_api import post

STORED = '''# kept by hand: do not reformat
id = "4f1c2d3e-0000-4000-8000-000000000001"
slug = "rich-record"
title = 'Rich Record'
repoUrl = "https://example.org/rich"          # a field this service does not know
contributors = ["ada", "grace"]
links = {docs = "https://example.org/docs", chat = "#rich"}
createdAt = "2024-01-01T00:00:00Z"
updatedAt = "2024-01-01T00:00:00Z"

[extra]
budget = 1200
notes = """multi
line"""
'''


def stored(world: World) -> str:
    return git("--git-dir", str(world.clone), "show", "published:projects/rich-record.toml")


@pytest.mark.parametrize(("method", "body", "changed"), [
    ("PATCH", {"title": "Richer Record"}, {"title": "Richer Record"}),
    ("DELETE", None, {}),
])
def test_a_write_keeps_every_key_it_does_not_name(client: testing.TestClient, runtime: Runtime, world: World,
                                                  method: str, body: dict[str, str] | None,
                                                  changed: dict[str, str]) -> None:
    tip = world.commit_upstream({"projects/rich-record.toml": STORED})
    assert post(client, {"commitHash": tip}, headers=bearer()).status_code == 200
    before = tomllib.loads(STORED)
    resp = client.simulate_request(method, "/api/projects/rich-record", json=body,
                                   headers=bearer(WRITE_TOKEN))
    assert resp.status_code == 200, resp.json
    text = stored(world)
    after = tomllib.loads(text)
    touched = set(changed) | {"updatedAt"} | ({"deletedAt"} if method == "DELETE" else set())
    assert {k: v for k, v in after.items() if k not in touched} == \
           {k: v for k, v in before.items() if k not in touched}
    for key, value in changed.items():
        assert after[key] == value
    assert after["updatedAt"] != before["updatedAt"]
    assert ("deletedAt" in after) == (method == "DELETE")
    assert "# kept by hand: do not reformat" in text and "# a field this service does not know" in text


INJECTIONS = {
    "double quotes": 'he said "hi" and "" and \\"',
    "single quotes": "it's '' and '''",
    "triple quotes": 'a """ b """',
    "a string closed then a table": 'x"""\n[extra]\nbudget = 1\n"""',
    "a table header": "[table]",
    "an array of tables": "[[projects]]\nslug = 'evil'",
    "a key injected": 'x"\nslug = "evil"\ntitle = "',
    "a comment": "# not a comment",
    "newlines": "one\ntwo\n\nthree\n",
    "CRLF and a lone CR": "one\r\ntwo\rthree",
    "backslashes": "C:\\path\\ and a trailing \\",
    "escapes spelled out": "\\n \\u0041 \\U0001F600 \\x41",
    "control characters": "tab\tbell\x07 backspace\x08 ff\x0c esc\x1b unit\x1f del\x7f",
    "unicode": "café ☃ 😀 عربى \u202eRTL\u202c \u200bzero-width \u2028line \ufeffbom \U0010FFFD",
    "long": "word " * 40,  # 200 characters: the most a title holds
    "empty": "",
    "NUL": "a\x00b",
}


@pytest.mark.parametrize("case", list(INJECTIONS))
def test_any_text_round_trips_through_a_write_and_a_read(client: testing.TestClient, world: World, case: str) -> None:
    """Whatever a field holds, it is stored as TOML that means exactly it (tomllib, not
    this service, reads the file back), read back as it was written, and changes no
    other key: by a create (``to_toml``) and by an edit of the stored file (tomlkit)."""
    value = INJECTIONS[case]
    created = client.simulate_post("/api/projects", json={"slug": "zz-inject", "title": "Plain", "summary": value},
                                   headers=bearer(WRITE_TOKEN))
    assert created.status_code == 201, created.json
    edited = client.simulate_patch("/api/projects/zz-inject", json={"title": value or "T", "overview": value},
                                   headers=bearer(WRITE_TOKEN))
    assert edited.status_code == 200, edited.json
    stored = tomllib.loads(git("--git-dir", str(world.clone), "show", "published:projects/zz-inject.toml"))
    expected = {"slug": "zz-inject", "title": value or "T", "summary": value, "overview": value}
    assert {k: stored[k] for k in expected} == expected
    assert set(stored) == {*expected, "id", "stage", "featured", "createdAt", "updatedAt"}
    read = client.simulate_get("/api/projects/zz-inject").json["data"]
    assert {k: read[k] for k in expected} == expected
