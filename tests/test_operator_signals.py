"""What an operator greps and scrapes: one log vocabulary (``hot-reload``, branch,
outcome, old and new commit; ERROR for refused data), metrics for HTTP, build,
last success and pending pushes (no stray ``_created`` series), HEAD wherever
GET, and X-Data-Commit on webhook errors too."""

from __future__ import annotations

import logging

import pytest
from falcon import testing

from hotreload.service.runtime import Runtime
from tests.conftest import World, bearer, project_toml
from tests.test_reload_api import post


def test_every_webhook_log_line_speaks_the_runbooks_vocabulary(client: testing.TestClient, world: World,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hotreload.api.reload")
    old = world.origin_head()
    good = world.commit_upstream({"projects/logged.toml": project_toml("logged", "Logged")})
    post(client, {"commitHash": good}, headers=bearer())
    bad = world.commit_upstream({"projects/bad-stage.toml": project_toml("bad-stage", "B", stage="nope")})
    assert post(client, {"commitHash": bad}, headers=bearer()).status_code == 422
    lines = [r for r in caplog.records if r.name == "hotreload.api.reload"]
    ok, refused = lines[-2], lines[-1]
    assert ok.levelno == logging.INFO and refused.levelno == logging.ERROR
    for record in (ok, refused):
        text = record.getMessage()
        assert text.startswith("hot-reload: ") and " on published: " in text
        assert record.__dict__["branch"] == "published"
    assert "fast-forwarded" in ok.getMessage() and old[:12] in ok.getMessage() and good[:12] in ok.getMessage()
    assert "rebuild-failed" in refused.getMessage()


def test_a_webhook_call_that_fails_unexpectedly_is_logged_as_the_500_it_answered(
        client: testing.TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")
    monkeypatch.setattr(runtime.reloader, "reload", broken)
    caplog.set_level(logging.INFO, logger="hotreload.api.reload")
    assert post(client, {}, headers=bearer()).status_code == 500
    line = [r for r in caplog.records if r.name == "hotreload.api.reload"][-1]
    assert line.levelno == logging.ERROR and line.__dict__["status"] == 500 and line.getMessage().endswith("(500)")


def test_metrics_an_operator_needs(client: testing.TestClient, world: World) -> None:
    tip = world.commit_upstream({"projects/metered.toml": project_toml("metered", "Metered")})
    post(client, {"commitHash": tip}, headers=bearer())
    client.simulate_get("/api/projects/metered")
    text = client.simulate_get("/metrics").text
    assert 'hotreload_http_requests_total{method="GET",route="/api/projects/{slug}",status="200"} 1.0' in text
    assert "hotreload_http_request_duration_seconds_bucket" in text
    assert 'hotreload_build_info{dulwich="' in text
    stamp = next(line for line in text.splitlines() if line.startswith("hotreload_last_successful_reload"))
    assert float(stamp.split()[-1]) > 1.7e9
    assert "hotreload_push_pending 0.0" in text
    assert "_created" not in text
    assert "# HELP hotreload_push_pending" in text


@pytest.mark.parametrize("path", ["/api/health", "/api/projects", "/api/projects/nope", "/api/tags",
                                  "/metrics", "/api/openapi.json"])
def test_head_answers_wherever_get_does(client: testing.TestClient, path: str) -> None:
    get, head = client.simulate_get(path), client.simulate_head(path)
    assert head.status_code == get.status_code and head.content == b""


def test_webhook_errors_carry_the_served_commit(client: testing.TestClient, runtime: Runtime) -> None:
    for headers in ({}, bearer("n" * 40)):
        resp = post(client, {"commitHash": "abcd"}, headers=headers)
        assert resp.status_code == 401 and resp.headers["X-Data-Commit"] == runtime.holder.current.commit
    bad = post(client, raw=b"{", headers=bearer())
    assert bad.status_code == 400 and bad.headers["X-Data-Commit"] == runtime.holder.current.commit
