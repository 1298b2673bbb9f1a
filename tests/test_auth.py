"""Authentication as clients expect: a case-insensitive scheme, a challenge on
401, and secret rotation (the previous secret accepted beside the new one, for
bearer tokens and GitHub signatures alike)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.service.runtime import Runtime, boot
from simulator.truth import github_signature
from tests.conftest import SECRET, World
from tests.test_reload_api import URL

PREVIOUS = "p" * 40


@pytest.fixture
def rotating(world: World) -> Iterator[testing.TestClient]:
    rt: Runtime = boot(world.settings(reload_secret_previous=PREVIOUS, upkeep_seconds=0))
    yield testing.TestClient(create_app(rt))
    rt.close()


def call(client: testing.TestClient, headers: dict[str, str], raw: bytes = b"") -> testing.Result:
    return client.simulate_post(URL, body=raw, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "BeArEr"])
def test_the_bearer_scheme_is_case_insensitive(client: testing.TestClient, scheme: str) -> None:
    assert call(client, {"Authorization": f"{scheme} {SECRET}"}).status_code == 200


def test_a_401_says_which_scheme_to_use(client: testing.TestClient) -> None:
    resp = call(client, {"Authorization": "Bearer " + "n" * 40})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert call(client, {}).headers["WWW-Authenticate"].startswith("Bearer")


def test_both_secrets_work_during_a_rotation(rotating: testing.TestClient) -> None:
    for secret in (SECRET, PREVIOUS):
        assert call(rotating, {"Authorization": f"Bearer {secret}"}).status_code == 200
        raw = json.dumps({"zen": "rotate"}).encode()
        signed = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": github_signature(secret, raw)}
        assert call(rotating, signed, raw).json["data"] == {"pong": True}
    assert call(rotating, {"Authorization": "Bearer " + "n" * 40}).status_code == 401


def test_without_a_previous_secret_only_the_current_one_works(client: testing.TestClient) -> None:
    assert call(client, {"Authorization": f"Bearer {PREVIOUS}"}).status_code == 401
