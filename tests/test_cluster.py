"""Several replicas of one data repository, each a real ``hotreload serve`` with
its own clone, on loopback: the webhook fan-out (``CFP_RELOAD_PEERS``), the poll
(``CFP_DATA_POLL_SECONDS``) and read-your-writes (``X-Data-Min-Commit``)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from simulator.server import ServerProcess, free_ports
from tests.conftest import WRITE_TOKEN, World, bearer, git, project_toml

URL = "/api/_internal/reload-data"
pytestmark = pytest.mark.slow


def served(server: ServerProcess) -> str:
    return str(server.get("/api/health").data["servedCommit"])


def until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` held (polled every 10 ms); fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


def start_replicas(world: World, tmp_path: Path, n: int, stack: ExitStack, peers: bool = True,
                   **env: str) -> list[ServerProcess]:
    ports = free_ports(n)
    listed = ",".join(f"127.0.0.1:{p}" for p in ports)
    servers = []
    for i, port in enumerate(ports):
        clone = tmp_path / f"replica-{i}.git"
        git("clone", "-q", "--bare", str(world.origin), str(clone))
        extra = {"CFP_DATA_REPO_PATH": str(clone), **env}
        if peers:
            extra["CFP_RELOAD_PEERS"] = listed  # every replica is on it; each skips itself
        servers.append(stack.enter_context(ServerProcess(world.env(**extra), port=port)))
    return servers


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as s:
        yield s


def test_one_webhook_reaches_three_replicas_within_a_second(world: World, tmp_path: Path,
                                                              stack: ExitStack) -> None:
    a, b, c = start_replicas(world, tmp_path, 3, stack)
    tip = world.commit_upstream({"projects/zz-fan.toml": project_toml("zz-fan", "Fan-out")})
    resp = a.request("POST", URL, {"commitHash": tip}, bearer())
    answered = time.monotonic()
    assert resp.status == 200 and resp.data["newCommit"] == tip
    assert sorted(resp.data["peers"]) == sorted(s.base.removeprefix("http://") for s in (a, b, c))  # as listed
    until(lambda: served(b) == tip and served(c) == tip, 5.0)
    lag = time.monotonic() - answered
    assert lag <= 1.0, f"peers served the new commit {lag:.2f} s after the first answer"
    for server in (b, c):  # a forwarded call is marked, and never forwarded again
        port = a.base.rsplit(":", 1)[1]
        assert f'"forwardedBy": "{socket.gethostname()}:{port}"' in server.log()
        metrics = server.get("/metrics").body.decode()
        assert 'hotreload_reloads_total{outcome="fast-forwarded",trigger="peer"} 1.0' in metrics
        assert "hotreload_peer_forwards_total{" not in metrics  # it forwarded nothing
    until(lambda: 'hotreload_peer_forwards_total{result="ok"} 2.0' in a.get("/metrics").body.decode(), 5.0)
    assert a.get("/api/projects/zz-fan").status == 200 and c.get("/api/projects/zz-fan").status == 200


def test_a_lost_webhook_is_healed_by_the_poll(world: World, tmp_path: Path, stack: ExitStack) -> None:
    replicas = start_replicas(world, tmp_path, 3, stack, peers=False, CFP_DATA_POLL_SECONDS="1")
    until(lambda: all(s.get("/api/health").data["poll"]["lastResult"] == "unchanged" for s in replicas), 10.0)
    tip = world.commit_upstream({"projects/zz-poll.toml": project_toml("zz-poll", "Polled")})
    took = until(lambda: all(served(s) == tip for s in replicas), 10.0)
    assert took <= 3.0, f"the poll took {took:.2f} s to reach every replica"
    for server in replicas:
        health = server.get("/api/health").data
        assert health["poll"]["enabled"] and health["poll"]["intervalS"] == 1.0
        metrics = server.get("/metrics").body.decode()
        assert 'hotreload_reloads_total{outcome="fast-forwarded",trigger="poll"} 1.0' in metrics
        assert 'hotreload_polls_total{result="moved"} 1.0' in metrics


def test_read_your_writes_across_replicas(world: World, tmp_path: Path, stack: ExitStack) -> None:
    """A write on one replica, then a read naming its commit on another that has not
    heard of it: that replica reloads and answers from a snapshot holding it."""
    a, b = start_replicas(world, tmp_path, 2, stack, peers=False)
    write = a.request("POST", "/api/projects", {"slug": "zz-ryw", "title": "Mine"}, bearer(WRITE_TOKEN))
    assert write.status == 201
    commit = write.commit
    assert commit is not None
    until(lambda: world.origin_head() == commit, 10.0)  # a's push daemon delivered it
    plain = b.get("/api/projects/zz-ryw")
    assert plain.status == 404  # no webhook, no poll: b does not know yet
    fresh = b.request("GET", "/api/projects/zz-ryw", headers={"X-Data-Min-Commit": commit})
    assert fresh.status == 200 and fresh.commit == commit and fresh.data["title"] == "Mine"


def test_a_commit_nobody_has_answers_503_with_retry_after(world: World, tmp_path: Path,
                                                          stack: ExitStack) -> None:
    (a,) = start_replicas(world, tmp_path, 1, stack, peers=False, CFP_DATA_MIN_COMMIT_WAIT_SECONDS="0.5")
    unknown = "0123456789abcdef" * 2 + "01234567"
    resp = a.request("GET", "/api/projects", headers={"X-Data-Min-Commit": unknown})
    assert resp.status == 503 and resp.headers["retry-after"] == "1"
    assert resp.json["error"]["details"] == {"servedCommit": served(a), "minCommit": unknown}
    assert resp.commit == served(a)
    bad = a.request("GET", "/api/projects", headers={"X-Data-Min-Commit": "abc"})
    assert bad.status == 400 and "X-Data-Min-Commit" in bad.json["error"]["message"]
    mine = a.request("GET", "/api/projects", headers={"X-Data-Min-Commit": served(a)})
    assert mine.status == 200
