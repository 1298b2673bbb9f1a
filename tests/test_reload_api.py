"""The webhook contract of specs/hot-reload.md, check by check, in-process."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.service.runtime import Runtime, boot
from simulator.truth import github_signature as sign
from tests.conftest import SECRET, World, bearer, git, project_toml

URL = "/api/_internal/reload-data"


def post(client: testing.TestClient, body: object = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> testing.Result:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return client.simulate_post(URL, body=data, headers={"Content-Type": "application/json", **(headers or {})})


def error(resp: testing.Result) -> dict[str, object]:
    assert resp.json["success"] is False
    err: dict[str, object] = resp.json["error"]
    assert err["traceId"] == resp.headers["X-Request-Id"]
    return err


# -- 1-4: size, credentials, configuration ---------------------------------------

def test_oversized_body_is_413_before_anything_else(client: testing.TestClient) -> None:
    resp = post(client, raw=b"x" * (64 * 1024 + 1))
    assert resp.status_code == 413 and error(resp)["code"] == "payload_too_large"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
                                     {"X-Hub-Signature-256": "sha1=abc"}])
def test_missing_or_malformed_credentials_are_401(client: testing.TestClient, headers: dict[str, str]) -> None:
    resp = post(client, headers=headers)
    assert resp.status_code == 401
    assert error(resp) | {"traceId": None} == {"code": "unauthorized", "message": "Authentication required", "traceId": None}


def test_wrong_token_gets_the_same_generic_401(client: testing.TestClient) -> None:
    resp = post(client, headers=bearer("x" * 40))
    assert resp.status_code == 401 and error(resp)["message"] == "Authentication required"
    resp = post(client, {"commitHash": "abcd"}, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert resp.status_code == 401


@pytest.fixture
def unconfigured(world: World) -> Iterator[testing.TestClient]:
    rt = boot(world.settings(reload_secret=None))
    yield testing.TestClient(create_app(rt))
    rt.close()


def test_unset_secret_is_503_but_only_for_callers_with_credentials(unconfigured: testing.TestClient) -> None:
    assert post(unconfigured).status_code == 401  # a probe without credentials cannot tell
    resp = post(unconfigured, headers=bearer())
    assert resp.status_code == 503
    assert error(resp)["message"] == "hot-reload not configured"


# -- 5: the body ------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "field"), [
    (b"{not json", "body"), (b"[1, 2]", "body"), (b'"abc"', "body"),
    (b'{"commitHash": "abcd", "extra": 1}', "extra"),
    (b'{"commitHash": 12345}', "commitHash"), (b'{"commitHash": "xyz1"}', "commitHash"),
    (b'{"commitHash": "abc"}', "commitHash"), (b'{"commitHash": "' + b"a" * 41 + b'"}', "commitHash"),
    (b'{"branch": 5}', "branch"), (b'{"branch": ""}', "branch"), (b'{"branch": "--upload-pack=x"}', "branch"),
    (b'{"branch": "a..b"}', "branch"), (b'{"branch": "a b"}', "branch"), (b'{"branch": "x.lock"}', "branch"),
    (b'{"branch": "a/.hidden"}', "branch"), (b'{"branch": "a@{1}"}', "branch"), (b'{"branch": "end/"}', "branch"),
    (b'{"branch": "' + b"b" * 201 + b'"}', "branch"),
])
def test_malformed_bodies_are_400_naming_the_field(client: testing.TestClient, raw: bytes, field: str) -> None:
    resp = post(client, raw=raw, headers=bearer())
    assert resp.status_code == 400, resp.text
    err = error(resp)
    assert err["code"] == "bad_request" and str(err["message"]).startswith(f"{field}:")


def test_other_branch_is_400_naming_both(client: testing.TestClient) -> None:
    resp = post(client, {"branch": "main"}, headers=bearer())
    assert resp.status_code == 400
    assert error(resp)["message"] == "branch: 'main' is not the served branch 'published'"


# -- 6-7: pre-check and reconcile ------------------------------------------------------

def test_prechecked_commit_skips_fetch_and_lock(client: testing.TestClient, runtime: Runtime, world: World,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    served = runtime.holder.current.commit
    runtime.reloader.remote = str(world.root / "unreachable.git")  # a fetch would fail
    for commit_hash in (served, served[:7], served.upper()):
        resp = post(client, {"commitHash": commit_hash, "branch": "published"}, headers=bearer())
        assert resp.status_code == 200
        data = resp.json["data"]
        assert data["noChanges"] is True and data["outcome"] == "in-sync" and data["head"] == served
        assert data["precheck"] is True and "durationMs" in data and "lockHeldMs" not in data
    # in the seed's words, so its runbook's grep still finds the self-trigger
    lines = [r.getMessage() for r in caplog.records if r.name == "hotreload.api.reload"]
    assert len(lines) == 3 and all(m.startswith("hot-reload short-circuit: commit already served") for m in lines)


def test_in_sync_without_body(client: testing.TestClient, runtime: Runtime) -> None:
    resp = post(client, headers=bearer())
    assert resp.status_code == 200
    data = resp.json["data"]
    assert data == {"noChanges": True, "rebuilt": False, "outcome": "in-sync",
                    "oldCommit": runtime.holder.current.commit, "newCommit": runtime.holder.current.commit,
                    "durationMs": data["durationMs"]}


def test_fast_forward_makes_the_new_project_visible(client: testing.TestClient, world: World) -> None:
    tip = world.commit_upstream({"projects/zz-tram-lines.toml": project_toml("zz-tram-lines", "Tram Lines Atlas")})
    resp = post(client, {"commitHash": tip}, headers=bearer())
    assert resp.status_code == 200
    data = resp.json["data"]
    assert data["outcome"] == "fast-forwarded" and data["rebuilt"] is True and data["noChanges"] is False
    assert data["newCommit"] == tip and data["behind"] == 1
    assert data["changes"] == {"added": 1, "modified": 0, "deleted": 0}
    assert data["lockHeldMs"] >= 0 and data["durationMs"] >= data["lockHeldMs"]
    assert world.clone_head() == tip
    detail = client.simulate_get("/api/projects/zz-tram-lines")
    assert detail.status_code == 200 and detail.headers["X-Data-Commit"] == tip
    found = client.simulate_get("/api/projects", params={"q": "tram"}).json["data"]
    assert [p["slug"] for p in found] == ["zz-tram-lines"]
    # the same call again: pre-check answers
    again = post(client, {"commitHash": tip}, headers=bearer()).json["data"]
    assert again["noChanges"] is True and again["head"] == tip


def test_fetch_failure_is_502_and_changes_nothing(client: testing.TestClient, runtime: Runtime, world: World) -> None:
    served = runtime.holder.current.commit
    runtime.reloader.remote = str(world.root / "unreachable.git")
    resp = post(client, headers=bearer())
    assert resp.status_code == 502
    err = error(resp)
    assert err["code"] == "fetch_failed" and err["details"] == {"outcome": "fetch-failed", "head": served}
    assert runtime.holder.current.commit == served == world.clone_head()
    health = client.simulate_get("/api/health").json["data"]
    assert health["lastReload"]["outcome"] == "fetch-failed" and health["lastReload"]["error"]
    assert health["status"] == "degraded"


def test_invalid_record_is_422_then_the_fix_reloads(client: testing.TestClient, runtime: Runtime, world: World) -> None:
    served = runtime.holder.current.commit
    bad = world.commit_upstream({"projects/zz-bad.toml": project_toml("zz-bad", "Bad", stage="done")})
    for _ in range(2):  # the next webhook tries again (pre-check compares with the served commit)
        resp = post(client, {"commitHash": bad}, headers=bearer())
        assert resp.status_code == 422
        err = error(resp)
        assert err["code"] == "invalid_data"
        details = err["details"]
        assert isinstance(details, dict)
        assert details["outcome"] == "rebuild-failed" and details["commit"] == bad
        assert details["path"] == "projects/zz-bad.toml" and "stage: expected one of" in details["error"]
        assert runtime.holder.current.commit == served == world.clone_head()
        assert client.simulate_get("/api/projects/zz-bad").status_code == 404
    fixed = world.commit_upstream({"projects/zz-bad.toml": project_toml("zz-bad", "Fixed", stage="testing")})
    resp = post(client, {"commitHash": fixed}, headers=bearer())
    assert resp.status_code == 200 and resp.json["data"]["behind"] == 2
    assert client.simulate_get("/api/projects/zz-bad").json["data"]["title"] == "Fixed"
    assert runtime.holder.current.commit == fixed == world.clone_head()


def test_get_is_405(client: testing.TestClient) -> None:
    assert client.simulate_get(URL, headers=bearer()).status_code == 405


# -- GitHub webhooks --------------------------------------------------------------------

def github(client: testing.TestClient, event: str, payload: object, secret: str = SECRET,
           signature: str | None = None) -> testing.Result:
    raw = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"}
    headers["X-Hub-Signature-256"] = signature if signature is not None else sign(secret, raw)
    return client.simulate_post(URL, body=raw, headers=headers)


def test_github_ping(client: testing.TestClient) -> None:
    resp = github(client, "ping", {"zen": "Keep it logically awesome."})
    assert resp.status_code == 200 and resp.json["data"] == {"pong": True}


def test_github_signature_checked_on_raw_bytes(client: testing.TestClient) -> None:
    assert github(client, "ping", {}, secret="wrong" * 10).status_code == 401
    assert github(client, "ping", {}, signature="").status_code == 401
    raw = json.dumps({"zen": "x"}).encode()
    tampered = client.simulate_post(URL, body=raw + b" ", headers={
        "X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(SECRET, raw)})
    assert tampered.status_code == 401


def test_github_push_to_served_branch_reloads_and_redelivery_is_a_no_op(client: testing.TestClient, world: World) -> None:
    tip = world.commit_upstream({"projects/zz-gh.toml": project_toml("zz-gh", "From GitHub")})
    payload = {"ref": "refs/heads/published", "before": "0" * 39 + "1", "after": tip, "deleted": False}
    resp = github(client, "push", payload)
    assert resp.status_code == 200 and resp.json["data"]["outcome"] == "fast-forwarded"
    again = github(client, "push", payload)
    assert again.status_code == 200 and again.json["data"]["noChanges"] is True


def test_github_form_encoded_payload(client: testing.TestClient, world: World) -> None:
    import urllib.parse

    tip = world.commit_upstream({"projects/zz-form.toml": project_toml("zz-form", "Form")})
    raw = urllib.parse.urlencode({"payload": json.dumps({"ref": "refs/heads/published", "after": tip})}).encode()
    resp = client.simulate_post(URL, body=raw, headers={
        "X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded",
        "X-Hub-Signature-256": sign(SECRET, raw)})
    assert resp.status_code == 200 and resp.json["data"]["newCommit"] == tip


@pytest.mark.parametrize(("event", "payload", "reason"), [
    ("push", {"ref": "refs/heads/main", "after": "a" * 40}, "not to the served branch"),
    ("push", {"ref": "refs/heads/published", "after": "0" * 40, "deleted": True}, "was deleted"),
    ("issues", {"action": "opened"}, "event 'issues' is not handled"),
])
def test_github_other_events_are_ignored_with_202(client: testing.TestClient, event: str, payload: object,
                                                  reason: str) -> None:
    resp = github(client, event, payload)
    assert resp.status_code == 202
    assert resp.json["data"]["ignored"] is True and reason in resp.json["data"]["reason"]


def gitlab(client: testing.TestClient, event: str, payload: object, token: str = SECRET) -> testing.Result:
    return client.simulate_post(URL, body=json.dumps(payload).encode(), headers={
        "X-Gitlab-Event": event, "X-Gitlab-Token": token, "Content-Type": "application/json"})


def test_gitlab_push_hook_to_the_served_branch_reloads(client: testing.TestClient, world: World) -> None:
    tip = world.commit_upstream({"projects/zz-gl.toml": project_toml("zz-gl", "From GitLab")})
    payload = {"object_kind": "push", "ref": "refs/heads/published", "before": "1" * 40, "after": tip,
               "checkout_sha": tip, "total_commits_count": 1}
    assert gitlab(client, "Push Hook", payload, token="g" * 40).status_code == 401
    resp = gitlab(client, "Push Hook", payload)
    assert resp.status_code == 200 and resp.json["data"]["outcome"] == "fast-forwarded"
    assert resp.json["data"]["newCommit"] == tip


@pytest.mark.parametrize(("event", "payload", "reason"), [
    ("Push Hook", {"ref": "refs/heads/main", "after": "a" * 40}, "not to the served branch"),
    ("Push Hook", {"ref": "refs/heads/published", "after": "0" * 40}, "was deleted"),
    ("Tag Push Hook", {"ref": "refs/tags/v1", "after": "a" * 40}, "GitLab event 'Tag Push Hook' is not handled"),
])
def test_gitlab_other_events_are_ignored_with_202(client: testing.TestClient, event: str, payload: object,
                                                  reason: str) -> None:
    resp = gitlab(client, event, payload)
    assert resp.status_code == 202 and reason in resp.json["data"]["reason"]


def test_a_generic_hmac_sender_without_a_github_event(client: testing.TestClient, world: World) -> None:
    tip = world.commit_upstream({"projects/zz-hmac.toml": project_toml("zz-hmac", "Signed")})
    raw = json.dumps({"commitHash": tip}).encode()
    resp = client.simulate_post(URL, body=raw, headers={"X-Hub-Signature-256": sign(SECRET, raw),
                                                         "Content-Type": "application/json"})
    assert resp.status_code == 200 and resp.json["data"]["newCommit"] == tip
    wrong = client.simulate_post(URL, body=raw, headers={"X-Hub-Signature-256": sign("z" * 40, raw)})
    assert wrong.status_code == 401


# -- observability -----------------------------------------------------------------------

def test_metrics_count_outcomes_and_rejections(client: testing.TestClient, world: World) -> None:
    post(client)  # 401
    tip = world.commit_upstream({"projects/zz-m.toml": project_toml("zz-m", "Metric")})
    post(client, {"commitHash": tip}, headers=bearer())
    text = client.simulate_get("/metrics").text
    assert 'hotreload_webhook_rejected_total{status="401"} 1.0' in text
    assert 'hotreload_reloads_total{outcome="fast-forwarded",trigger="webhook"} 1.0' in text
    assert "hotreload_lock_hold_seconds_bucket" in text
    # the start-up reconcile (in-sync) and the fast-forward
    assert "hotreload_reload_duration_seconds_count 2.0" in text
    assert 'unauthorized' not in text.split("hotreload_reloads_total")[1].split("\n# ")[0]


def test_one_structured_log_line_per_call_without_secrets(client: testing.TestClient, world: World,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    tip = world.commit_upstream({"projects/zz-log.toml": project_toml("zz-log", "Log")})
    resp = post(client, {"commitHash": tip}, headers={**bearer(), "X-Request-Id": "trace-abc-123"})
    lines = [r for r in caplog.records if r.name == "hotreload.api.reload"]
    assert len(lines) == 1
    line = lines[0]
    assert line.traceId == "trace-abc-123" == resp.headers["X-Request-Id"]  # type: ignore[attr-defined]
    assert line.outcome == "fast-forwarded" and line.status == 200  # type: ignore[attr-defined]
    assert all(SECRET not in (r.getMessage() + str(r.__dict__)) for r in caplog.records)


def test_git_history_untouched_by_rejected_calls(client: testing.TestClient, world: World) -> None:
    before = git("--git-dir", str(world.clone), "for-each-ref")
    post(client, {"branch": "main"}, headers=bearer())
    post(client, headers=bearer("y" * 40))
    assert git("--git-dir", str(world.clone), "for-each-ref") == before
