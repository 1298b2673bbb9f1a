"""Real git transports on loopback for the network tests: smart HTTP (``git
http-backend`` behind Basic auth, optionally over TLS), an ssh stand-in that runs the
remote command locally, a listener that accepts and never answers, and one that
answers a byte at a time."""

from __future__ import annotations

import base64
import hmac
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

USER = "x-access-token"


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class GitHttp:
    """``git http-backend`` serving ``root`` on a loopback port, behind Basic auth with
    user :data:`USER` and the password in ``password_file`` (read at each request, so a
    test rotates it by writing the file); over TLS when given a certificate."""

    def __init__(self, root: Path, password_file: Path, cert: Path | None = None, key: Path | None = None) -> None:
        self.root, self.password_file = root, password_file
        self.requests: list[str] = []
        self.lose_push_answers = 0.0
        """Seconds to hold the answer of a push the backend has applied (its answer lost)."""
        self.down_after_push = False
        """After such a push, answer every request 503 (the remote went away)."""
        self.down = False
        self.apply_pushes_late: Any = None
        """Set (a callable, run first): a push waits, before the backend applies it, until the refs
        were advertised to a fetch once more (its pusher, out of time, asked where the ref is)."""
        self.adverts = threading.Condition()
        self.adverts_served = 0
        self.server = make_server("127.0.0.1", 0, self.wsgi, server_class=_Threading, handler_class=_Quiet)
        if cert is not None and key is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.scheme = "https" if cert else "http"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.requests.append(environ.get("HTTP_AUTHORIZATION", ""))
        if self.down:
            start_response("503 Service Unavailable", [])
            return [b"down\n"]
        expected = "Basic " + base64.b64encode(f"{USER}:{self.password_file.read_text()}".encode()).decode()
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), expected.encode()):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"no\n"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if self.apply_pushes_late and environ["PATH_INFO"].endswith("/git-receive-pack"):
            with self.adverts:
                seen = self.adverts_served
            self.apply_pushes_late()
            with self.adverts:
                self.adverts.wait_for(lambda: self.adverts_served > seen, timeout=30)
        env = {key: value for key, value in environ.items() if key.startswith("HTTP_")}
        env.update(GIT_PROJECT_ROOT=str(self.root), GIT_HTTP_EXPORT_ALL="1", REMOTE_USER=USER,
                   REMOTE_ADDR="127.0.0.1", PATH_INFO=environ["PATH_INFO"], QUERY_STRING=environ["QUERY_STRING"],
                   REQUEST_METHOD=environ["REQUEST_METHOD"], CONTENT_TYPE=environ.get("CONTENT_TYPE", ""),
                   CONTENT_LENGTH=str(len(body)), PATH=os.environ["PATH"], GIT_CONFIG_NOSYSTEM="1",
                   GIT_CONFIG_GLOBAL="/dev/null", HOME=str(self.root))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=True).stdout
        if environ["QUERY_STRING"] == "service=git-upload-pack":
            with self.adverts:
                self.adverts_served += 1
                self.adverts.notify_all()
        if self.lose_push_answers and environ["PATH_INFO"].endswith("/git-receive-pack"):
            self.down = self.down_after_push
            time.sleep(self.lose_push_answers)  # the fault itself: applied, and no answer in time
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(sep)
        status, headers = "200 OK", []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI): (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


SSH_STAND_IN = '''#!{python} -I
"""ssh, as far as git needs it: log the command line, check the host key and the
key file as sshd would (against files the test controls), then run the remote
command here."""
import json, os, sys, time
args = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(args) + "\\n")
if os.path.exists({stall!r}):
    time.sleep(3600)
options = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-o"]
host = args[-2].rsplit("@", 1)[-1]
known = [o.split("=", 1)[1] for o in options if o.startswith("UserKnownHostsFile=")]
if known and not any(line.split()[:1] == [host] for line in open(known[0])):
    sys.exit("Host key verification failed.")
key = args[args.index("-i") + 1] if "-i" in args else None
if key is None or open(key).read() != open({authorized!r}).read():
    sys.exit(f"git@{{host}}: Permission denied (publickey).")
env = dict(os.environ)
if "SetEnv GIT_PROTOCOL=version=2" in options:
    env["GIT_PROTOCOL"] = "version=2"
os.execvpe("sh", ["sh", "-c", args[-1]], env)
'''


class SshStandIn:
    """An executable ``path`` that stands in for ``ssh``: it accepts the key whose text
    is in ``authorized`` and the host named in a known-hosts file, records every
    command line in ``log``, and hangs while the file ``stall`` exists."""

    def __init__(self, folder: Path, name: str = "ssh") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path, self.log, self.stall = folder / name, folder / "ssh-calls.jsonl", folder / "ssh-stall"
        self.authorized = folder / "authorized-key"
        self.path.write_text(SSH_STAND_IN.format(python=sys.executable, log=str(self.log), stall=str(self.stall),
                                                 authorized=str(self.authorized)))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


class Stalled:
    """A TCP listener that accepts connections (the kernel does, into its backlog) and
    never answers; with ``dribble``, one that answers one byte every 0.2 s forever."""

    def __init__(self, dribble: bytes | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        if dribble is not None:
            threading.Thread(target=self._serve, args=(dribble,), daemon=True).start()

    def _serve(self, prefix: bytes) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn, prefix), daemon=True).start()

    def _drip(self, conn: socket.socket, prefix: bytes) -> None:
        with conn:
            try:
                conn.sendall(prefix)
                while not self.closed.wait(0.2):
                    conn.sendall(b"x")
            except OSError:
                pass

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def wait_for(condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s")
