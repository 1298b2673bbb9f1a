"""The HTTP server's own behaviour (hotreload/server.py): half-sent requests cannot
hold connections, idle keep-alive connections are left to the idle timeout, its own
refusals speak JSON, and a stop closes idle connections at once instead of waiting
for them; against a real ``hotreload serve``, 150 half-open connections do not keep a
reader or the webhook waiting."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hotreload.server import MAX_BODY, Gate, Server, make_server
from simulator.server import ServerProcess
from tests.conftest import World, bearer
from tests.gitservers import wait_for

URL = "/api/_internal/reload-data"


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture(scope="module")
def served() -> Iterator[Server]:
    gate = Gate()
    gate.app = hello
    server = make_server(gate, "127.0.0.1", 0, threads=2, connection_limit=50, idle_timeout_s=30)
    server.head_timeout_s = 0.5
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(5)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (it reads EOF), or None if it did not."""
    sock.settimeout(seconds)
    started = time.monotonic()
    try:
        data = sock.recv(1024)
    except TimeoutError:
        return None
    return time.monotonic() - started if data == b"" else None


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(server.effective_port)), timeout=5)


def test_a_half_sent_request_head_is_closed_after_the_head_timeout(served: Server) -> None:
    with connect(served) as half, connect(served) as silent:
        half.sendall(b"GET /api/health HT")
        took = closed_within(half, 5)
        assert took is not None and took < 0.5 + 2.5  # the head timeout, first seen and closed at 1 s ticks
        assert closed_within(silent, 1) is not None  # connected and never sent a byte: the same


def test_a_dribbled_head_is_closed_too(served: Server) -> None:
    with connect(served) as slow:
        started = time.monotonic()
        for byte in b"GET /api/health HTTP/1.1\r\nHost: x\r\n":
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                break
            if closed_within(slow, 0.2) is not None:
                break
        assert time.monotonic() - started < 3  # a byte every 0.2 s never became a request


def test_an_idle_keep_alive_connection_is_left_to_the_idle_timeout(served: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", int(served.effective_port), timeout=5)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"ok"
    assert closed_within(conn.sock, 1.7) is None  # past the head timeout and a maintenance tick: still open
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"ok"
    conn.close()


def test_the_servers_own_refusals_use_the_json_envelope(served: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", int(served.effective_port), timeout=5)
    conn.request("POST", URL, body=b"x" * (MAX_BODY + 1), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 413 and resp.getheader("Content-Type") == "application/json"
    assert body["success"] is False and body["error"]["code"] == "payload_too_large" and body["error"]["traceId"]


def test_the_body_limit_is_the_largest_routes() -> None:
    from hotreload.api.app import MAX_REQUEST_BODY

    assert MAX_BODY == MAX_REQUEST_BODY


def test_a_stop_closes_idle_connections_and_lets_a_request_in_flight_finish() -> None:
    release = threading.Event()

    def slow(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        release.wait(5)
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    gate = Gate()
    gate.app = slow
    server = make_server(gate, "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    port = int(server.effective_port)
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    busy = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    busy.request("GET", "/slow")
    idle.connect()
    wait_for(lambda: len(server.active_channels) == 2)  # both accepted before the stop
    server.stop()
    gate.stopping = True
    assert closed_within(idle.sock, 3) is not None  # idle: closed at once, not at the idle timeout
    release.set()
    resp = busy.getresponse()
    assert resp.read() == b"done" and resp.getheader("Connection") == "close"
    thread.join(5)
    assert not thread.is_alive()  # run() returned: nothing keeps the process up


@pytest.mark.slow
def test_150_half_open_connections_do_not_keep_a_reader_or_the_webhook_waiting(world: World) -> None:
    with ServerProcess(world.env()) as server:
        port = int(server.base.rsplit(":", 1)[1])
        held = []
        try:
            for _ in range(150):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(b"GET /api/projects HTTP/1.1\r\nHo")  # half a request head, then nothing
                held.append(sock)
            for path, method, headers in [("/api/projects?perPage=5", "GET", {}),
                                          (URL, "POST", bearer())]:
                started = time.monotonic()
                resp = server.request(method, path, {} if method == "POST" else None, headers, timeout=10)
                took = time.monotonic() - started
                assert resp.status == 200 and took < 1.0, (path, resp.status, took)
            assert all(closed_within(s, 0.01) is None for s in held)  # still held open meanwhile
        finally:
            for sock in held:
                sock.close()
