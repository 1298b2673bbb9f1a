"""Failed authentication is rate limited per client address: 429 with
Retry-After after the limit, no token checked meanwhile; correct calls never
count; the limit lifts when the window passes."""

from __future__ import annotations

from falcon import testing

from hotreload.api.app import create_app
from hotreload.api.ratelimit import FailureLimiter
from hotreload.service.runtime import boot
from tests.conftest import SECRET, WRITE_TOKEN, World, bearer
from tests.test_reload_api import URL


def test_the_limiter_blocks_after_the_limit_and_lifts_after_the_window() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, 60.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.record_failure("a")
    assert limiter.retry_after("a") == 60.0 and limiter.retry_after("b") is None
    now[0] += 59.5
    assert limiter.retry_after("a") == 0.5
    now[0] += 1
    assert limiter.retry_after("a") is None
    assert FailureLimiter(0).retry_after("a") is None  # 0 disables


def test_failed_tokens_get_429_then_nothing_is_checked_until_the_window_passes(world: World) -> None:
    rt = boot(world.settings(auth_failures_per_minute=5, upkeep_seconds=0))
    try:
        client = testing.TestClient(create_app(rt))
        wrong = {"Authorization": "Bearer " + "n" * 40, "Content-Type": "application/json"}
        statuses = [client.simulate_post(URL, body=b"", headers=wrong).status_code for _ in range(7)]
        assert statuses == [401] * 5 + [429] * 2
        limited = client.simulate_post(URL, body=b"", headers={**bearer(), "Content-Type": "application/json"})
        assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.json["error"]["code"] == "too_many_requests"
        # the write API shares the limit: it is the same address guessing
        write = client.simulate_post("/api/projects", json={"slug": "x-y", "title": "X"}, headers=bearer(WRITE_TOKEN))
        assert write.status_code == 429
        assert b"hotreload_auth_rate_limited_total 4.0" in client.simulate_get("/metrics").content
        # reads are never limited
        assert client.simulate_get("/api/projects").status_code == 200
    finally:
        rt.close()


def test_correct_calls_never_count(world: World) -> None:
    rt = boot(world.settings(auth_failures_per_minute=2, upkeep_seconds=0))
    try:
        client = testing.TestClient(create_app(rt))
        ok = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
        assert all(client.simulate_post(URL, body=b"", headers=ok).status_code == 200 for _ in range(20))
    finally:
        rt.close()
