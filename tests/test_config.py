"""Bad configuration stops ``hotreload serve`` with one clear line naming the
variable, and a non-zero exit code (no traceback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import World


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CFP_")}
    return subprocess.run([sys.executable, "-m", "hotreload.cli", "serve", "--port", "0"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("hotreload: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_short_secret(world: World) -> None:
    line = error_line(serve(world.env(CFP_DATA_RELOAD_SECRET="short")))
    assert "CFP_DATA_RELOAD_SECRET" in line and "at least 32" in line


def test_repo_path_unset() -> None:
    assert "CFP_DATA_REPO_PATH is not set" in error_line(serve({}))


def test_repo_missing_and_no_remote(tmp_path: Path) -> None:
    line = error_line(serve({"CFP_DATA_REPO_PATH": str(tmp_path / "nope.git")}))
    assert "does not exist" in line and "CFP_DATA_REMOTE" in line


def test_repo_not_bare(world: World) -> None:
    line = error_line(serve(world.env(CFP_DATA_REPO_PATH=str(world.work))))
    assert "CFP_DATA_REPO_PATH" in line and "bare" in line


def test_repo_not_a_repository(tmp_path: Path) -> None:
    line = error_line(serve({"CFP_DATA_REPO_PATH": str(tmp_path)}))
    assert "CFP_DATA_REPO_PATH" in line and "not a git repository" in line


def test_branch_missing(world: World) -> None:
    line = error_line(serve(world.env(CFP_DATA_BRANCH="nope")))
    assert "CFP_DATA_BRANCH" in line and "'nope' does not exist" in line and "published" in line


@pytest.mark.parametrize("value", ["abc", "-1"])
def test_bad_backoff(world: World, value: str) -> None:
    assert "CFP_DATA_PUSH_BACKOFF_SECONDS" in error_line(
        serve(world.env(CFP_DATA_PUSH_BACKOFF_SECONDS=value)))


def test_clones_when_missing_and_remote_set(world: World, tmp_path: Path) -> None:
    from simulator.server import ServerProcess

    target = tmp_path / "fresh.git"
    with ServerProcess(world.env(CFP_DATA_REPO_PATH=str(target))) as server:
        health = server.get("/api/health").data
    assert (target / "HEAD").exists()
    assert health["servedCommit"] == world.origin_head()


@pytest.mark.parametrize(("name", "value", "says"), [
    ("CFP_DATA_RELOAD_SECRET", "", "set but empty"),
    ("CFP_DATA_RELOAD_SECRET", "   ", "set but empty"),
    ("CFP_API_WRITE_TOKEN", "x", "at least 32"),
    ("CFP_DATA_RELOAD_SECRET", "a secret with spaces in it, long enough", "space"),
    ("CFP_DATA_RELOAD_SECRET_PREVIOUS", "p" * 40, None),
])
def test_unusable_secrets_refuse_to_start(world: World, name: str, value: str, says: str | None) -> None:
    env = world.env(**{name: value})
    if name.endswith("_PREVIOUS"):
        env.pop("CFP_DATA_RELOAD_SECRET")  # a previous secret alone
        says = "CFP_DATA_RELOAD_SECRET is not"
    line = error_line(serve(env))
    assert name in line and says in line, line


def serve_args(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CFP_")}
    return subprocess.run([sys.executable, "-m", "hotreload.cli", "serve", *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "says"), [
    (["--port", "99999"], "--port 99999: must be from 0 to 65535"),
    (["--port", "-1"], "--port -1"),
    (["--host", "256.1.1.1", "--port", "0"], "--host 256.1.1.1: cannot be resolved"),
    (["--threads", "0", "--port", "0"], "--threads 0: must be 1 or more"),
])
def test_bad_listen_options_are_refused_at_once(world: World, args: list[str], says: str) -> None:
    result = serve_args(world.env(), *args)
    assert result.returncode == 2
    assert says in error_line(result)


def test_a_busy_port_is_reported_before_the_data_is_loaded(world: World) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = serve_args(world.env(), "--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in error_line(result)
    assert "loaded published" not in result.stderr  # refused before building anything


def test_version_and_help_with_defaults() -> None:
    version = subprocess.run([sys.executable, "-m", "hotreload.cli", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("hotreload ")
    helptext = subprocess.run([sys.executable, "-m", "hotreload.cli", "serve", "--help"],
                              capture_output=True, text=True).stdout
    assert "(default: 8080)" in helptext and "(default: 127.0.0.1)" in helptext and "(default: 8)" in helptext


@pytest.mark.parametrize(("env", "says"), [
    ({"CFP_DATA_POLL_SECONDS": "-1"}, "CFP_DATA_POLL_SECONDS is '-1'; it must be greater than 0 (or 0 to disable)"),
    ({"CFP_DATA_POLL_SECONDS": "soon"}, "CFP_DATA_POLL_SECONDS is 'soon'; it must be a number of seconds"),
    ({"CFP_RELOAD_PEERS": "peers.local"}, "CFP_RELOAD_PEERS: 'peers.local' is not host:port"),
    ({"CFP_RELOAD_PEERS": "a:80,b:99999"}, "CFP_RELOAD_PEERS: 'b:99999' is not host:port"),
    ({"CFP_DATA_MIN_COMMIT_WAIT_SECONDS": "0"}, "CFP_DATA_MIN_COMMIT_WAIT_SECONDS is '0'; it must be greater than 0"),
])
def test_bad_replica_settings(world: World, env: dict[str, str], says: str) -> None:
    assert says in error_line(serve(world.env(**env)))


def test_peers_need_the_reload_secret(world: World) -> None:
    env = world.env(CFP_RELOAD_PEERS="127.0.0.1:8080")
    del env["CFP_DATA_RELOAD_SECRET"]
    line = error_line(serve(env))
    assert "CFP_RELOAD_PEERS is set but CFP_DATA_RELOAD_SECRET is not" in line


def test_replica_settings() -> None:
    from hotreload.config import Settings

    settings = Settings.from_env({"CFP_DATA_REPO_PATH": "/x", "CFP_DATA_RELOAD_SECRET": "s" * 40,
                                  "CFP_RELOAD_PEERS": " hotreload-peers.data.svc:8080, [fd00::7]:8080 ,",
                                  "CFP_DATA_POLL_SECONDS": "0"})
    assert settings.reload_peers == (("hotreload-peers.data.svc", 8080), ("fd00::7", 8080))
    assert settings.poll_seconds == 0.0 and settings.min_commit_wait_seconds == 5.0
    assert Settings.from_env({"CFP_DATA_REPO_PATH": "/x"}).poll_seconds == 60.0


@pytest.mark.parametrize(("env", "says"), [
    ({"CFP_DATA_NETWORK_TIMEOUT_SECONDS": "0"}, "CFP_DATA_NETWORK_TIMEOUT_SECONDS is '0'; it must be greater than 0"),
    ({"CFP_DATA_PASSWORD_FILE": "/nonexistent/token"}, "CFP_DATA_PASSWORD_FILE is '/nonexistent/token', which is not a readable file"),
    ({"CFP_DATA_SSH_KEY_FILE": "/nonexistent/key"}, "CFP_DATA_SSH_KEY_FILE is '/nonexistent/key'"),
    ({"CFP_DATA_CA_FILE": "/nonexistent/ca.pem"}, "CFP_DATA_CA_FILE is '/nonexistent/ca.pem'"),
    ({"CFP_TRUSTED_PROXIES": "10.0.0.0/8, ingress"}, "CFP_TRUSTED_PROXIES: 'ingress' is not an address or CIDR block"),
    ({"CFP_HTTP_CONNECTION_LIMIT": "5"}, "CFP_HTTP_CONNECTION_LIMIT is '5'; it must be a whole number"),
    ({"CFP_HTTP_IDLE_TIMEOUT_SECONDS": "1.5"}, "CFP_HTTP_IDLE_TIMEOUT_SECONDS is '1.5'; it must be a whole number"),
    ({"CFP_LOG_LEVEL": "chatty"}, "CFP_LOG_LEVEL is 'chatty'; it must be DEBUG, INFO, WARNING or ERROR"),
    ({"CFP_SHUTDOWN_DRAIN_SECONDS": "-2"}, "CFP_SHUTDOWN_DRAIN_SECONDS is '-2'"),
])
def test_bad_network_and_http_settings(env: dict[str, str], says: str) -> None:
    from hotreload.config import ConfigError, Settings

    with pytest.raises(ConfigError) as refused:  # `serve` prints it as one line (the tests above)
        Settings.from_env({"CFP_DATA_REPO_PATH": "/x", **env})
    assert says in str(refused.value)


def test_network_and_http_settings(tmp_path: Path) -> None:
    import ipaddress

    from hotreload.config import ConfigError, Settings

    token = tmp_path / "token"
    token.write_text("t0ken\n")
    settings = Settings.from_env({
        "CFP_DATA_REPO_PATH": "/x", "CFP_DATA_USERNAME": "x-access-token", "CFP_DATA_PASSWORD_FILE": str(token),
        "GIT_SSL_CAINFO": str(token), "GIT_SSH_COMMAND": "ssh -F /dev/null", "CFP_LOG_LEVEL": "debug",
        "CFP_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7 ,fd00::/8", "CFP_HTTP_CONNECTION_LIMIT": "2000"})
    assert settings.password_file == str(token) and settings.ca_file == str(token)
    assert settings.ssh_command == "ssh -F /dev/null" and settings.log_level == "DEBUG"
    assert settings.trusted_proxies == tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.168.1.7", "fd00::/8"))
    defaults = Settings.from_env({"CFP_DATA_REPO_PATH": "/x"})
    assert (defaults.network_timeout_s, defaults.http_connection_limit, defaults.http_idle_timeout_s,
            defaults.shutdown_drain_s, defaults.trusted_proxies) == (30.0, 1000, 75, 0.0, ())
    with pytest.raises(ConfigError, match="CFP_DATA_PASSWORD_FILE is set but CFP_DATA_USERNAME is not"):
        Settings.from_env({"CFP_DATA_REPO_PATH": "/x", "CFP_DATA_PASSWORD_FILE": str(token)})


def test_cfp_data_ca_file_wins_over_gits_variable_which_is_then_not_checked(tmp_path: Path) -> None:
    # GIT_SSL_CAINFO is only the default when CFP_DATA_CA_FILE is unset: a stale value of git's own
    # variable (an image's environment, say) must not stop a service told which bundle to use
    from hotreload.config import Settings

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env({"CFP_DATA_REPO_PATH": "/x", "CFP_DATA_CA_FILE": str(ca),
                                  "GIT_SSL_CAINFO": "/nonexistent/git-ca.pem"})
    assert settings.ca_file == str(ca)


def test_help_is_clean() -> None:
    for command in ([], ["serve"], ["demo"], ["corpus"], ["upkeep"], ["simulate"]):
        text = subprocess.run([sys.executable, "-m", "hotreload.cli", *command, "--help"],
                              capture_output=True, text=True).stdout
        assert "``" not in text and "(default: None)" not in text and "(default: False)" not in text, text
        assert not any(line.count("(default:") > 1 for line in text.split("  --")), text
        if command:  # every subcommand says what it does, beyond its usage line
            assert len(text.split("\n\n")[1].split()) > 8, text
    corpus = subprocess.run([sys.executable, "-m", "hotreload.cli", "corpus", "--help"], capture_output=True,
                            text=True).stdout
    assert "(default: 0)" in corpus and "--records RECORDS     how many records (10 or more)\n" in corpus


@pytest.mark.parametrize(("argv0", "shown"), [
    (".venv/bin/hotreload", ".venv/bin/hotreload"), ("hotreload", "hotreload"),
    ("/work/x/hotreload/cli.py", f"{sys.executable} -m hotreload.cli")])
def test_the_demo_banner_names_the_command_that_was_run(monkeypatch: pytest.MonkeyPatch, argv0: str,
                                                        shown: str) -> None:
    from hotreload.cli import _this_command

    monkeypatch.setattr(sys, "argv", [argv0, "demo"])
    assert _this_command() == shown


@pytest.mark.parametrize("value", ["0", "512KiB", "16 MB", "lots", "-5"])
def test_a_bad_object_bound_refuses_to_start(world: World, value: str) -> None:
    from hotreload.config import ConfigError, Settings

    says = f"CFP_DATA_MAX_OBJECT_BYTES is {value!r}; it must be a size of at least 1MiB"
    with pytest.raises(ConfigError, match=re.escape(says)):
        Settings.from_env({"CFP_DATA_REPO_PATH": "/x", "CFP_DATA_MAX_OBJECT_BYTES": value})
    if value == "lots":  # and `serve` says it in one line
        assert says in error_line(serve(world.env(CFP_DATA_MAX_OBJECT_BYTES=value)))


def test_the_object_bound_setting() -> None:
    from hotreload.config import Settings

    def bound(value: str | None) -> int:
        env = {"CFP_DATA_REPO_PATH": "/x"} | ({"CFP_DATA_MAX_OBJECT_BYTES": value} if value is not None else {})
        return Settings.from_env(env).max_object_bytes

    assert bound(None) == bound("16MiB") == bound("16777216") == 16 * 1024 * 1024
    assert bound("1GiB") == 1 << 30 and bound("2048KiB") == bound("2097152B") == 2 << 20
