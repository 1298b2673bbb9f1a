"""Settings read from the ``CFP_*`` environment variables, validated once at start.

Each field of :class:`Settings` names the variable it is read from and the parser that
checks it, so one declaration gives a setting its variable, default and validation.
Every problem is reported as a :class:`ConfigError` whose message names the
variable to fix; ``hotreload serve`` prints that one line and exits non-zero.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_SECRET_LENGTH = 32

Parser = Callable[[str, str], Any]
"""(the variable's name, its value: stripped, but for a secret) -> the setting, or ConfigError."""


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


def _text(name: str, raw: str) -> str:
    return raw


def _file(name: str, path: str) -> str:
    """A path a setting names, which must be a readable file now (it is read again at use)."""
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(f"{name} is {path!r}, which is not a readable file; mount the Secret there or "
                          "unset the variable")
    return path


_TOKEN_CHARS = re.compile(r"\A[!-~]+\Z")  # what an Authorization: Bearer header can carry


def _secret(name: str, value: str) -> str:
    """A secret or token: set but empty, short, or holding what a bearer header cannot
    carry (a space, a non-ASCII character) is an error."""
    if not value.strip():
        raise ConfigError(f"{name} is set but empty; unset it to disable what it enables, or set a "
                          f"value of at least {MIN_SECRET_LENGTH} characters "
                          "(generate one with: openssl rand -base64 48)")
    if len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{name} is {len(value)} characters; it must be at least {MIN_SECRET_LENGTH} "
                          "(generate one with: openssl rand -base64 48)")
    if not _TOKEN_CHARS.match(value):
        raise ConfigError(f"{name} holds a space or a character outside printable ASCII, which no "
                          "Authorization header can carry; generate one with: openssl rand -base64 48")
    return value


def _seconds(zero_disables: bool = False) -> Parser:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} is {raw!r}; it must be a number of seconds") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} is {raw!r}; it must be a finite number of seconds")
        if value < 0 or (value == 0 and not zero_disables):
            hint = " (or 0 to disable)" if zero_disables else ""
            raise ConfigError(f"{name} is {raw!r}; it must be greater than 0{hint}")
        return value

    return parse


def _whole(least: int, meaning: str) -> Parser:
    def parse(name: str, raw: str) -> int:
        if not re.fullmatch(r"[0-9]{1,7}", raw) or int(raw) < least:
            raise ConfigError(f"{name} is {raw!r}; it must be a whole number ({meaning})")
        return int(raw)

    return parse


def _choice(choices: tuple[str, ...], meaning: str) -> Parser:
    """One of ``choices``, whatever the case of the value."""

    def parse(name: str, raw: str) -> str:
        value = next((c for c in choices if c.lower() == raw.lower()), None)
        if value is None:
            raise ConfigError(f"{name} is {raw!r}; it must be {meaning}")
        return value

    return parse


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(name: str, raw: str) -> bool:
    if raw.lower() not in _ON + _OFF:
        raise ConfigError(f"{name} is {raw!r}; it must be 1 or 0 (true/false, yes/no and on/off "
                          "are accepted too)")
    return raw.lower() in _ON


_SIZE = re.compile(r"\A([0-9]{1,15})\s*(|B|KiB|MiB|GiB)\Z")
_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _size(name: str, raw: str) -> int:
    match = _SIZE.match(raw)
    value = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if value < 1024 * 1024:
        raise ConfigError(f"{name} is {raw!r}; it must be a size of at least 1MiB, in bytes or with "
                          "KiB, MiB or GiB (for example 16777216 or 16MiB)")
    return value


_PEER = re.compile(r"\A(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]{1,5})\Z")


def _items(raw: str) -> list[str]:
    """A comma-separated list, without blanks."""
    return [item for item in (part.strip() for part in raw.split(",")) if item]


def _peers(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    """``host:port`` items (``[v6addr]:port`` for an IPv6 address). A name is resolved at
    every forward, to every address it has: a Kubernetes headless Service's name is the
    whole list of replicas."""
    peers = []
    for item in _items(raw):
        match = _PEER.match(item)
        if match is None or not 1 <= int(match.group("port")) <= 65535:
            raise ConfigError(f"{name}: {item!r} is not host:port (for example "
                              "hotreload-peers.data.svc.cluster.local:8080, 10.0.0.7:8080 or [fd00::7]:8080)")
        peers.append((match.group("v6") or match.group("host"), int(match.group("port"))))
    return tuple(dict.fromkeys(peers))


def _urls(name: str, raw: str) -> tuple[str, ...]:
    urls = tuple(dict.fromkeys(_items(raw)))
    for url in urls:
        with contextlib.suppress(ValueError):  # e.g. an unclosed [IPv6 address
            if urllib.parse.urlsplit(url).scheme in ("http", "https") and urllib.parse.urlsplit(url).hostname:
                continue
        raise ConfigError(f"{name}: {url!r} is not an http(s) URL (for example "
                          "https://site.example.org/hooks/data-changed)")
    return urls


def _networks(name: str, raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in _items(raw):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an address or CIDR block (for example "
                              "10.0.0.0/8, 192.168.1.7 or fd00::/8)") from None
    return tuple(networks)


def _env(*names: str, parse: Parser = _text, default: Any = dataclasses.MISSING) -> Any:
    """A field read from the first of the variables ``names`` that is set, checked by ``parse``
    (the others are neither read nor checked); unset or blank, it keeps ``default``."""
    return dataclasses.field(default=default, metadata={"env": names, "parse": parse})


@dataclass(frozen=True)
class Settings:
    repo_path: str = _env("CFP_DATA_REPO_PATH")
    remote: str | None = _env("CFP_DATA_REMOTE", default=None)
    branch: str | None = _env("CFP_DATA_BRANCH", default=None)
    reload_secret: str | None = _env("CFP_DATA_RELOAD_SECRET", parse=_secret, default=None)
    write_token: str | None = _env("CFP_API_WRITE_TOKEN", parse=_secret, default=None)
    push_backoff_seconds: float = _env("CFP_DATA_PUSH_BACKOFF_SECONDS", parse=_seconds(), default=1.0)
    push_backoff_cap_seconds: float = _env("CFP_DATA_PUSH_BACKOFF_CAP_SECONDS", parse=_seconds(), default=3600.0)
    upkeep_seconds: float = _env("CFP_DATA_UPKEEP_SECONDS", parse=_seconds(zero_disables=True), default=300.0)
    reload_secret_previous: str | None = _env("CFP_DATA_RELOAD_SECRET_PREVIOUS", parse=_secret, default=None)
    """Also accepted (bearer and HMAC) while callers move to the new secret."""
    auth_failures_per_minute: int = _env("CFP_AUTH_FAILURES_PER_MINUTE", default=30, parse=_whole(
        0, "failed authentications per client address and minute; 0 disables"))
    poll_seconds: float = _env("CFP_DATA_POLL_SECONDS", parse=_seconds(zero_disables=True), default=60.0)
    reload_peers: tuple[tuple[str, int], ...] = _env("CFP_RELOAD_PEERS", parse=_peers, default=())
    min_commit_wait_seconds: float = _env("CFP_DATA_MIN_COMMIT_WAIT_SECONDS", parse=_seconds(), default=5.0)
    """How long a read with ``X-Data-Min-Commit`` waits for a reload before 503."""
    snapshot_cache: bool = _env("CFP_SNAPSHOT_CACHE", parse=_switch, default=True)
    network_timeout_s: float = _env("CFP_DATA_NETWORK_TIMEOUT_SECONDS", parse=_seconds(), default=30.0)
    """Connect and each read; a fetch, push or ls-remote as a whole gets 4x (a first clone 10x)."""
    username: str | None = _env("CFP_DATA_USERNAME", default=None)
    password_file: str | None = _env("CFP_DATA_PASSWORD_FILE", parse=_file, default=None)
    """Read at every network operation: a rotated Secret needs no restart."""
    ssh_key_file: str | None = _env("CFP_DATA_SSH_KEY_FILE", parse=_file, default=None)
    ssh_known_hosts_file: str | None = _env("CFP_DATA_SSH_KNOWN_HOSTS_FILE", parse=_file, default=None)
    ssh_command: str | None = _env("GIT_SSH_COMMAND", default=None)
    ca_file: str | None = _env("CFP_DATA_CA_FILE", "GIT_SSL_CAINFO", parse=_file, default=None)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _env(
        "CFP_TRUSTED_PROXIES", parse=_networks, default=())
    http_connection_limit: int = _env("CFP_HTTP_CONNECTION_LIMIT", default=1000, parse=_whole(
        10, "open HTTP connections at most, 10 or more"))
    http_idle_timeout_s: int = _env("CFP_HTTP_IDLE_TIMEOUT_SECONDS", default=75, parse=_whole(
        1, "whole seconds a connection may stay idle, 1 or more"))
    shutdown_drain_s: float = _env("CFP_SHUTDOWN_DRAIN_SECONDS", parse=_seconds(zero_disables=True), default=0.0)
    log_level: str = _env("CFP_LOG_LEVEL", default="INFO", parse=_choice(
        ("DEBUG", "INFO", "WARNING", "ERROR"), "DEBUG, INFO, WARNING or ERROR"))
    max_object_bytes: int = _env("CFP_DATA_MAX_OBJECT_BYTES", parse=_size, default=16 * 1024 * 1024)
    """The biggest blob, commit or tag a fetch takes from the remote (a tree: 8x that)."""
    write_ack: str = _env("CFP_WRITE_ACK", default="local", parse=_choice(("local", "remote"), (
        "local (a 2xx once the commit is made here) or remote (a 2xx once the remote's branch holds it)")))
    notify_urls: tuple[str, ...] = _env("CFP_NOTIFY_URLS", parse=_urls, default=())
    notify_secret: str | None = _env("CFP_NOTIFY_SECRET", parse=_secret, default=None)
    events_max_subscribers: int = _env("CFP_EVENTS_MAX_SUBSCRIBERS", default=500, parse=_whole(
        1, "open /api/events streams at most, 1 or more"))

    @property
    def reload_secrets(self) -> tuple[str, ...]:
        """Every accepted webhook secret, the current one first."""
        return tuple(s for s in (self.reload_secret, self.reload_secret_previous) if s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        if not env.get("CFP_DATA_REPO_PATH", "").strip():
            raise ConfigError("CFP_DATA_REPO_PATH is not set: set it to the path of the bare data "
                              "repository (it is cloned from CFP_DATA_REMOTE if it does not exist)")
        values: dict[str, Any] = {}
        for setting in dataclasses.fields(cls):
            parse: Parser = setting.metadata["parse"]
            for name in setting.metadata["env"]:
                raw = env.get(name)
                if raw is not None and (raw.strip() or parse is _secret):  # a secret set but empty is an error
                    values[setting.name] = parse(name, raw if parse is _secret else raw.strip())
                    break
        settings = cls(**values)
        settings._check_together()
        return settings

    def _check_together(self) -> None:
        """What one setting needs of another."""
        if self.reload_secret_previous is not None and self.reload_secret is None:
            raise ConfigError("CFP_DATA_RELOAD_SECRET_PREVIOUS is set but CFP_DATA_RELOAD_SECRET is not: "
                              "set the new secret too (the previous one is only accepted beside it)")
        if self.reload_peers and self.reload_secret is None:
            raise ConfigError("CFP_RELOAD_PEERS is set but CFP_DATA_RELOAD_SECRET is not: forwarded webhooks "
                              "are signed with that secret, and every replica needs the same one")
        if self.password_file and not self.username:
            raise ConfigError("CFP_DATA_PASSWORD_FILE is set but CFP_DATA_USERNAME is not: set the user name "
                              "the password belongs to (for a GitHub token, any name, e.g. x-access-token)")
        if self.notify_urls and self.notify_secret is None:
            raise ConfigError("CFP_NOTIFY_URLS is set but CFP_NOTIFY_SECRET is not: every notification is signed "
                              "with it (generate one with: openssl rand -base64 48)")
