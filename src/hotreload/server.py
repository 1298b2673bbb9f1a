"""The HTTP server: waitress, answering from the moment the port is bound, and the
settings that keep slow or idle clients from taking it down.

* Until the data is loaded (another thread), every request gets 503 ``starting: <step>``.
* At most ``CFP_HTTP_CONNECTION_LIMIT`` connections; one idle for
  ``CFP_HTTP_IDLE_TIMEOUT_SECONDS``, or that has not sent a whole request head within
  :data:`HEAD_TIMEOUT_S` (:meth:`Server.maintenance`), is closed.
* waitress's own refusals (413, 400) carry the JSON error envelope like every other answer.
* :meth:`Server.stop` (SIGTERM): health answers 503 ``stopping`` at once, the listener
  closes ``CFP_SHUTDOWN_DRAIN_SECONDS`` later, and requests in flight finish.
* An event stream (``/api/events``) holds no worker thread: once its response has begun,
  waitress's own loop carries it, and keeps it out of its map while idle (decision 160).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.buffers import OverflowableBuffer
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask

HEAD_TIMEOUT_S = 5.0
"""A connection's request head (request line and headers) must arrive within this."""
MAX_BODY = 256 * 1024
"""The largest body any route takes (api/app.py's, a test says): waitress refuses a larger one unread."""

STREAM_KEY = "hotreload.stream"
"""The WSGI environ key by which this server offers to carry an event stream on its loop (None);
a response that is one sets it to its subscriber (service/events.py: ``take``, ``pending``,
``closed``, ``limit``, ``close``, ``wake``)."""

StartResponse = Callable[..., Any]


def _error(code: str, message: str) -> bytes:
    body = {"success": False, "error": {"code": code, "message": message, "traceId": uuid.uuid4().hex}}
    return json.dumps(body).encode()


class Gate:
    """The WSGI app waitress serves from the first second: 503 until :attr:`app` is
    set, then the app; 503 ``stopping`` on the health route once a stop began."""

    def __init__(self) -> None:
        self.app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]] | None = None
        self.stopping = False
        self.starting("loading the service")

    def starting(self, step: str) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        self.step = f"starting: {step} (since {now})"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self.app is not None and not (self.stopping and environ.get("PATH_INFO") == "/api/health"):
            return self.app(environ, start_response)
        body = _error("service_unavailable", "stopping" if self.stopping else self.step)
        start_response("503 Service Unavailable", [("Content-Type", "application/json"), ("Retry-After", "1"),
                                                   ("Content-Length", str(len(body)))])
        return [body]


class _JsonErrorTask(ErrorTask):  # type: ignore[misc]
    def execute(self) -> None:
        error = self.request.error
        body = _error({413: "payload_too_large", 400: "bad_request"}.get(error.code, "error"),
                      f"{error.reason}: {error.body}")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Task(WSGITask):  # type: ignore[misc]
    def build_response_header(self) -> Any:
        if self.channel.server.close_at is not None:  # stopping: no keep-alive from now on
            self.set_close_on_finish()
        return super().build_response_header()

    def get_environment(self) -> Any:
        environ = super().get_environment()
        environ.setdefault(STREAM_KEY, None)
        return environ

    def finish(self) -> None:
        stream = (self.environ or {}).get(STREAM_KEY)
        if stream is None or not self.channel.connected:
            if stream is not None:  # its client left before the stream began
                stream.close()
            super().finish()
            return
        if not self.wrote_header:
            self.write(b"")
        # the response stays open, and this thread goes back to the pool: the loop sends the rest
        self.close_on_finish = False
        self.channel.carry(stream, self.chunked_response)


class _Channel(HTTPChannel):  # type: ignore[misc]
    task_class = _Task
    error_task_class = _JsonErrorTask
    stream: Any = None
    """The event stream this connection carries, once its response became one."""
    chunked = gone = False

    def carry(self, stream: Any, chunked: bool) -> None:
        """From the end of the stream's task: the loop takes the connection over (after the
        task, :meth:`HTTPChannel.service` empties ``requests`` and wakes the loop)."""
        self.chunked, self.parking = chunked, threading.Lock()
        stream.wake = self.wake
        self.stream = stream

    def wake(self) -> None:
        """From any thread, when the stream has something to send: back into the loop's map
        (an idle stream is kept out of it: decision 160)."""
        with self.parking:
            if not self.gone:
                self._map[self._fileno] = self
        with self.server.waking:  # never after the loop's wake-up pipe closed: its fd may be reused
            if not self.server.closed:
                self.server.pull_trigger()

    def readable(self) -> bool:
        # a stream's client has nothing more to ask; one that went away is found by the next write
        return self.stream is None and bool(super().readable())

    def writable(self) -> bool:
        stream = self.stream
        if stream is None or self.requests:
            return bool(super().writable())
        # the loop's thread owns the buffers now
        if stream.closed or self.total_outbufs_len > stream.limit:  # dropped, or its client stopped reading
            stream.close()
            self.will_close = True
        elif stream.pending and (data := stream.take()):
            # a buffer of its own, dropped once sent: one buffer for the whole stream would keep it all
            buffer = OverflowableBuffer(self.adj.outbuf_overflow)
            buffer.append(b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data)
            self.outbufs.append(buffer)
            self.total_outbufs_len += len(buffer)
        elif not (self.total_outbufs_len or self.will_close):
            with self.parking:  # idle: out of the map until woken (an offer adds its frame, then wakes)
                if not stream.pending:
                    self._map.pop(self._fileno, None)
                    return False
        return bool(super().writable())

    def del_channel(self, map: Any = None) -> None:
        if self.stream is not None:
            with self.parking:  # never put back into the map once closed: its fd may be reused
                self.gone = True
            self.stream.close()
        super().del_channel(map)


class Server(TcpWSGIServer):  # type: ignore[misc]
    channel_class = _Channel
    close_at: float | None = None
    head_timeout_s = HEAD_TIMEOUT_S
    closed = False
    """Set before the listener and the loop's wake-up pipe close (streams then wake nothing)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.waking = threading.Lock()  # guards ``closed``: per server, as a test runs several
        super().__init__(*args, **kwargs)

    def stop(self, drain_s: float = 0.0) -> None:
        """Close the listener ``drain_s`` from now; :meth:`run` returns once the requests in
        flight are answered. Only sets a time: safe from a signal handler or another thread."""
        if self.close_at is None:
            self.close_at = time.time() + drain_s

    def readable(self) -> bool:
        if self.close_at is not None and time.time() >= self.close_at:
            for channel in list(self.active_channels.values()):
                if not channel.requests:
                    channel.will_close = True
            with self.waking:
                self.closed = True
            self.close()
            return False
        return bool(super().readable())

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections (channel_timeout)
        cutoff = now - self.head_timeout_s
        for channel in list(self.active_channels.values()):
            request = channel.request
            if channel.requests or (request is not None and request.headers_finished):
                continue
            if request is not None:  # a head begun: since maintenance first saw it
                began = request.__dict__.setdefault("hotreload_seen", now)
            elif channel.last_activity == channel.creation_time:  # connected, never sent a byte
                began = channel.creation_time
            else:
                continue  # idle between requests: channel_timeout's business
            if began < cutoff:
                channel.will_close = True


def make_server(app: Gate, host: str, port: int, threads: int, connection_limit: int = 1000,
                idle_timeout_s: int = 75, max_body: int = MAX_BODY, trust_forwarding: bool = False) -> Server:
    """Bind ``host:port`` (raises OSError when taken) and return the server, not yet running."""
    # poll(), not select(), which raises once a descriptor number passes 1023 (decision 66);
    # forwarding headers are cleared unless CFP_TRUSTED_PROXIES says whom to believe (api/ratelimit.py)
    adj = Adjustments(host=host, port=port, threads=threads, ident="hotreload",
                      clear_untrusted_proxy_headers=not trust_forwarding, max_request_body_size=max_body,
                      asyncore_use_poll=True, connection_limit=connection_limit, channel_timeout=idle_timeout_s,
                      cleanup_interval=1)
    return Server(app, map={}, adj=adj, sockinfo=adj.listen[0])
