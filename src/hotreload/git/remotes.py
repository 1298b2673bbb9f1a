"""How to reach a remote: its URL (never stored or shown with credentials), the
credentials a deployment hands out as files (read at every operation, so a rotated
Secret needs no restart), and a deadline on every network operation (decision 81).

Connecting and each read wait at most ``CFP_DATA_NETWORK_TIMEOUT_SECONDS`` (HTTP:
urllib3's timeouts; git://: the socket's; ssh: ``ConnectTimeout``); when an operation
as a whole has taken :data:`OPERATION_DEADLINE_FACTOR` timeouts (a first clone
:data:`CLONE_DEADLINE_FACTOR`), what it still has open is cut (sockets shut down, the
ssh process killed), so a remote that answers a byte at a time is bounded too.
"""

from __future__ import annotations

import math
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import urllib3
import urllib3.connection
from dulwich.client import GitClient, SSHGitClient, SubprocessSSHVendor, default_urllib3_manager, get_transport_and_path
from dulwich.config import ConfigDict

from hotreload.git.compat import TimedTCPGitClient
from hotreload.git.errors import NetworkTimeout, PushRejected, TransportError
from hotreload.git.unpack import MAX_OBJECT_BYTES

DEFAULT_TIMEOUT_S = 30.0
OPERATION_DEADLINE_FACTOR = 4
"""A fetch, push or ls-remote as a whole: 4 timeouts (2 minutes by default, git-sync's
--sync-timeout)."""
CLONE_DEADLINE_FACTOR = 10


def redact(location: str) -> str:
    """A remote location fit for logs and errors: user info and passwords removed."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return "<remote>"
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, ""))
    return location


def without_credentials(url: str) -> str:
    """``url`` as it may be stored in the clone's config: an http(s) URL without its
    user info (a token often sits in the user name), any other without a password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.netloc or "@" not in parts.netloc:
        return url
    user, host = parts.netloc.rsplit("@", 1)
    keep = "" if parts.scheme in ("http", "https") else user.split(":", 1)[0] + "@"
    return urlunsplit((parts.scheme, keep + host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Remote:
    """A remote and the settings that reach it (``CFP_DATA_*``). ``str()`` is the
    redacted URL, so a remote put in a log line or a message never shows a secret."""

    url: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    username: str | None = None
    password_file: str | None = None
    ssh_key_file: str | None = None
    ssh_known_hosts_file: str | None = None
    ssh_command: str | None = None
    """``GIT_SSH_COMMAND``: used as given, with the key and known-hosts options added."""
    ca_file: str | None = None
    max_object_bytes: int = MAX_OBJECT_BYTES
    """``CFP_DATA_MAX_OBJECT_BYTES``: the biggest object a fetch takes from it (unpack.py)."""

    def __str__(self) -> str:
        return redact(self.url)

    def password(self) -> str | None:
        """The password (or token) from ``CFP_DATA_PASSWORD_FILE``, read now."""
        if self.password_file is None:
            return None
        try:
            with open(self.password_file, encoding="utf-8") as fh:
                return fh.read().rstrip("\r\n")
        except OSError as exc:
            raise TransportError(f"CFP_DATA_PASSWORD_FILE {self.password_file} cannot be read: "
                                 f"{exc.strerror}") from None

    def scrub(self, text: str) -> str:
        """``text`` with every secret this remote knows replaced by ``***``."""
        text = text.replace(self.url, str(self))
        secrets = [urlsplit(self.url).password, urlsplit(self.url).username if "@" in self.url else None]
        with suppress(TransportError):
            secrets.append(self.password())
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def ssh_command_line(self) -> str:
        """The ssh command dulwich runs (it adds ``-i`` for the key, the port, the host
        and git's command): ``GIT_SSH_COMMAND`` or ``ssh`` with a connect timeout and no
        prompts, plus the key and known-hosts options the settings ask for."""
        if self.ssh_command:
            args = shlex.split(self.ssh_command)
        else:
            args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={math.ceil(self.timeout_s)}"]
        if self.ssh_key_file:
            args += ["-o", "IdentitiesOnly=yes"]
        if self.ssh_known_hosts_file:
            args += ["-o", f"UserKnownHostsFile={self.ssh_known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
        return shlex.join(args)


def as_remote(remote: str | Remote) -> Remote:
    return remote if isinstance(remote, Remote) else Remote(remote)


class Deadline:
    """One operation's time: ``timeout_s`` to connect and for each read, ``total_s``
    for the whole. When it passes, the cuts registered with :meth:`on_expiry` run
    (from a timer thread) and unblock whatever the operation waits on."""

    def __init__(self, timeout_s: float, total_s: float) -> None:
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self.expired = False
        self._cuts: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(total_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def on_expiry(self, cut: Callable[[], object]) -> None:
        with self._lock:
            if not self.expired:
                self._cuts.append(cut)
                return
        with suppress(Exception):
            cut()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            cuts, self._cuts = self._cuts, []
        for cut in cuts:
            with suppress(Exception):  # already closed, say
                cut()


def _cut_at(deadline: Deadline) -> dict[str, type]:
    """urllib3 connection pools whose sockets are shut down when ``deadline`` passes:
    that cuts a request still waiting for its headers as well as a body being read."""

    def cut(base: type) -> type:
        class Connection(base):  # type: ignore[misc]
            def connect(self) -> None:
                super().connect()
                sock = self.sock
                deadline.on_expiry(lambda: sock.shutdown(socket.SHUT_RDWR))
        return Connection

    plain, secure = cut(urllib3.connection.HTTPConnection), cut(urllib3.connection.HTTPSConnection)
    return {"http": type("Pool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": plain}),
            "https": type("SecurePool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": secure})}


class _SSH(SubprocessSSHVendor):
    """dulwich's ssh subprocess, with our command line and key, killed at the deadline."""

    def __init__(self, remote: Remote, deadline: Deadline) -> None:
        self.remote, self.deadline = remote, deadline

    def run_command(self, host: str, command: bytes, username: str | None = None, port: int | None = None,
                    password: str | None = None, key_filename: str | None = None,
                    ssh_command: str | None = None, protocol_version: int | None = None) -> Any:
        wrapper = super().run_command(host, command, username=username, port=port,
                                      key_filename=self.remote.ssh_key_file,
                                      ssh_command=self.remote.ssh_command_line(),
                                      protocol_version=protocol_version)

        def cut() -> None:
            wrapper.proc.kill()
            wrapper.proc.wait()  # reaped here: dulwich may never wait for a process it did not close

        self.deadline.on_expiry(cut)
        return wrapper


def open_client(remote: Remote, deadline: Deadline) -> tuple[GitClient, str]:
    """A dulwich client for ``remote`` whose every wait follows ``deadline``."""
    parts = urlsplit(remote.url)
    if parts.scheme in ("http", "https"):
        config = ConfigDict()
        if remote.ca_file:  # git's http.sslCAInfo: this bundle instead of the system's
            config.set((b"http",), b"sslCAInfo", remote.ca_file.encode())
        pool: Any = default_urllib3_manager(config, base_url=remote.url, timeout=deadline.timeout_s)
        pool.pool_classes_by_scheme = _cut_at(deadline)
        # a failed connect or read is not retried: each retry would wait the timeout again
        pool.connection_pool_kw["retries"] = urllib3.Retry(total=5, connect=0, read=0, status=0, other=0,
                                                           redirect=5)
        return get_transport_and_path(remote.url, config=config, username=remote.username,
                                      password=remote.password(), pool_manager=pool)
    if parts.scheme == "git":
        tcp = TimedTCPGitClient(parts.hostname or "", parts.port)
        tcp.timeout_s = deadline.timeout_s
        tcp.on_socket = lambda sock: deadline.on_expiry(lambda: sock.shutdown(socket.SHUT_RDWR))
        return tcp, parts.path
    client, path = get_transport_and_path(remote.url)
    if isinstance(client, SSHGitClient):
        client.ssh_vendor = _SSH(remote, deadline)
    return client, path


def _timed_out(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TimeoutError | urllib3.exceptions.TimeoutError):
            return True
        exc = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False


@contextmanager
def connected(remote: Remote, what: str,
              factor: float = OPERATION_DEADLINE_FACTOR) -> Iterator[tuple[GitClient, str]]:
    """A client for one operation (``what``: "fetch from", "push to", ...) under its
    deadline; any failure comes out as a :class:`TransportError` (a
    :class:`NetworkTimeout` when time ran out) whose message names the remote."""
    deadline = Deadline(remote.timeout_s, factor * remote.timeout_s)

    def timed_out() -> NetworkTimeout:
        took = time.monotonic() - deadline.started
        return NetworkTimeout(f"{what} {remote} failed: no answer in time ({took:.1f} s; "
                              f"CFP_DATA_NETWORK_TIMEOUT_SECONDS is {remote.timeout_s:g})")

    with deadline:
        try:
            yield open_client(remote, deadline)
        except PushRejected:
            raise
        except Exception as exc:
            if deadline.expired or _timed_out(exc):
                raise timed_out() from None
            if isinstance(exc, TransportError):
                raise
            reason = remote.scrub(str(exc) or type(exc).__name__)
            raise TransportError(f"{what} {remote} failed: {reason}") from None
        if deadline.expired:
            # the cut may end a read cleanly (an HTTP head cut mid-line parses as a complete,
            # empty answer): whatever came back after it is not the remote's answer
            raise timed_out()
