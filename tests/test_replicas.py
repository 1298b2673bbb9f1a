"""The pieces of running several replicas, in process: peer resolution and
self-recognition, the poll's decisions, and read-your-writes' bookkeeping."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from falcon import testing
from prometheus_client import generate_latest

from hotreload.api.app import create_app
from hotreload.api.freshness import FETCH_INTERVAL_S
from hotreload.git.repo import GitRepo, rewrite_ref, tracking_ref
from hotreload.metrics import Metrics
from hotreload.service import reloader as reloader_module
from hotreload.service.peers import FORWARDED_HEADER, Peer, PeerNotifier, is_local_address, resolve
from hotreload.service.runtime import Runtime, boot
from simulator.truth import github_signature as sign
from tests.conftest import SECRET, World, git, project_toml


def test_resolve_gives_every_address_once() -> None:
    peers = resolve([("localhost", 8080), ("127.0.0.1", 8080), ("127.0.0.1", 8081)])
    assert Peer("127.0.0.1", 8080) in peers and Peer("127.0.0.1", 8081) in peers
    assert len(peers) == len(set(peers))
    assert str(Peer("::1", 80)) == "[::1]:80"


def test_a_replica_recognises_itself_by_an_address_it_owns_and_its_port() -> None:
    assert is_local_address("127.0.0.1")
    assert not is_local_address("192.0.2.1")  # TEST-NET-1: documentation only, never ours
    entries = [("127.0.0.1", 8080), ("127.0.0.1", 8081), ("192.0.2.1", 8080)]
    notifier = PeerNotifier(entries, SECRET, Metrics(), own_port=8080,
                            resolver=lambda e: [Peer(h, p) for h, p in e])
    try:
        assert [str(p) for p in notifier.others()] == ["127.0.0.1:8081", "192.0.2.1:8080"]
    finally:
        notifier.close()


class _Recorder(BaseHTTPRequestHandler):
    calls: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append((dict(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        type(self).arrived.set()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def peer() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.calls, _Recorder.arrived = [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_forward_is_the_same_body_freshly_signed_and_marked(peer: int) -> None:
    metrics = Metrics()
    notifier = PeerNotifier([("127.0.0.1", peer)], SECRET, metrics, own_port=1, me="replica-0:8080")
    body = b'{"commitHash": "abcdef0"}'
    try:
        names = notifier.forward(body, {"X-GitHub-Event": "push", "Content-Type": "application/json",
                                        "Authorization": "Bearer not-passed-on"}, "trace-1234")
        assert names == [f"127.0.0.1:{peer}"]
        assert _Recorder.arrived.wait(5)
    finally:
        notifier.close()
    headers, got = _Recorder.calls[0]
    assert got == body
    assert headers["X-Hub-Signature-256"] == sign(SECRET, body)
    assert headers[FORWARDED_HEADER] == "replica-0:8080" and headers["X-GitHub-Event"] == "push"
    assert headers["X-Request-Id"] == "trace-1234" and "Authorization" not in headers


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.01)


def unresolved(metrics: Metrics) -> bool:
    return 'hotreload_peer_forwards_total{result="unresolved"} 1.0' in generate_latest(metrics.registry).decode()


def test_a_name_that_does_not_resolve_skips_the_fan_out_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    def fail(entries: Sequence[tuple[str, int]]) -> list[Peer]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    metrics = Metrics()
    notifier = PeerNotifier([("peers.invalid", 8080)], SECRET, metrics, own_port=8080, resolver=fail)
    try:
        assert notifier.forward(b"", {}) == ["peers.invalid:8080"]
        until(lambda: unresolved(metrics))
    finally:
        notifier.close()
    assert any("cannot resolve peers.invalid:8080" in r.getMessage() for r in caplog.records)


def test_the_webhook_answers_while_the_peers_names_are_still_resolving(world: World) -> None:
    """A resolver that blocks (a DNS outage under ndots:5 takes seconds per name): the
    webhook answers, reloaded, without waiting for it; the fan-out gives up after its timeout."""
    resolving, release = threading.Event(), threading.Event()

    def blocked(entries: Sequence[tuple[str, int]]) -> list[Peer]:
        resolving.set()
        release.wait(30)
        return []

    runtime = boot(world.settings())
    runtime.peers = PeerNotifier([("peers.example", 8080)], SECRET, runtime.metrics, own_port=8080,
                                 resolver=blocked, resolve_timeout_s=0.2)
    client = testing.TestClient(create_app(runtime))
    answers: list[testing.Result] = []
    tip = world.commit_upstream({"projects/zz-peers.toml": project_toml("zz-peers", "Peers")})
    caller = threading.Thread(target=lambda: answers.append(client.simulate_post(
        "/api/_internal/reload-data", json={"commitHash": tip}, headers={"Authorization": f"Bearer {SECRET}"})))
    try:
        caller.start()
        caller.join(10)
        assert answers and not release.is_set(), "the webhook waited for the peers' DNS"
        assert answers[0].status_code == 200 and answers[0].json["data"]["newCommit"] == tip
        assert answers[0].json["data"]["peers"] == ["peers.example:8080"]
        assert resolving.wait(5)  # resolved after all, off the request thread
        until(lambda: unresolved(runtime.metrics))  # and given up on after 0.2 s
    finally:
        release.set()
        caller.join()
        runtime.close()


@pytest.fixture
def rt(world: World) -> Iterator[Runtime]:
    runtime = boot(world.settings(poll_seconds=3600.0))  # a poller, driven by hand here
    yield runtime
    runtime.close()


def test_a_poll_reloads_only_when_the_remote_tip_moved(rt: Runtime, world: World) -> None:
    poller = rt.poller
    assert poller is not None
    fetches = []
    fetch = rt.repo.fetch_branch
    rt.repo.fetch_branch = lambda *a: fetches.append(a) or fetch(*a)  # type: ignore[method-assign]
    assert poller.poll_once() == "unchanged" and fetches == []  # refs only: nothing fetched
    tip = world.commit_upstream({"projects/zz-polled.toml": project_toml("zz-polled", "Polled")})
    assert poller.poll_once() == "moved" and len(fetches) == 1
    assert rt.holder.current.commit == tip
    assert poller.poll_once() == "unchanged" and len(fetches) == 1
    assert poller.status().last_result == "unchanged" and poller.status().last_error is None


def test_a_tip_that_does_not_build_is_not_refetched_every_interval(rt: Runtime, world: World) -> None:
    poller = rt.poller
    assert poller is not None
    served = rt.holder.current.commit
    world.commit_upstream({"projects/zz-bad.toml": "title = 'no slug, no id'\n"})
    assert poller.poll_once() == "error"
    assert rt.holder.current.commit == served and rt.reloader.last is not None
    assert rt.reloader.last.outcome == "rebuild-failed"
    assert poller.poll_once() == "unchanged"  # a fix is the next move of the branch


def test_a_poll_reloads_a_tip_fetched_but_not_served(rt: Runtime, world: World) -> None:
    # a write's check fetch, or a reload that failed after its fetch, leaves the tracking ref at the
    # remote's tip and the served commit behind it: the poll must still serve that tip
    poller = rt.poller
    assert poller is not None
    served = rt.holder.current.commit
    tip = world.commit_upstream({"projects/zz-fetched.toml": project_toml("zz-fetched", "Fetched")})
    assert rt.repo.fetch_branch(rt.remote, "published") == tip  # fetched only: nothing served
    assert rt.holder.current.commit == served
    assert poller.poll_once() == "moved"
    assert rt.holder.current.commit == tip == rt.repo.branch_commit("published")
    assert poller.poll_once() == "unchanged"


def test_a_poll_retries_a_reload_that_failed_after_its_fetch(rt: Runtime, world: World,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    poller = rt.poller
    assert poller is not None
    served = rt.holder.current.commit
    tip = world.commit_upstream({"projects/zz-retried.toml": project_toml("zz-retried", "Retried")})
    build = reloader_module.build

    def failing_build(*args: object, **kwargs: object) -> object:
        raise OSError("a pack could not be read")  # anything but invalid data, after the fetch

    monkeypatch.setattr(reloader_module, "build", failing_build)
    assert poller.poll_once() == "error"
    assert rt.holder.current.commit == served and rt.repo.resolve(tracking_ref("published")) == tip
    monkeypatch.setattr(reloader_module, "build", build)
    assert poller.poll_once() == "moved"
    assert rt.holder.current.commit == tip


def test_a_rewrite_fetched_by_a_reload_that_failed_is_still_a_rewrite_for_the_next(
        rt: Runtime, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # the remote drops a commit (a force-push to remove data) and moves on; the reload that fetches
    # it fails after its fetch: the next reload (the poll's, one interval later) must still see the
    # rewrite, not replay the dropped commit onto the new tip as a local one and push it back
    poller = rt.poller
    assert poller is not None
    before = world.origin_head()
    dropped = world.commit_upstream({"projects/zz-dropped.toml": project_toml("zz-dropped", "Dropped")})
    assert poller.poll_once() == "moved" and rt.holder.current.commit == dropped
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before, dropped)
    git("fetch", "-q", "origin", cwd=world.work)
    git("reset", "-q", "--hard", "origin/published", cwd=world.work)
    tip = world.commit_upstream({"projects/zz-after.toml": project_toml("zz-after", "After")})
    build = reloader_module.build

    def failing_build(*args: object, **kwargs: object) -> object:
        raise OSError("a pack could not be read")  # anything, after the fetch

    monkeypatch.setattr(reloader_module, "build", failing_build)
    assert poller.poll_once() == "error"
    monkeypatch.setattr(reloader_module, "build", build)
    assert poller.poll_once() == "moved"
    assert rt.reloader.last is not None and rt.reloader.last.outcome == "remote-rewritten"
    assert rt.holder.current.commit == tip == world.origin_head()  # nothing pushed back
    assert "projects/zz-dropped.toml" not in git("--git-dir", str(world.origin), "ls-tree", "-r", "--name-only", tip)
    assert poller.poll_once() == "unchanged"


def test_a_rewrite_to_a_tip_that_does_not_build_is_not_refetched_every_interval(
        rt: Runtime, world: World) -> None:
    poller = rt.poller
    assert poller is not None
    before = world.origin_head()
    dropped = world.commit_upstream({"projects/zz-dropped.toml": project_toml("zz-dropped", "Dropped")})
    assert poller.poll_once() == "moved"
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before, dropped)
    git("fetch", "-q", "origin", cwd=world.work)
    git("reset", "-q", "--hard", "origin/published", cwd=world.work)
    world.commit_upstream({"projects/zz-bad.toml": "title = 'no slug, no id'\n"})
    assert poller.poll_once() == "error"
    assert rt.reloader.last is not None and rt.reloader.last.outcome == "rebuild-failed"
    assert poller.poll_once() == "unchanged"  # a fix is the next move of the branch
    fixed = world.commit_upstream({"projects/zz-bad.toml": None})
    assert poller.poll_once() == "moved"
    assert rt.reloader.last.outcome == "remote-rewritten"
    assert rt.holder.current.commit == fixed == world.origin_head()  # the dropped commit stays dropped


def test_a_rewrite_fetched_just_before_a_kill_is_still_a_rewrite_at_the_next_start(world: World) -> None:
    before = world.origin_head()
    dropped = world.commit_upstream({"projects/zz-dropped.toml": project_toml("zz-dropped", "Dropped")})
    first = boot(world.settings())
    assert first.holder.current.commit == dropped
    first.close()
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before, dropped)
    git("fetch", "-q", "origin", cwd=world.work)
    git("reset", "-q", "--hard", "origin/published", cwd=world.work)
    tip = world.commit_upstream({"projects/zz-after.toml": project_toml("zz-after", "After")})
    # a reload's fetch, then SIGKILL before its swap: the tracking ref is at the new tip
    fetched = GitRepo(str(world.clone))
    assert fetched.fetch_branch(str(world.origin), "published") == tip
    assert fetched.resolve(tracking_ref("published")) == tip and fetched.resolve(rewrite_ref("published")) == dropped
    fetched.close()
    runtime = boot(world.settings())
    try:
        assert runtime.holder.current.commit == tip == world.origin_head()  # nothing pushed back
        assert runtime.repo.resolve(rewrite_ref("published")) is None  # handled: the marker goes
    finally:
        runtime.close()


def test_unpushed_local_commits_are_not_a_move_for_the_poll(rt: Runtime, world: World) -> None:
    poller = rt.poller
    assert poller is not None and rt.push_daemon is not None
    rt.push_daemon.stop()  # the commit stays local: the remote is behind the served commit
    rt.writer.create("people", {"slug": "zz-local", "fullName": "Local Only"}, "/api/people")
    assert rt.repo.resolve(tracking_ref("published")) == world.origin_head() != rt.holder.current.commit
    fetches = []
    fetch = rt.repo.fetch_branch
    rt.repo.fetch_branch = lambda *a: fetches.append(a) or fetch(*a)  # type: ignore[method-assign]
    assert poller.poll_once() == "unchanged" and fetches == []  # delivering them is the push daemon's job


def test_a_poll_of_an_unreachable_remote_reports_and_recovers(rt: Runtime, world: World) -> None:
    poller = rt.poller
    assert poller is not None
    away = world.root / "away.git"
    world.origin.rename(away)
    try:
        assert poller.poll_once() == "error"
        assert "origin.git" in (poller.status().last_error or "")
    finally:
        away.rename(world.origin)
    assert poller.poll_once() == "unchanged" and poller.status().last_error is None


def min_commit_reloads(client: testing.TestClient) -> float:
    metrics = client.simulate_get("/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("hotreload_reloads_total{") and 'trigger="min-commit"' in line)


def test_reads_naming_unknown_commits_cannot_make_a_fetch_each(rt: Runtime) -> None:
    """40 GETs with 40 random commit ids the remote never had: a bounded number of
    reloads (one per interval), not 40; every read still answers (503, Retry-After)."""
    client = testing.TestClient(create_app(rt))
    rng = random.Random(32)
    started = time.monotonic()
    for _ in range(40):
        resp = client.simulate_get("/api/projects", headers={"X-Data-Min-Commit": f"{rng.getrandbits(160):040x}"})
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    elapsed = time.monotonic() - started
    assert 1 <= min_commit_reloads(client) <= 1 + elapsed / FETCH_INTERVAL_S, elapsed


def test_min_commit_waits_hold_at_most_a_quarter_of_the_worker_threads(world: World) -> None:
    """With the remote slow, 8 reads naming 8 unknown commits on 8 threads: 2 wait for the
    one reload; the other 6 answer 503 with Retry-After at once, while it still runs."""
    runtime = boot(world.settings(min_commit_wait_seconds=30.0))
    client = testing.TestClient(create_app(runtime, threads=8))
    fetching, release = threading.Event(), threading.Event()
    fetch = runtime.repo.fetch_branch

    def slow_fetch(*args: object) -> str | None:
        fetching.set()
        release.wait(30)
        return fetch(*args)  # type: ignore[arg-type]

    runtime.repo.fetch_branch = slow_fetch  # type: ignore[method-assign]
    answers: list[testing.Result] = []

    def read(i: int) -> None:
        answers.append(client.simulate_get("/api/people", headers={"X-Data-Min-Commit": f"{i:040x}"}))

    readers = [threading.Thread(target=read, args=(i + 1,)) for i in range(8)]
    try:
        for reader in readers:
            reader.start()
        # The 6 may answer before the reload's thread reaches its fetch; wait for both.
        until(lambda: len(answers) == 6 and fetching.is_set())
        assert len(answers) == 6  # the 2 waiters are still held by the fetch
        assert all(a.status_code == 503 and a.headers["Retry-After"] == "1" for a in answers)
    finally:
        release.set()
        for reader in readers:
            reader.join()
        runtime.close()
    assert len(answers) == 8 and all(a.status_code == 503 for a in answers)
    assert min_commit_reloads(client) == 1
