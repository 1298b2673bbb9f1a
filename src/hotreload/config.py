"""Settings read from the ``CFP_*`` environment variables, validated once at start.

Every problem is reported as a :class:`ConfigError` whose message names the
variable to fix; ``hotreload serve`` prints that one line and exits non-zero.
"""

from __future__ import annotations

import os
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
        secret = get("CFP_DATA_RELOAD_SECRET")
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"CFP_DATA_RELOAD_SECRET is {len(secret)} characters; it must be at least "
                f"{MIN_SECRET_LENGTH} (generate one with: openssl rand -base64 48)"
            )
        backoff = _positive_float(env, "CFP_DATA_PUSH_BACKOFF_SECONDS", 1.0)
        backoff_cap = _positive_float(env, "CFP_DATA_PUSH_BACKOFF_CAP_SECONDS", 3600.0)
        upkeep = _positive_float(env, "CFP_DATA_UPKEEP_SECONDS", 300.0, allow_zero=True)
        return cls(
            repo_path=repo_path,
            remote=get("CFP_DATA_REMOTE"),
            branch=get("CFP_DATA_BRANCH"),
            reload_secret=secret,
            write_token=get("CFP_API_WRITE_TOKEN"),
            push_backoff_seconds=backoff,
            push_backoff_cap_seconds=backoff_cap,
            upkeep_seconds=upkeep,
        )


def _positive_float(env: Mapping[str, str], name: str, default: float, allow_zero: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} is {raw!r}; it must be a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} is {raw!r}; it must be a finite number of seconds")
    if allow_zero and value == 0:
        return 0.0
    if value <= 0:
        hint = " (or 0 to disable)" if allow_zero else ""
        raise ConfigError(f"{name} is {raw!r}; it must be greater than 0{hint}")
    return value
