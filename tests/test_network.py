"""The service over real transports on loopback: smart HTTP with Basic auth and the
password from a file, HTTPS with a custom CA, ssh through GIT_SSH_COMMAND and through
a key file; each clones, reloads on a webhook, pushes a write back, and survives a
credential rotation without a restart, and no secret reaches the clone, the log,
health, metrics or an error body. A remote that accepts and never answers (or answers
a byte at a time) costs one timeout, whatever the transport."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.config import Settings
from hotreload.git.errors import NetworkTimeout
from hotreload.git.remotes import Remote
from hotreload.git.repo import GitRepo, origin_url
from hotreload.service.runtime import boot
from tests.conftest import SECRET, WRITE_TOKEN, World, bearer, make_world, project_toml
from tests.gitservers import USER, GitHttp, SshStandIn, Stalled, certificate, wait_for

URL = "/api/_internal/reload-data"
TRANSPORTS = ["http-basic", "https-ca", "ssh-command", "ssh-key-file"]


class Net:
    """One of each server for the module, serving every origin under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server_password = root / "server-password"
        self.server_password.write_text("unset")
        cert, key = certificate(root)
        self.ca = cert
        self.http = GitHttp(root, self.server_password)
        self.https = GitHttp(root, self.server_password, cert, key)
        self.ssh = SshStandIn(root / "bin")
        self.stalled = Stalled()

    def close(self) -> None:
        self.http.close()
        self.https.close()
        self.stalled.close()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    servers = Net(tmp_path_factory.mktemp("net"))
    yield servers
    servers.close()


class Setup:
    """A transport's remote URL, the settings that reach it, and its two secrets."""

    def __init__(self, net: Net, transport: str, world: World, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.transport, self.net, self.tmp = transport, net, tmp
        self.secrets = [f"tok-{transport}-one-{os.urandom(6).hex()}", f"tok-{transport}-two-{os.urandom(6).hex()}"]
        relative = world.origin.relative_to(net.root)
        self.credential = tmp / "credential"  # what the service reads: a password file or a key file
        self.overrides: dict[str, Any] = {}
        if transport.startswith("http"):
            server = net.http if transport == "http-basic" else net.https
            self.url = server.url(str(relative))
            self.overrides = {"username": USER, "password_file": str(self.credential)}
            if transport == "https-ca":
                self.overrides["ca_file"] = str(net.ca)
        else:
            self.url = f"ssh://git@git.example.org{world.origin}"
            if transport == "ssh-command":  # the operator's own command, key and all
                self.overrides = {"ssh_command": f"{net.ssh.path} -i {self.credential}"}
            else:  # the service's ssh command line, with the key and known-hosts files
                known = tmp / "known_hosts"
                known.write_text("git.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKey\n")
                monkeypatch.setenv("PATH", f"{net.ssh.path.parent}{os.pathsep}{os.environ['PATH']}")
                self.overrides = {"ssh_key_file": str(self.credential), "ssh_known_hosts_file": str(known)}
        self.rotate_client(0)
        self.rotate_server(0)

    def rotate_server(self, index: int) -> None:
        secret = self.secrets[index]
        target = self.net.server_password if self.transport.startswith("http") else self.net.ssh.authorized
        target.write_text(self._content(secret))

    def rotate_client(self, index: int) -> None:
        self.credential.write_text(self._content(self.secrets[index]))

    def _content(self, secret: str) -> str:
        if self.transport.startswith("http"):
            return secret
        return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n-----END OPENSSH PRIVATE KEY-----\n"


def new_world(net: Net, name: str) -> World:
    root = net.root / f"w-{name}-{os.urandom(3).hex()}"
    root.mkdir()
    return make_world(root, records=30)


def files_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_clone_reload_write_and_rotation(transport: str, net: Net, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world = new_world(net, transport)
    setup = Setup(net, transport, world, tmp_path, monkeypatch)
    settings = Settings(repo_path=str(tmp_path / "service.git"), remote=setup.url, branch="published",
                        reload_secret=SECRET, write_token=WRITE_TOKEN, push_backoff_seconds=0.05,
                        push_backoff_cap_seconds=0.2, poll_seconds=0.0, upkeep_seconds=0.0,
                        network_timeout_s=10.0, **setup.overrides)
    rt = boot(settings)  # the first start clones over the transport
    try:
        client = testing.TestClient(create_app(rt))
        assert rt.holder.current.commit == world.origin_head()
        tip = world.commit_upstream({"projects/net-one.toml": project_toml("net-one", "Over The Wire")})
        reloaded = client.simulate_post(URL, json={"commitHash": tip}, headers=bearer())
        assert reloaded.status_code == 200 and reloaded.json["data"]["outcome"] == "fast-forwarded"
        written = client.simulate_post("/api/projects", json={"slug": "net-write", "title": "Pushed Back"},
                                       headers=bearer(WRITE_TOKEN))
        assert written.status_code == 201 and rt.push_daemon is not None and rt.push_daemon.flush(15)
        assert world.origin_head() == rt.repo.branch_commit("published")

        setup.rotate_server(1)  # the remote takes only the new secret now; the service still has the old one
        refused = client.simulate_post(URL, body=b"", headers=bearer())
        assert refused.status_code == 502 and refused.json["error"]["code"] == "fetch_failed"
        setup.rotate_client(1)  # the Secret is updated in place: no restart
        tip = world.commit_upstream({"projects/net-two.toml": project_toml("net-two", "After Rotation")})
        reloaded = client.simulate_post(URL, json={"commitHash": tip}, headers=bearer())
        assert reloaded.status_code == 200 and reloaded.json["data"]["newCommit"] == tip
        written = client.simulate_post("/api/projects", json={"slug": "net-write-two", "title": "Rotated"},
                                       headers=bearer(WRITE_TOKEN))
        assert written.status_code == 201 and rt.push_daemon.flush(15)
        assert world.origin_head() == rt.repo.branch_commit("published")

        seen = [files_text(Path(rt.repo.path)), caplog.text, refused.text, client.simulate_get("/api/health").text,
                client.simulate_get("/metrics").text]
        for secret in setup.secrets:
            assert not any(secret in text for text in seen), f"{secret} leaked"
        assert origin_url(rt.repo) == setup.url  # stored as given: these URLs carry no credentials
    finally:
        rt.close()
    if transport == "ssh-key-file":  # the command line the service built for ssh
        call = net.ssh.calls()[-1]
        assert call[:5] == ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o"]
        assert {"IdentitiesOnly=yes", "StrictHostKeyChecking=yes",
                f"UserKnownHostsFile={tmp_path / 'known_hosts'}"} <= set(call)
        assert call[call.index("-i") + 1] == str(setup.credential)


@pytest.mark.slow
def test_a_token_in_the_url_is_used_never_stored_or_shown(net: Net, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world = new_world(net, "url")
    token = f"urltoken{os.urandom(8).hex()}"
    net.server_password.write_text(token)
    url = net.http.url(str(world.origin.relative_to(net.root))).replace("://", f"://{USER}:{token}@")
    rt = boot(Settings(repo_path=str(tmp_path / "service.git"), remote=url, branch="published",
                       reload_secret=SECRET, write_token=None, poll_seconds=0.0, upkeep_seconds=0.0))
    try:
        client = testing.TestClient(create_app(rt))
        net.server_password.write_text("rotated-away")
        refused = client.simulate_post(URL, body=b"", headers=bearer())
        assert refused.status_code == 502 and "***@127.0.0.1" in refused.text
        seen = [files_text(Path(rt.repo.path)), caplog.text, refused.text, client.simulate_get("/api/health").text]
        assert not any(token in text for text in seen)
        assert origin_url(rt.repo) == url.replace(f"{USER}:{token}@", "")
    finally:
        rt.close()


def test_credentials_an_older_version_stored_in_the_clone_are_removed(world: World) -> None:
    url = "https://x-access-token:oldtoken123@git.example.org/data.git"
    subprocess.run(["git", "--git-dir", str(world.clone), "config", "remote.origin.url", url], check=True)
    rt = boot(world.settings(remote=str(world.origin)), reconcile_at_start=False)
    rt.close()
    assert "oldtoken123" not in (world.clone / "config").read_text()
    assert origin_url(GitRepo(str(world.clone))) == "https://git.example.org/data.git"


@pytest.mark.parametrize("scheme", ["http", "git", "ssh", "http-dribble"])
def test_a_remote_that_never_answers_costs_one_timeout(scheme: str, net: Net, world: World) -> None:
    dribble = Stalled(dribble=b"HTTP/1.1 200 OK\r\nX-Slow: ") if scheme == "http-dribble" else None
    port = (dribble or net.stalled).port
    url = {"http": f"http://127.0.0.1:{port}/origin.git", "git": f"git://127.0.0.1:{port}/origin.git",
           "ssh": f"ssh://git@git.example.org{world.origin}",
           "http-dribble": f"http://u:sekrit-pass@127.0.0.1:{port}/origin.git"}[scheme]
    net.ssh.stall.touch()  # only the ssh stand-in looks at it
    repo = GitRepo(str(world.clone))
    # silence costs one timeout; a dribble, or a stall after ssh's handshake, the whole operation's 4
    whole = dribble is not None or scheme == "ssh"
    timeout = 0.4 if whole else 1.0
    started = time.monotonic()
    try:
        with pytest.raises(NetworkTimeout) as failure:
            repo.fetch_branch(Remote(url, timeout_s=timeout, ssh_command=str(net.ssh.path)), "published")
    finally:
        net.ssh.stall.unlink()
        repo.close()
        if dribble is not None:
            dribble.close()
    took = time.monotonic() - started
    expected = 4 * timeout if whole else timeout
    assert 0.9 * expected <= took < expected + 1.5, took
    message = str(failure.value)
    assert f"CFP_DATA_NETWORK_TIMEOUT_SECONDS is {timeout:g}" in message and "sekrit" not in message
    assert message.startswith(f"fetch from {Remote(url)} failed: no answer in time")


@pytest.mark.slow
def test_a_stalled_remote_at_start_and_on_a_webhook(net: Net, world: World, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{net.stalled.port}/origin.git"
    started = time.monotonic()
    rt = boot(world.settings(remote=url, network_timeout_s=1.0))
    try:
        assert time.monotonic() - started < 2 * 1.0 + 1.5  # the build, then one timeout
        client = testing.TestClient(create_app(rt))
        health = client.simulate_get("/api/health").json["data"]
        assert health["status"] == "degraded" and "no answer in time" in health["lastReload"]["error"]
        assert health["lastReload"]["trigger"] == "startup" and health["reloading"] is None

        answers: list[Any] = []
        called = time.monotonic()
        webhook = threading.Thread(target=lambda: answers.append(
            client.simulate_post(URL, body=b"", headers=bearer())))
        webhook.start()
        during = wait_for(lambda: client.simulate_get("/api/health").json["data"]["reloading"], timeout=2)
        assert during["trigger"] == "webhook" and during["since"].endswith("Z")
        gauge = [line for line in client.simulate_get("/metrics").text.splitlines()
                 if line.startswith("hotreload_reload_in_flight_seconds ")]
        assert gauge and float(gauge[0].split()[1]) > 0
        webhook.join(5)
        assert time.monotonic() - called < 2 * 1.0
        answer = answers[0]
        assert answer.status_code == 504 and answer.json["error"]["code"] == "fetch_timeout"
        assert answer.json["error"]["details"] == {"outcome": "fetch-failed", "head": rt.holder.current.commit,
                                                   "timeoutS": 1.0}
        assert url in answer.json["error"]["message"]
        assert client.simulate_get("/api/health").json["data"]["reloading"] is None

        # the push daemon gives up on the stalled remote after one timeout, and says so
        written = client.simulate_post("/api/projects", json={"slug": "while-stalled", "title": "Waits"},
                                       headers=bearer(WRITE_TOKEN))
        assert written.status_code == 201
        push = wait_for(lambda: (p := client.simulate_get("/api/health").json["data"]["push"]).get("lastError") and p)
        assert push["pending"] >= 1 and "no answer in time" in push["lastError"]
    finally:
        rt.close()


@pytest.mark.slow
def test_the_port_answers_at_once_and_the_start_serves_degraded_within_two_timeouts(net: Net, world: World) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **world.env(CFP_DATA_REMOTE=f"http://127.0.0.1:{net.stalled.port}/origin.git",
                                     CFP_DATA_NETWORK_TIMEOUT_SECONDS="3", CFP_SNAPSHOT_CACHE="0",
                                     CFP_LOG_LEVEL="WARNING")}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "hotreload.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    answers: list[tuple[float, int, dict[str, Any]]] = []
    try:
        import urllib.error
        import urllib.request

        while time.monotonic() - started < 15 and not (answers and answers[-1][1] == 200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
                    answers.append((time.monotonic() - started, resp.status, json.load(resp)))
            except urllib.error.HTTPError as err:
                answers.append((time.monotonic() - started, err.code, json.load(err)))
            except OSError:
                pass  # not bound yet
            time.sleep(0.05)
    finally:
        proc.terminate()
        stderr = proc.communicate(timeout=15)[1].decode()
    first, last = answers[0], answers[-1]
    assert first[1] == 503 and first[2]["error"]["message"].startswith("starting: "), stderr
    assert any("reconciling with http://127.0.0.1" in a[2]["error"]["message"] for a in answers if a[1] == 503)
    assert last[1] == 200 and last[2]["data"]["status"] == "degraded"
    assert last[0] < 2 * 3, f"degraded after {last[0]:.1f} s"
    assert proc.returncode == 0
    assert '"level": "WARNING"' in stderr and '"level": "INFO"' not in stderr  # CFP_LOG_LEVEL


def test_a_first_clone_from_a_stalled_remote_fails_in_ten_timeouts_leaving_nothing(net: Net, tmp_path: Path) -> None:
    from hotreload.service.runtime import StartupError

    target = tmp_path / "service.git"
    settings = Settings(repo_path=str(target), remote=f"git://127.0.0.1:{net.stalled.port}/origin.git",
                        branch="published", reload_secret=SECRET, write_token=None, network_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(StartupError, match=r"CFP_DATA_REMOTE: clone from git://127\.0\.0\.1:.* no answer in time"):
        boot(settings)
    assert time.monotonic() - started < 10 * 0.3 + 1.5
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".hotreload-clone")]
