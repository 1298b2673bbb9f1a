"""Failed authentication is rate limited per client: its failures answer 429 with
Retry-After after the limit; correct calls are never refused and never count; the
client is the peer, or the address a trusted proxy names; the limit lifts when the
window passes."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.api.ratelimit import FailureLimiter, client_address
from hotreload.service.runtime import Runtime, boot
from tests.conftest import SECRET, WRITE_TOKEN, World, bearer
from tests.test_reload_api import URL

WRONG = {"Authorization": "Bearer " + "n" * 40, "Content-Type": "application/json"}
RIGHT = {**bearer(), "Content-Type": "application/json"}


@pytest.fixture
def limited(world: World) -> Iterator[Runtime]:
    rt = boot(world.settings(auth_failures_per_minute=5, upkeep_seconds=0,
                             trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),)))
    yield rt
    rt.close()


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


def test_a_guesser_gets_429_but_a_correct_caller_at_the_same_address_is_served(limited: Runtime) -> None:
    client = testing.TestClient(create_app(limited))
    statuses = [client.simulate_post(URL, body=b"", headers=WRONG).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    refused = client.simulate_post(URL, body=b"", headers=WRONG)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json["error"]["code"] == "too_many_requests" and "WWW-Authenticate" not in refused.headers
    # the correct webhook and a correct write get through from the very same address
    assert client.simulate_post(URL, body=b"", headers=RIGHT).status_code == 200
    write = client.simulate_post("/api/projects", json={"slug": "x-y", "title": "X"}, headers=bearer(WRITE_TOKEN))
    assert write.status_code == 201
    # a wrong write token from there is refused like a wrong webhook secret
    assert client.simulate_post("/api/projects", json={"slug": "x-z", "title": "X"},
                                headers=bearer("w" * 31 + "x")).status_code == 429
    metrics = client.simulate_get("/metrics").text
    assert "hotreload_auth_rate_limited_total 4.0" in metrics
    # the webhook's own counter and log line say what the client was answered (3 of its 8 were 429s)
    assert 'hotreload_webhook_rejected_total{status="429"} 3.0' in metrics
    assert 'hotreload_webhook_rejected_total{status="401"} 5.0' in metrics
    assert client.simulate_get("/api/projects").status_code == 200  # reads are never limited


def test_the_webhook_logs_the_429_its_caller_was_answered(limited: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    client = testing.TestClient(create_app(limited))
    caplog.set_level(logging.INFO, logger="hotreload.api.reload")
    for _ in range(6):
        answered = client.simulate_post(URL, body=b"", headers=WRONG).status_code
    lines = [r for r in caplog.records if r.name == "hotreload.api.reload"]
    assert answered == 429 and [r.__dict__["status"] for r in lines] == [401] * 5 + [429]
    assert lines[-1].getMessage().endswith("(429)")


def test_behind_a_trusted_proxy_each_client_is_limited_on_its_own(limited: Runtime,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    client = testing.TestClient(create_app(limited))
    guesser = {**WRONG, "X-Forwarded-For": "203.0.113.9"}
    proxy = {"remote_addr": "10.1.2.3"}
    assert [client.simulate_post(URL, body=b"", headers=guesser, **proxy).status_code
            for _ in range(6)] == [401] * 5 + [429]
    # another client behind the same proxy: its wrong token is a plain 401, its right one a 200
    other = {"X-Forwarded-For": "198.51.100.4, 10.9.9.9"}
    caplog.set_level(logging.INFO)
    assert client.simulate_post(URL, body=b"", headers={**WRONG, **other}, **proxy).status_code == 401
    assert client.simulate_post(URL, body=b"", headers={**RIGHT, **other}, **proxy).status_code == 200
    assert [r.client for r in caplog.records if r.name == "hotreload.api.reload"] == ["198.51.100.4"] * 2  # type: ignore[attr-defined]


def test_without_trust_forwarding_headers_change_nothing(world: World) -> None:
    rt = boot(world.settings(auth_failures_per_minute=3, upkeep_seconds=0))
    try:
        client = testing.TestClient(create_app(rt))
        # a different X-Forwarded-For on every call: still one client, the peer
        statuses = [client.simulate_post(URL, body=b"", headers={**WRONG, "X-Forwarded-For": f"203.0.113.{i}"},
                                         remote_addr="10.1.2.3").status_code for i in range(5)]
        assert statuses == [401] * 3 + [429] * 2
    finally:
        rt.close()


@pytest.mark.parametrize(("peer", "forwarded", "xff", "client"), [
    ("10.0.0.5", None, "203.0.113.7", "203.0.113.7"),
    ("10.0.0.5", None, "203.0.113.7, 198.51.100.2, 10.3.3.3", "198.51.100.2"),  # rightmost untrusted
    ("10.0.0.5", 'for="[2001:db8::7]:4711";proto=https, for=10.2.2.2', None, "2001:db8::7"),
    ("10.0.0.5", 'for="192.0.2.60:8080"', "203.0.113.7", "192.0.2.60"),  # Forwarded wins
    ("10.0.0.5", "for=unknown", None, "10.0.0.5"),  # nothing believable: the peer
    ("10.0.0.5", None, "10.4.4.4", "10.0.0.5"),  # only proxies: the peer
    ("192.0.2.1", None, "203.0.113.7", "192.0.2.1"),  # not a trusted peer
])
def test_the_client_address(peer: str, forwarded: str | None, xff: str | None, client: str) -> None:
    assert client_address(peer, forwarded, xff, [ipaddress.ip_network("10.0.0.0/8")]) == client


def test_correct_calls_never_count(world: World) -> None:
    rt = boot(world.settings(auth_failures_per_minute=2, upkeep_seconds=0))
    try:
        client = testing.TestClient(create_app(rt))
        ok = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
        assert all(client.simulate_post(URL, body=b"", headers=ok).status_code == 200 for _ in range(20))
    finally:
        rt.close()
