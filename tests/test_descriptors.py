"""File descriptors stay bounded, and a server whose listening loop fails says so
(decision 66).

Found by the OpenAPI fuzz: every read asking for a commit not served yet
(``X-Data-Min-Commit``) starts a reload on a thread of its own; each such thread
opened the clone's pack files again and kept them until the process stopped, so
after ~3,000 requests a socket's descriptor number passed 1023, waitress's
``select()`` raised, and the service exited with status 0 and no word."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import threading

import pytest

from hotreload import cli, server
from hotreload.git.repo import GitRepo
from simulator.server import ServerProcess
from tests.conftest import World


def _open_files(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_threads_that_come_and_go_do_not_open_the_packs_again(world: World) -> None:
    repo = GitRepo(str(world.clone))
    head = repo.branch_commit("published")
    assert head is not None

    def read() -> None:  # what a reload thread does first: ask the store about commits
        assert repo.is_ancestor(head, head)
        assert not repo.has_object(os.urandom(20).hex())

    read()
    before = _open_files()
    for _ in range(100):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    assert _open_files() <= before + 4
    repo.close()


def test_reads_asking_for_commits_not_served_leave_no_descriptors_behind(world: World) -> None:
    with ServerProcess(world.env(CFP_DATA_MIN_COMMIT_WAIT_SECONDS="0.02")) as server:
        assert server.proc is not None
        host, port = server.base.split("//")[1].split(":")
        statuses: list[int] = []

        def reader() -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            for _ in range(40):
                conn.request("GET", "/api/projects", headers={"X-Data-Min-Commit": os.urandom(20).hex()})
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
            conn.close()

        readers = [threading.Thread(target=reader) for _ in range(4)]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join()
        assert statuses == [503] * 160  # a commit nobody has: "not served here yet"
        assert _open_files(server.proc.pid) < 60  # 4 per reload thread before: over 600


class _FailingServer:
    effective_port = "1"

    def run(self) -> None:
        raise ValueError("filedescriptor out of range in select()")

    def stop(self, drain_s: float = 0.0) -> None:
        pass


def test_a_listening_loop_that_fails_exits_non_zero_and_says_why(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(server, "make_server", lambda *args, **kwargs: _FailingServer())
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with caplog.at_level(logging.ERROR, logger="hotreload"):
            status = cli._serve(world.settings(), "127.0.0.1", 0, 2)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert status == 1
    assert any("listening loop failed: filedescriptor out of range" in r.getMessage() for r in caplog.records)
