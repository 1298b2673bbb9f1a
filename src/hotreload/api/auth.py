"""Credentials: a bearer token, or GitHub's HMAC-SHA256 signature of the raw body.
Every comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import falcon

_BEARER = re.compile(r"\A[Bb][Ee][Aa][Rr][Ee][Rr] +([!-~]+)\Z")
_SIGNATURE = re.compile(r"\Asha256=([0-9a-fA-F]{64})\Z")


@dataclass(frozen=True)
class Credentials:
    bearer: str | None
    signature: str | None


def credentials(req: falcon.Request) -> Credentials | None:
    """Well-formed credentials from the headers, or None."""
    bearer = _BEARER.match((req.get_header("Authorization") or "").strip())
    signature = _SIGNATURE.match((req.get_header("X-Hub-Signature-256") or "").strip())
    if not bearer and not signature:
        return None
    return Credentials(bearer.group(1) if bearer else None,
                       signature.group(1).lower() if signature else None)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(creds: Credentials, secrets: tuple[str, ...] | str, body: bytes) -> bool:
    """True if the bearer token or the body's signature matches any accepted
    secret (the current one, and the previous one during a rotation). Every
    comparison runs, whatever matched first."""
    if isinstance(secrets, str):
        secrets = (secrets,)
    ok = False
    for secret in secrets:
        if creds.bearer is not None:
            ok = hmac.compare_digest(creds.bearer.encode(), secret.encode()) or ok
        if creds.signature is not None:
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(creds.signature.encode(), expected.encode()) or ok
    return ok
