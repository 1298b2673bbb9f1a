"""A write changes only the fields it names: every other key of the stored TOML,
known to this service or not (a newer app's field, arrays, tables), keeps its
value, and the file keeps its comments."""

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
