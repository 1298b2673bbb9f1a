"""Settings read from the ``CFP_*`` environment variables, validated once at start.

Every problem is reported as a :class:`ConfigError` whose message names the
variable to fix; ``hotreload serve`` prints that one line and exits non-zero.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Settings:
    repo_path: str
    remote: str | None
    branch: str | None
    reload_secret: str | None
    write_token: str | None
    push_backoff_seconds: float = 1.0
    push_backoff_cap_seconds: float = 3600.0
    upkeep_seconds: float = 300.0
    """Repository upkeep interval (pack loose objects, commit-graph); 0 disables."""
    reload_secret_previous: str | None = None
    """Also accepted (bearer and HMAC) while callers move to the new secret."""
    auth_failures_per_minute: int = 30
    """Failed authentications per client address and minute before 429; 0 disables."""
    poll_seconds: float = 60.0
    """Ask the remote for the branch tip this often (refs only) and reload if it moved; 0 disables."""
    reload_peers: tuple[tuple[str, int], ...] = ()
    """``host:port`` of the replicas a webhook is forwarded to (a name may resolve to several)."""
    min_commit_wait_seconds: float = 5.0
    """How long a read with ``X-Data-Min-Commit`` waits for a reload before 503."""
    snapshot_cache: bool = True
    """Keep the built snapshot in the clone (``hotreload-snapshot.cache``) so a restart
    costs the change since, not a full build."""
    network_timeout_s: float = 30.0
    """Connect and each read; a fetch, push or ls-remote as a whole gets 4x (a first clone 10x)."""
    username: str | None = None
    password_file: str | None = None
    """Read at every network operation: a rotated Secret needs no restart."""
    ssh_key_file: str | None = None
    ssh_known_hosts_file: str | None = None
    ssh_command: str | None = None
    """``GIT_SSH_COMMAND``, as git reads it."""
    ca_file: str | None = None
    """``CFP_DATA_CA_FILE``, else git's ``GIT_SSL_CAINFO``: the CA bundle for https remotes."""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Peers whose ``Forwarded``/``X-Forwarded-For`` name the client."""
    http_connection_limit: int = 1000
    http_idle_timeout_s: int = 75
    shutdown_drain_s: float = 0.0
    """After SIGTERM: health answers 503 at once, the listener closes this much later."""
    log_level: str = "INFO"
    max_object_bytes: int = 16 * 1024 * 1024
    """The biggest blob, commit or tag a fetch takes from the remote (a tree: 8x that)."""
    write_ack: str = "local"
    """``CFP_WRITE_ACK``: what a write's 2xx waits for: ``local`` (the commit is here; the push
    daemon delivers it) or ``remote`` (the remote's branch holds it)."""
    notify_urls: tuple[str, ...] = ()
    """Each gets a signed POST per swap (service/notify.py)."""
    notify_secret: str | None = None
    events_max_subscribers: int = 500
    """Open ``/api/events`` streams at most; one more answers 503."""

    @property
    def reload_secrets(self) -> tuple[str, ...]:
        """Every accepted webhook secret, the current one first."""
        return tuple(s for s in (self.reload_secret, self.reload_secret_previous) if s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        repo_path = get("CFP_DATA_REPO_PATH")
        if repo_path is None:
            raise ConfigError(
                "CFP_DATA_REPO_PATH is not set: set it to the path of the bare data "
                "repository (it is cloned from CFP_DATA_REMOTE if it does not exist)"
            )
        secret = _secret(env, "CFP_DATA_RELOAD_SECRET")
        previous = _secret(env, "CFP_DATA_RELOAD_SECRET_PREVIOUS")
        if previous is not None and secret is None:
            raise ConfigError("CFP_DATA_RELOAD_SECRET_PREVIOUS is set but CFP_DATA_RELOAD_SECRET is not: "
                              "set the new secret too (the previous one is only accepted beside it)")
        write_token = _secret(env, "CFP_API_WRITE_TOKEN")
        backoff = _positive_float(env, "CFP_DATA_PUSH_BACKOFF_SECONDS", 1.0)
        backoff_cap = _positive_float(env, "CFP_DATA_PUSH_BACKOFF_CAP_SECONDS", 3600.0)
        upkeep = _positive_float(env, "CFP_DATA_UPKEEP_SECONDS", 300.0, allow_zero=True)
        poll = _positive_float(env, "CFP_DATA_POLL_SECONDS", 60.0, allow_zero=True)
        min_commit_wait = _positive_float(env, "CFP_DATA_MIN_COMMIT_WAIT_SECONDS", 5.0)
        snapshot_cache = _switch(env, "CFP_SNAPSHOT_CACHE", True)
        peers = parse_peers(env.get("CFP_RELOAD_PEERS", ""))
        if peers and secret is None:
            raise ConfigError("CFP_RELOAD_PEERS is set but CFP_DATA_RELOAD_SECRET is not: forwarded webhooks "
                              "are signed with that secret, and every replica needs the same one")
        failures = _whole(env, "CFP_AUTH_FAILURES_PER_MINUTE", 30, 0,
                          "failed authentications per client address and minute; 0 disables")
        username, password_file = get("CFP_DATA_USERNAME"), _file(env, "CFP_DATA_PASSWORD_FILE")
        if password_file and not username:
            raise ConfigError("CFP_DATA_PASSWORD_FILE is set but CFP_DATA_USERNAME is not: set the user name "
                              "the password belongs to (for a GitHub token, any name, e.g. x-access-token)")
        write_ack = (get("CFP_WRITE_ACK") or "local").lower()
        if write_ack not in ("local", "remote"):
            raise ConfigError(f"CFP_WRITE_ACK is {env['CFP_WRITE_ACK']!r}; it must be local (a 2xx once the commit "
                              "is made here) or remote (a 2xx once the remote's branch holds it)")
        notify_urls, notify_secret = parse_urls(env.get("CFP_NOTIFY_URLS", "")), _secret(env, "CFP_NOTIFY_SECRET")
        if notify_urls and notify_secret is None:
            raise ConfigError("CFP_NOTIFY_URLS is set but CFP_NOTIFY_SECRET is not: every notification is signed "
                              "with it (generate one with: openssl rand -base64 48)")
        log_level = (get("CFP_LOG_LEVEL") or "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"CFP_LOG_LEVEL is {env['CFP_LOG_LEVEL']!r}; it must be DEBUG, INFO, WARNING or ERROR")
        return cls(
            repo_path=repo_path,
            remote=get("CFP_DATA_REMOTE"),
            branch=get("CFP_DATA_BRANCH"),
            reload_secret=secret,
            write_token=write_token,
            reload_secret_previous=previous,
            push_backoff_seconds=backoff,
            push_backoff_cap_seconds=backoff_cap,
            upkeep_seconds=upkeep,
            auth_failures_per_minute=failures,
            poll_seconds=poll,
            reload_peers=peers,
            min_commit_wait_seconds=min_commit_wait,
            snapshot_cache=snapshot_cache,
            network_timeout_s=_positive_float(env, "CFP_DATA_NETWORK_TIMEOUT_SECONDS", 30.0),
            username=username,
            password_file=password_file,
            ssh_key_file=_file(env, "CFP_DATA_SSH_KEY_FILE"),
            ssh_known_hosts_file=_file(env, "CFP_DATA_SSH_KNOWN_HOSTS_FILE"),
            ssh_command=get("GIT_SSH_COMMAND"),
            ca_file=_file(env, "CFP_DATA_CA_FILE") or _file(env, "GIT_SSL_CAINFO"),
            trusted_proxies=parse_networks(env.get("CFP_TRUSTED_PROXIES", "")),
            http_connection_limit=_whole(env, "CFP_HTTP_CONNECTION_LIMIT", 1000, 10,
                                         "open HTTP connections at most, 10 or more"),
            http_idle_timeout_s=_whole(env, "CFP_HTTP_IDLE_TIMEOUT_SECONDS", 75, 1,
                                       "whole seconds a connection may stay idle, 1 or more"),
            shutdown_drain_s=_positive_float(env, "CFP_SHUTDOWN_DRAIN_SECONDS", 0.0, allow_zero=True),
            log_level=log_level,
            max_object_bytes=_size(env, "CFP_DATA_MAX_OBJECT_BYTES", 16 * 1024 * 1024),
            write_ack=write_ack,
            notify_urls=notify_urls,
            notify_secret=notify_secret,
            events_max_subscribers=_whole(env, "CFP_EVENTS_MAX_SUBSCRIBERS", 500, 1,
                                          "open /api/events streams at most, 1 or more"),
        )


_PEER = re.compile(r"\A(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]{1,5})\Z")


def parse_peers(raw: str) -> tuple[tuple[str, int], ...]:
    """``CFP_RELOAD_PEERS``: comma-separated ``host:port`` (``[v6addr]:port`` for an
    IPv6 address). A name is resolved at every forward, to every address it has:
    a Kubernetes headless Service's name is the whole list of replicas."""
    peers = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        match = _PEER.match(item)
        port = int(match.group("port")) if match else 0
        if match is None or not 1 <= port <= 65535:
            raise ConfigError(f"CFP_RELOAD_PEERS: {item!r} is not host:port (for example "
                              "hotreload-peers.data.svc.cluster.local:8080, 10.0.0.7:8080 or [fd00::7]:8080)")
        peers.append((match.group("v6") or match.group("host"), port))
    return tuple(dict.fromkeys(peers))


def parse_urls(raw: str) -> tuple[str, ...]:
    """``CFP_NOTIFY_URLS``: comma-separated http(s) URLs."""
    urls = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    for url in urls:
        with contextlib.suppress(ValueError):  # e.g. an unclosed [IPv6 address
            if urllib.parse.urlsplit(url).scheme in ("http", "https") and urllib.parse.urlsplit(url).hostname:
                continue
        raise ConfigError(f"CFP_NOTIFY_URLS: {url!r} is not an http(s) URL (for example "
                          "https://site.example.org/hooks/data-changed)")
    return urls


def parse_networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``CFP_TRUSTED_PROXIES``: comma-separated addresses or CIDR blocks."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(f"CFP_TRUSTED_PROXIES: {item!r} is not an address or CIDR block (for example "
                                  "10.0.0.0/8, 192.168.1.7 or fd00::/8)") from None
    return tuple(networks)


def _file(env: Mapping[str, str], name: str) -> str | None:
    """A path a setting names, which must be a readable file now (it is read again at use)."""
    path = env.get(name, "").strip()
    if not path:
        return None
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ConfigError(f"{name} is {path!r}, which is not a readable file; mount the Secret there or "
                          "unset the variable")
    return path


def _whole(env: Mapping[str, str], name: str, default: int, least: int, meaning: str) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,7}", raw) or int(raw) < least:
        raise ConfigError(f"{name} is {raw!r}; it must be a whole number ({meaning})")
    return int(raw)


_TOKEN_CHARS = re.compile(r"\A[!-~]+\Z")  # what an Authorization: Bearer header can carry


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret or token: unset is None; set but empty, short, or holding what a
    bearer header cannot carry (a space, a non-ASCII character) is an error."""
    if name not in env:
        return None
    value = env[name]
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


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in _ON + _OFF:
        raise ConfigError(f"{name} is {env[name]!r}; it must be 1 or 0 (true/false, yes/no and on/off "
                          "are accepted too)")
    return raw in _ON


_SIZE = re.compile(r"\A([0-9]{1,15})\s*(|B|KiB|MiB|GiB)\Z")
_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _size(env: Mapping[str, str], name: str, default: int, least: int = 1024 * 1024) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    match = _SIZE.match(raw)
    value = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if value < least:
        raise ConfigError(f"{name} is {raw!r}; it must be a size of at least 1MiB, in bytes or with "
                          "KiB, MiB or GiB (for example 16777216 or 16MiB)")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False,
                    unit: str = "seconds") -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} is {raw!r}; it must be a number of {unit}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} is {raw!r}; it must be a finite number of {unit}")
    if allow_zero and value == 0:
        return 0.0
    if value <= 0:
        hint = " (or 0 to disable)" if allow_zero else ""
        raise ConfigError(f"{name} is {raw!r}; it must be greater than 0{hint}")
    return value
