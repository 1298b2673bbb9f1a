"""Downstream (issue #22): the change feed against ``git diff --name-status`` over random
histories, the event stream (order, resumption, heartbeats, slow subscribers, the subscriber
bound, and no worker thread held by an idle stream on a real server), and signed
notifications (signature, retries after a receiver comes back, never on the reload's path)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import itertools
import json
import random
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.config import ConfigError, Settings
from hotreload.metrics import Metrics
from hotreload.service.events import EventHub, Subscriber
from hotreload.service.notify import Notifier
from hotreload.service.runtime import Runtime, boot
from simulator.server import EventStream, ServerProcess
from tests.conftest import SECRET, World, bearer, git, project_toml

NOTIFY_SECRET = "n" * 40


def reload(client: testing.TestClient) -> dict[str, Any]:
    resp = client.simulate_post("/api/_internal/reload-data", json={}, headers=bearer())
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json["data"]
    return data


def git_changes(world: World, since: str, to: str) -> dict[str, str]:
    """``git diff --name-status`` between two commits of the clone: path -> added/changed/removed."""
    out = git("--git-dir", str(world.clone), "diff", "--name-status", "-z", "--no-renames", since, to).split("\0")
    words = {"A": "added", "M": "changed", "D": "removed"}
    return {path: words[status] for status, path in zip(out[0::2], out[1::2], strict=False) if status}


def whole_feed(client: testing.TestClient, since: str, per_page: int, **params: str) -> list[dict[str, Any]]:
    """Every page of the feed from ``since``, following each page's ``next`` link."""
    resp = client.simulate_get("/api/changes", params={"since": since, "perPage": str(per_page), **params})
    entries: list[dict[str, Any]] = []
    links: set[str] = set()
    while True:
        assert resp.status_code == 200, resp.text
        entries += resp.json["data"]
        link = resp.json["meta"]["next"]
        if link is None:
            return entries
        assert link not in links, f"the feed sends {link} again: its pages would never end"
        links.add(link)
        path, _, query = link.partition("?")
        resp = client.simulate_get(path, query_string=query)


def random_change(world: World, rng: random.Random) -> dict[str, str | None]:
    """An outside author's commit: new projects, edited titles, deleted updates and buzz,
    files outside every sheet."""
    pick = rng.choice(("add", "edit", "delete", "other", "several"))
    files: dict[str, str | None] = {}
    for _ in range(rng.randint(2, 6) if pick == "several" else 1):
        kind = rng.choice(("add", "edit", "delete", "other")) if pick == "several" else pick
        if kind == "add":
            slug = f"new-{rng.randrange(10**9)}"
            files[f"projects/{slug}.toml"] = project_toml(slug, f"New {slug}")
        elif kind == "edit":
            path = rng.choice(sorted((world.work / "projects").glob("*.toml")))
            files[f"projects/{path.name}"] = path.read_text().replace("title = ", f"title = \"{rng.random()}\"\n#", 1)
        elif kind == "delete":
            sheet = rng.choice(("project-updates", "project-buzz"))
            found = sorted((world.work / sheet).rglob("*.toml"))
            if found:
                files[str(rng.choice(found).relative_to(world.work))] = None
        else:
            files[rng.choice(("README.md", "notes/a.txt", "projects/readme.txt"))] = f"{rng.random()}\n"
    return files


@pytest.mark.parametrize("seed", [1, 2])
def test_the_feed_lists_exactly_what_git_diff_lists_over_random_histories(world: World, client: testing.TestClient,
                                                                         seed: int) -> None:
    rng = random.Random(seed)
    roots = {s["root"]: s["name"] for s in client.simulate_get("/api/sheets").json["data"]}
    commits = [world.clone_head()]
    for step in range(8):
        commits.append(world.commit_upstream(random_change(world, rng) or {"README.md": f"{step}\n"}))
        if rng.random() < 0.6 or step == 7:
            answer = reload(client)
            served = answer["newCommit"]
            # the commit served before (the last swap's own diff, kept), and others (a tree diff)
            for since in {answer["oldCommit"], commits[0], commits[-2], rng.choice(commits)}:
                expected = git_changes(world, since, served)
                entries = whole_feed(client, since, rng.randint(1, 5))
                assert [e["path"] for e in entries] == sorted(expected)  # each once, in path order
                assert {e["path"]: e["change"] for e in entries} == expected
                for e in entries:
                    root = e["path"].split("/")[0]
                    owned = e["path"].endswith(".toml") and root in roots
                    assert e["sheet"] == (roots[root] if owned else None)
                    assert e["key"] == (e["path"][len(root) + 1:-5] if owned else None)


def test_a_one_record_reload_lists_that_record_with_its_json_as_the_read_api_renders_it(
        world: World, client: testing.TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    before = world.clone_head()
    world.commit_upstream({"projects/zz-feed.toml": project_toml("zz-feed", "Feed Me")})
    after = reload(client)["newCommit"]

    def no_tree_diff(*args: object) -> None:
        raise AssertionError("the last swap's diff is kept: no tree is diffed again")

    monkeypatch.setattr(runtime.repo, "diff_trees", no_tree_diff)
    resp = client.simulate_get("/api/changes", params={"since": before, "include": "records"})
    assert resp.status_code == 200 and resp.headers["x-data-commit"] == after and resp.headers["etag"]
    assert resp.json["data"] == [{
        "path": "projects/zz-feed.toml", "change": "added", "sheet": "projects", "key": "zz-feed",
        "record": client.simulate_get("/api/sheets/projects/zz-feed").json["data"]["data"]}]
    assert resp.json["meta"] == {"from": before, "to": after, "commits": [after], "commitCount": 1,
                                 "perPage": 100, "next": None}
    assert client.simulate_get("/api/changes", params={"since": before[:10]}).json["meta"]["from"] == before
    monkeypatch.undo()
    assert client.simulate_get("/api/changes", params={"since": after}).json["data"] == []


def test_paging_goes_past_file_names_that_are_not_utf8(world: World, client: testing.TestClient) -> None:
    """The cursor is the path's bytes: a name that is not UTF-8 is neither repeated nor skipped."""
    since = world.clone_head()
    git("pull", "-q", "--rebase", "origin", "published", cwd=world.work)
    (world.work / "notes").mkdir(exist_ok=True)
    for name in (b"\xff.txt", b"\xff\xfe.txt", b"plain.txt"):
        with open(bytes(world.work / "notes") + b"/" + name, "wb") as fh:
            fh.write(b"x\n")
    git("add", "-A", cwd=world.work)
    git("commit", "-q", "-m", "names that are not UTF-8", cwd=world.work)
    git("push", "-q", "origin", "HEAD:published", cwd=world.work)
    reload(client)
    paths = [e["path"] for e in whole_feed(client, since, 1)]
    assert paths == ["notes/plain.txt", "notes/\\xff.txt", "notes/\\xff\\xfe.txt"], paths


def test_a_page_keeps_its_range_while_a_reload_moves_the_served_commit(world: World,
                                                                       client: testing.TestClient) -> None:
    before = world.clone_head()
    world.commit_upstream({f"projects/p-{i}.toml": project_toml(f"p-{i}", f"P {i}") for i in range(5)})
    to = reload(client)["newCommit"]
    first = client.simulate_get("/api/changes", params={"since": before, "perPage": "2"}).json
    world.commit_upstream({"projects/p-late.toml": project_toml("p-late", "Late")})
    reload(client)
    paths, page = [e["path"] for e in first["data"]], first
    while page["meta"]["next"]:
        link = urllib.parse.urlsplit(page["meta"]["next"])
        page = client.simulate_get(link.path, query_string=link.query).json
        assert page["meta"]["to"] == to
        paths += [e["path"] for e in page["data"]]
    assert paths == [f"projects/p-{i}.toml" for i in range(5)]  # not p-late: the range is the first page's


def test_the_feed_answers_404_for_an_unknown_commit_409_after_a_rewrite_and_400_for_bad_input(
        world: World, client: testing.TestClient) -> None:
    before = world.clone_head()
    leaked = world.commit_upstream({"projects/leaked.toml": project_toml("leaked", "Leaked")})
    reload(client)
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before)  # a force-push rewind
    assert reload(client)["outcome"] == "remote-rewritten"
    gone = client.simulate_get("/api/changes", params={"since": leaked})
    assert gone.status_code == 409 and gone.json["error"]["code"] == "resync_required"
    assert "/api/sheets" in gone.json["error"]["message"] and gone.json["error"]["details"]["servedCommit"] == before
    assert client.simulate_get("/api/changes", params={"since": "ab" * 20}).status_code == 404
    blob = git("--git-dir", str(world.clone), "rev-parse", f"{before}:README.md")
    assert client.simulate_get("/api/changes", params={"since": blob}).status_code == 404  # not a commit
    for field, params in (("since", {}), ("since", {"since": "xyz"}), ("perPage", {"since": before, "perPage": "0"}),
                          ("include", {"since": before, "include": "all"}), ("to", {"since": before, "to": "nope"})):
        resp = client.simulate_get("/api/changes", params=params)
        assert resp.status_code == 400 and resp.json["error"]["details"]["field"] == field


# -- the event hub ----------------------------------------------------------------------


def frames(subscriber: Subscriber) -> list[str]:
    return [f for f in subscriber.take().decode().split("\n\n") if f]


def woken(subscriber: Subscriber) -> threading.Event:
    """Set whenever something is offered to ``subscriber`` (as the server's loop is woken)."""
    offered = threading.Event()
    subscriber.wake = offered.set
    return offered


def test_events_come_in_swap_order_and_resume_after_a_last_event_id(world: World, client: testing.TestClient,
                                                                    runtime: Runtime) -> None:
    hub = runtime.events
    listener, start = hub.subscribe(None, runtime.holder.current.commit)
    offered = woken(listener)
    assert start == b"retry: 3000\n\n"
    served = [runtime.holder.current.commit]
    for i in range(3):
        world.commit_upstream({f"projects/ev-{i}.toml": project_toml(f"ev-{i}", f"Ev {i}")})
        served.append(reload(client)["newCommit"])
    written = client.simulate_post("/api/projects", json={"slug": "ev-written", "title": "Written"},
                                   headers=bearer("w" * 32))
    served.append(written.headers["x-data-commit"])
    deadline = time.monotonic() + 10
    got: list[str] = []
    while len(got) < 4 and time.monotonic() < deadline:
        offered.wait(0.1)
        offered.clear()
        got += [f for f in frames(listener) if not f.startswith(":")]
    events = [dict(line.split(": ", 1) for line in f.split("\n")) for f in got]
    assert [e["id"] for e in events] == served[1:] and [e["event"] for e in events] == ["reload"] * 3 + ["write"]
    payloads = [json.loads(e["data"]) for e in events]
    assert [(p["from"], p["to"]) for p in payloads] == list(itertools.pairwise(served))
    assert payloads[0]["outcome"] == "fast-forwarded" and payloads[3]["outcome"] == "committed"
    assert payloads[0]["counts"] == {"projects": {"added": 1, "changed": 0, "removed": 0}}
    # resuming: after an id, the events after it; after the commit before the first kept event, all of them
    _, resumed = hub.subscribe(served[2], served[-1])
    assert resumed == b"retry: 3000\n\n" + "".join(f + "\n\n" for f in got[2:]).encode()
    _, everything = hub.subscribe(served[0], served[-1])
    assert everything.count(b"\nevent: ") == 4
    _, unknown = hub.subscribe("ab" * 20, served[-1])
    assert b"event: catch-up\n" in unknown and f"/api/changes?since={'ab' * 20}".encode() in unknown


def test_a_stream_opened_just_after_a_swap_starts_with_that_swaps_event(world: World, client: testing.TestClient,
                                                                        runtime: Runtime) -> None:
    """/api/events reads the served commit, then subscribes: a swap handled by the hub in between
    was offered to no one, so the new stream starts with it (with or without Last-Event-ID)."""
    hub = runtime.events
    read_by_the_request = runtime.holder.current.commit
    watcher, _ = hub.subscribe(None, read_by_the_request)
    offered = woken(watcher)
    world.commit_upstream({"projects/ev-race.toml": project_toml("ev-race", "Race")})
    swapped = reload(client)["newCommit"]
    assert offered.wait(10)  # the hub has handled the swap
    for last_id in (None, read_by_the_request):
        _, start = hub.subscribe(last_id, read_by_the_request)
        assert f"id: {swapped}\n".encode() in start, (last_id, start)


@pytest.mark.slow
def test_a_server_stopped_with_a_stream_open_exits_cleanly(world: World) -> None:
    """The listening loop and its wake-up pipe close first; closing the streams after must not
    write to that pipe (its fd may be reused), nor fail the rest of the shutdown."""
    server = ServerProcess(world.env()).start()
    stream = EventStream(server.base)
    try:
        assert stream.status == 200
        server.stop()
        assert server.proc.returncode == 0 and "Traceback" not in server.log(), server.log()[-3000:]
    finally:
        stream.close()


def test_each_acknowledged_write_is_one_event_chained_to_the_served_commit(world: World) -> None:
    """CFP_WRITE_ACK=remote pushes before it serves (issue #21): its swaps are events too."""
    runtime = boot(world.settings(write_ack="remote"))
    try:
        client = testing.TestClient(create_app(runtime))
        listener, _ = runtime.events.subscribe(None, runtime.holder.current.commit)
        offered = woken(listener)
        served = [runtime.holder.current.commit]
        for slug in ("acked-1", "acked-2"):
            written = client.simulate_post("/api/projects", json={"slug": slug, "title": slug}, headers=bearer("w" * 32))
            assert written.status_code == 201, written.text
            served.append(written.headers["x-data-commit"])
        got: list[str] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            offered.wait(0.1)
            offered.clear()
            got += [f for f in frames(listener) if not f.startswith(":")]
        events = [dict(line.split(": ", 1) for line in f.split("\n")) for f in got]
        assert [(e["event"], e["id"]) for e in events] == [("write", served[1]), ("write", served[2])]
        assert [(json.loads(e["data"])["from"], json.loads(e["data"])["to"]) for e in events] == list(
            itertools.pairwise(served))
        assert git("--git-dir", str(world.origin), "rev-parse", "published").strip() == served[2]  # acknowledged
    finally:
        runtime.close()


def test_a_slow_subscriber_is_dropped_and_the_bound_on_subscribers_holds(runtime: Runtime) -> None:
    metrics = Metrics()
    hub = EventHub(metrics, max_subscribers=2, queue_bytes=100, heartbeat_s=0.02)
    try:
        slow, _ = hub.subscribe(None, "a" * 40)
        deadline = time.monotonic() + 10
        while not slow.closed and time.monotonic() < deadline:  # heartbeats pile up unread
            time.sleep(0.01)
        assert slow.closed and metrics.stream_dropped._value.get() == 1
        first, _ = hub.subscribe(None, "a" * 40)
        beat = woken(first)
        second, _ = hub.subscribe(None, "a" * 40)
        with pytest.raises(Exception, match="2 event streams are open"):
            hub.subscribe(None, "a" * 40)
        assert beat.wait(5) and frames(first) == [": heartbeat"]
        second.close()
        hub.subscribe(None, "a" * 40)  # a closed one makes room
    finally:
        hub.close()


def test_the_stream_is_refused_by_a_server_that_would_hold_a_thread_for_it(client: testing.TestClient) -> None:
    """Falcon's test client, like any WSGI server but ``hotreload serve``, cannot carry a stream."""
    resp = client.simulate_get("/api/events")
    assert resp.status_code == 501 and "hotreload serve" in resp.json["error"]["message"]
    assert client.simulate_get("/api/events", headers={"Last-Event-ID": "nope"}).status_code == 400


@pytest.mark.slow
def test_idle_streams_hold_no_worker_thread_on_a_real_server(world: World) -> None:
    """Two worker threads, twenty open streams: readers are still answered, and every
    stream gets the next event, heartbeats keep coming (a stream held a worker thread each
    before: the first two would have taken both)."""
    with ServerProcess(world.env(), threads=2) as server:
        streams = [EventStream(server.base) for _ in range(20)]
        try:
            assert all(s.status == 200 for s in streams)
            for _ in range(5):
                assert server.request("GET", "/api/projects?perPage=1", timeout=5).status == 200
            commit = world.commit_upstream({"projects/sse.toml": project_toml("sse", "Streamed")})
            webhook = server.request("POST", "/api/_internal/reload-data", {"commitHash": commit},
                                     {"Authorization": f"Bearer {SECRET}"})
            assert webhook.status == 200
            for stream in streams:
                kind, event_id, data = stream.next(timeout=10)  # type: ignore[misc]
                assert (kind, event_id, json.loads(data)["to"]) == ("reload", commit, commit)
            late = EventStream(server.base, last_id=json.loads(data)["from"])
            assert late.next(timeout=10)[1] == commit  # type: ignore[index]
            late.close()
        finally:
            for stream in streams:
                stream.close()


# -- notifications --------------------------------------------------------------------


class Receiver:
    """A webhook receiver on a loopback port: keeps every POST it gets; ``status`` is what it answers."""

    def __init__(self, port: int = 0, status: int = 204, gate: threading.Event | None = None) -> None:
        received: list[tuple[dict[str, str], bytes]] = []
        self.received, self.status = received, status
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if gate is not None:  # held until the test opens it
                    gate.wait(30)
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=x"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def test_every_receiver_gets_each_swap_signed_and_a_held_one_never_delays_a_reload(
        world: World, receivers: list[Receiver]) -> None:
    gate = threading.Event()
    receivers += [Receiver(), Receiver(gate=gate)]
    runtime = boot(world.settings(notify_urls=tuple(r.url for r in receivers), notify_secret=NOTIFY_SECRET))
    try:
        client = testing.TestClient(create_app(runtime))
        world.commit_upstream({"projects/hooked.toml": project_toml("hooked", "Hooked")})
        answer = reload(client)
        assert receivers[1].received == []  # the reload answered while its notification is held at the gate
        gate.set()
        for receiver in receivers:
            headers, body = receiver.wait(1)[0]
            signature = hmac.new(NOTIFY_SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["x-hotreload-signature-256"] == f"sha256={signature}"
            assert headers["x-hotreload-event"] == "reload" and headers["x-hotreload-commit"] == answer["newCommit"]
            assert uuid.UUID(headers["x-hotreload-delivery"])
            payload = json.loads(body)
            assert (payload["from"], payload["to"]) == (answer["oldCommit"], answer["newCommit"])
        assert receivers[0].received[0][1] == receivers[1].received[0][1]  # the same payload to all
        deadline = time.monotonic() + 10  # a delivery leaves the queue once its answer is read
        while any(r["pending"] for r in runtime.notifier.status()) and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)
        health = client.simulate_get("/api/health").json["data"]["notify"]
        assert [r["pending"] for r in health["receivers"]] == [0, 0] and "token" not in json.dumps(health)
        assert health["receivers"][1]["lastDeliveredAt"] and health["receivers"][1]["lastError"] is None
    finally:
        runtime.close()


def test_a_receiver_that_is_down_gets_every_delivery_in_order_once_it_is_back(runtime: Runtime,
                                                                            receivers: list[Receiver]) -> None:
    down = Receiver(status=503)
    receivers.append(down)
    metrics = Metrics()
    notifier = Notifier((down.url,), NOTIFY_SECRET, 5.0, metrics, backoff_s=0.05, backoff_cap_s=0.2)
    hub = EventHub(metrics, 1, heartbeat_s=60)
    hub.listeners.append(notifier.put)
    try:
        snap = runtime.holder.current
        for _ in range(3):
            hub.publish("reload", "fast-forwarded", snap, snap)
        down.wait(3)  # refused (503) and retried
        deadline = time.monotonic() + 10  # the receiver has the request before the notifier has its answer
        while metrics.notifications.labels("failed")._value.get() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert metrics.notifications.labels("failed")._value.get() >= 3
        assert notifier.status()[0]["lastError"] and notifier.status()[0]["pending"] == 3
        refused = len(down.received)
        down.status = 200
        got = down.wait(refused + 3)
        deliveries = [headers["x-hotreload-delivery"] for headers, _ in got]
        assert len(got) == refused + 3 and len(set(deliveries[refused:])) == 3
        assert set(deliveries[:refused]) == {deliveries[refused]}  # every retry was the first delivery, again
        deadline = time.monotonic() + 10  # the receiver has the request before the notifier has its answer
        while notifier.status()[0]["pending"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert notifier.status()[0]["pending"] == 0 and notifier.status()[0]["lastError"] is None
        assert metrics.notifications.labels("delivered")._value.get() == 3
    finally:
        hub.close()
        notifier.close()


@pytest.mark.parametrize(("env", "names"), [
    ({"CFP_NOTIFY_URLS": "https://x.example.org/h"}, "CFP_NOTIFY_SECRET"),
    ({"CFP_NOTIFY_URLS": "https://x.example.org/h", "CFP_NOTIFY_SECRET": "short"}, "CFP_NOTIFY_SECRET"),
    ({"CFP_NOTIFY_URLS": "ftp://x.example.org/h", "CFP_NOTIFY_SECRET": NOTIFY_SECRET}, "CFP_NOTIFY_URLS"),
    ({"CFP_NOTIFY_URLS": "http://[::1/h", "CFP_NOTIFY_SECRET": NOTIFY_SECRET}, "CFP_NOTIFY_URLS"),
    ({"CFP_EVENTS_MAX_SUBSCRIBERS": "0"}, "CFP_EVENTS_MAX_SUBSCRIBERS"),
])
def test_notification_and_stream_settings_are_checked_at_start(tmp_path: Path, env: dict[str, str],
                                                              names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env({"CFP_DATA_REPO_PATH": str(tmp_path), **env})


def test_the_openapi_document_has_the_feed_and_the_stream_as_text_event_stream() -> None:
    from hotreload.api.openapi import document

    paths = document()["paths"]
    events = paths["/api/events"]["get"]
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert "304" not in events["responses"] and events["responses"]["503"]
    changes = paths["/api/changes"]["get"]
    assert {"200", "304", "400", "404", "409"} <= set(changes["responses"])
    assert [p["name"] for p in changes["parameters"] if p.get("required")] == ["since"]


def test_a_swap_of_more_files_than_are_kept_is_answered_by_the_tree_diff(
        world: World, client: testing.TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    import hotreload.data.snapshot as snapshot_module

    monkeypatch.setattr(snapshot_module, "KEPT_FILES", 2)
    before = world.clone_head()
    world.commit_upstream({f"projects/many-{i}.toml": project_toml(f"many-{i}", f"Many {i}") for i in range(3)})
    after = reload(client)["newCommit"]
    assert runtime.holder.current.changes.files is None
    entries = whole_feed(client, before, 2)
    assert {e["path"]: e["change"] for e in entries} == git_changes(world, before, after)
