"""A real ``hotreload serve`` process on a loopback port, and a tiny HTTP client.

Used by the simulator's world and by the integration tests: the service is
driven only through its CLI and HTTP, as a user would.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from dataclasses import dataclass
from typing import Any

_LISTENING = re.compile(r"on http://127\.0\.0\.1:(\d+) ")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def data(self) -> Any:
        return self.json.get("data")

    @property
    def commit(self) -> str | None:
        return self.headers.get("x-data-commit")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 301 is an answer to check, not a hop to take."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def request(base: str, method: str, path: str, body: bytes | str | dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60.0) -> Response:
    data = json.dumps(body).encode() if isinstance(body, dict) else (
        body.encode() if isinstance(body, str) else body)
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


class EventStream:
    """A subscriber to ``/api/events`` (server-sent events), read on a thread of its own:
    :meth:`next` gives each event as ``(event, id, data)`` (a comment line, such as a
    heartbeat, as ``("comment", None, text)``), in order."""

    def __init__(self, base: str, last_id: str | None = None, timeout: float = 60.0) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self._conn.request("GET", "/api/events", headers={"Last-Event-ID": last_id} if last_id else {})
        self.response = self._conn.getresponse()
        self.status = self.response.status
        self._events: queue.Queue[tuple[str, str | None, str] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        kind, event_id, data = "message", None, list[str]()
        try:
            while line := self.response.readline():
                text = line.decode().rstrip("\r\n")
                if text.startswith(":"):
                    self._events.put(("comment", None, text[1:].strip()))
                elif not text and data:
                    self._events.put((kind, event_id, "\n".join(data)))
                    kind, event_id, data = "message", None, list[str]()
                elif text:
                    name, _, value = text.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        data.append(value)
                    elif name == "event":
                        kind = value
                    elif name == "id":
                        event_id = value
        except (OSError, ValueError, http.client.HTTPException):
            pass
        self._events.put(None)  # the stream ended

    def next(self, timeout: float = 10.0, skip_comments: bool = True) -> tuple[str, str | None, str] | None:
        """The next event (None: the stream ended); raises ``queue.Empty`` after ``timeout`` s."""
        while True:
            item = self._events.get(timeout=timeout)
            if item is None or not (skip_comments and item[0] == "comment"):
                return item

    def close(self) -> None:
        if self._conn.sock is not None:
            with contextlib.suppress(OSError):
                self._conn.sock.shutdown(socket.SHUT_RDWR)  # the reading thread ends too
        self._conn.close()


def dying_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that the process gets SIGTERM when the one starting it dies
    (``setpriv --pdeathsig``, Linux's parent-death signal; ``argv`` as it is where
    ``setpriv`` is missing). A test or benchmark killed before its teardown left its
    servers running (one such server, idle at 1 GB, skewed an afternoon's benchmarks).
    Only from the main thread: the signal follows the death of the *thread* that
    started the child, and a worker thread may end while its server should live. A
    parent killed in the few milliseconds before ``setpriv`` sets the signal still
    leaves its child."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


class ServerProcess:
    """``hotreload serve --port 0``; the chosen port is read from its start-up log.
    ``python`` is the interpreter whose ``hotreload`` runs (another version's venv)."""

    def __init__(self, env: dict[str, str], threads: int = 8, port: int = 0, python: str = sys.executable) -> None:
        self.env = env
        self.python = python
        self.threads = threads
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""
        fd, self.log_path = tempfile.mkstemp(prefix="hotreload-serve-", suffix=".log")
        os.close(fd)
        # readable after stop() (a test reads what the server said), removed with this
        # object or at exit: a test run used to leave ~60 logs in /tmp
        weakref.finalize(self, _remove, self.log_path)

    def start(self, timeout: float = 120.0) -> ServerProcess:
        full_env = {**os.environ, **self.env}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._offset = self._log.tell()
        self.proc = subprocess.Popen(
            dying_with_parent([self.python, "-m", "hotreload.cli", "serve", "--host", "127.0.0.1",
                               "--port", str(self.port), "--threads", str(self.threads)]),
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            match = _LISTENING.search(text)
            if match:
                self.base = f"http://127.0.0.1:{match.group(1)}"
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"hotreload serve exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"hotreload serve did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            return fh.read().decode(errors="replace")

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None, timeout: float = 60.0) -> Response:
        return request(self.base, method, path, body, headers, timeout)

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> ServerProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (for replicas that must know each other's
    port before they start)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class GitDaemon:
    """``git daemon`` on a free loopback port, serving (and accepting pushes to) ``root``
    (``env``: more of git's environment, such as ``GIT_CONFIG_*`` settings; ``access_hook``: a
    program git runs before serving each request, which refuses it by exiting non-zero)."""

    def __init__(self, root: str | os.PathLike[str], port: int | None = None,
                 env: dict[str, str] | None = None, access_hook: str | None = None) -> None:
        if port is None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            sock.close()
        self.port = port
        hook = [f"--access-hook={access_hook}", "--max-connections=0"] if access_hook else []
        self.proc = subprocess.Popen(
            dying_with_parent(["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", *hook,
                               f"--base-path={root}", "--listen=127.0.0.1", f"--port={self.port}", str(root)]),
            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("git daemon did not start")

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
