"""Every reach into dulwich's internals, in one place.

Each reach names what it uses, why dulwich's public API does not serve, and the
change upstream that would retire it (specs/network.md lists them).
``tests/test_compat.py`` checks each against the installed dulwich and fails
loudly, naming the reach, when dulwich changes what it relies on.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable
from contextlib import suppress

from dulwich.client import TCPGitClient
from dulwich.protocol import DEFAULT_GIT_PROTOCOL_VERSION_FETCH, DEFAULT_GIT_PROTOCOL_VERSION_SEND, Protocol


class TimedTCPGitClient(TCPGitClient):
    """The reach: ``TCPGitClient._connect`` (and the ``_host``, ``_port``,
    ``_remote_path_encoding`` and ``_report_activity`` it reads). dulwich's git://
    client connects and reads with no timeout at all: a daemon that accepts and never
    answers held a fetch forever. This one connects with ``timeout_s``, waits at most
    that long for each read, and hands the socket to ``on_socket`` (the deadline shuts
    it down when the operation's time is up); the request line is dulwich's.
    Upstream: a ``timeout`` argument, passed to ``socket.create_connection``."""

    timeout_s: float = 30.0
    on_socket: Callable[[socket.socket], None] = staticmethod(lambda sock: None)

    def _connect(self, cmd: bytes, path: str | bytes,
                 protocol_version: int | None = None) -> tuple[Protocol, Callable[[], bool], None]:
        if not isinstance(path, bytes):
            path = path.encode(self._remote_path_encoding)
        sock = socket.create_connection((self._host, self._port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.on_socket(sock)
        rfile, wfile = sock.makefile("rb", -1), sock.makefile("wb", 0)

        def close() -> None:
            rfile.close()
            wfile.close()
            sock.close()

        def shutdown_write() -> None:
            wfile.flush()
            with suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        def can_read() -> bool:
            poller = select.poll()  # not select(): it fails past descriptor 1023
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))

        proto = Protocol(rfile.read, wfile.write, close, report_activity=self._report_activity,
                         shutdown_write=shutdown_write)
        if path.startswith(b"/~"):
            path = path[1:]
        if cmd == b"upload-pack":
            self.protocol_version = protocol_version or DEFAULT_GIT_PROTOCOL_VERSION_FETCH
        else:
            self.protocol_version = DEFAULT_GIT_PROTOCOL_VERSION_SEND
        version = b"\0\0version=%d\0" % self.protocol_version if (
            cmd == b"upload-pack" and self.protocol_version == 2) else b""
        proto.send_cmd(b"git-" + cmd, path, b"host=" + self._host.encode("ascii") + version)
        return proto, can_read, None
