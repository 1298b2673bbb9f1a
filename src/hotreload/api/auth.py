"""Credentials: a token (``Authorization: Bearer``, or GitLab's ``X-Gitlab-Token``) or
an HMAC-SHA256 signature of the raw body (``X-Hub-Signature-256``: GitHub's, or any
sender's that signs the same way). Every comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import falcon

_BEARER = re.compile(r"\A[Bb][Ee][Aa][Rr][Ee][Rr] +([!-~]+)\Z")
_TOKEN = re.compile(r"\A[!-~]+\Z")
_SIGNATURE = re.compile(r"\Asha256=([0-9a-fA-F]{64})\Z")


@dataclass(frozen=True)
class Credentials:
    bearer: str | None
    gitlab: str | None
    signature: str | None


def credentials(req: falcon.Request) -> Credentials | None:
    """Well-formed credentials from the headers, or None."""
    bearer = _BEARER.match((req.get_header("Authorization") or "").strip())
    gitlab = _TOKEN.match((req.get_header("X-Gitlab-Token") or "").strip())
    signature = _SIGNATURE.match((req.get_header("X-Hub-Signature-256") or "").strip())
    if not bearer and not gitlab and not signature:
        return None
    return Credentials(bearer.group(1) if bearer else None, gitlab.group(0) if gitlab else None,
                       signature.group(1).lower() if signature else None)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(creds: Credentials, secrets: tuple[str, ...] | str, body: bytes) -> bool:
    """True if a token or the body's signature matches any accepted secret (the
    current one, and the previous one during a rotation). Every comparison runs,
    whatever matched first."""
    if isinstance(secrets, str):
        secrets = (secrets,)
    ok = False
    for secret in secrets:
        for token in (t for t in (creds.bearer, creds.gitlab) if t is not None):
            ok = hmac.compare_digest(token.encode(), secret.encode()) or ok
        if creds.signature is not None:
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(creds.signature.encode(), expected.encode()) or ok
    return ok
