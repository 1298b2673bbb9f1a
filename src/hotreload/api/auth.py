"""The checks of every token-taking route (the webhook, the writes), as Falcon ``before``
hooks written once: :func:`limit_body` (413), :func:`authenticate` (401, 503, 401).

Credentials: a token (``Authorization: Bearer``, or GitLab's ``X-Gitlab-Token``) or
an HMAC-SHA256 signature of the raw body (``X-Hub-Signature-256``: GitHub's, or any
sender's that signs the same way). Every comparison is constant-time."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import falcon

from hotreload.api.errors import ApiError
from hotreload.config import Settings

_BEARER = re.compile(r"\A[Bb][Ee][Aa][Rr][Ee][Rr] +([!-~]+)\Z")
_TOKEN = re.compile(r"\A[!-~]+\Z")
_SIGNATURE = re.compile(r"\Asha256=([0-9a-fA-F]{64})\Z")


@dataclass(frozen=True)
class Credentials:
    bearer: str | None
    gitlab: str | None
    signature: str | None


def credentials(req: falcon.Request, bearer_only: bool = False) -> Credentials | None:
    """Well-formed credentials from the headers (a bearer token alone if ``bearer_only``), or None."""
    bearer = _BEARER.match((req.get_header("Authorization") or "").strip())
    gitlab = None if bearer_only else _TOKEN.match((req.get_header("X-Gitlab-Token") or "").strip())
    signature = None if bearer_only else _SIGNATURE.match((req.get_header("X-Hub-Signature-256") or "").strip())
    if not bearer and not gitlab and not signature:
        return None
    return Credentials(bearer.group(1) if bearer else None, gitlab.group(0) if gitlab else None,
                       signature.group(1).lower() if signature else None)


def verify(creds: Credentials, secrets: tuple[str, ...], body: bytes) -> bool:
    """True if a token or the body's signature matches an accepted secret (the current one, and
    the previous one during a rotation). Every comparison runs, whatever matched first."""
    ok = False
    for secret in secrets:
        for token in (t for t in (creds.bearer, creds.gitlab) if t is not None):
            ok = hmac.compare_digest(token.encode(), secret.encode()) or ok
        if creds.signature is not None:
            expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            ok = hmac.compare_digest(creds.signature.encode(), expected.encode()) or ok
    return ok


def limit_body(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any], limit: int) -> None:
    """A ``before`` hook: 413 for a body over ``limit`` bytes (by ``Content-Length``, or by
    reading at most ``limit + 1``); else the body, read once, in ``req.context.body``."""
    too_large = ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")
    if (req.content_length or 0) > limit:
        raise too_large
    req.context.body = req.bounded_stream.read(limit + 1)
    if len(req.context.body) > limit:
        raise too_large


def authenticate(req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any],
                 secrets: Callable[[Settings], tuple[str, ...]], unconfigured: str, bearer_only: bool = False) -> None:
    """A ``before`` hook: no well-formed credentials → 401; no secret configured → 503
    ``unconfigured`` (a probe without credentials cannot tell); none matching → 401 (each
    counted by ratelimit.py, which answers 429 past its limit). A signature is of
    ``req.context.body``: :func:`limit_body` runs first."""
    creds = credentials(req, bearer_only)
    if creds is None:
        raise _refused(req, resource)
    accepted = secrets(resource.runtime.settings)
    if not accepted:
        raise ApiError(503, "service_unavailable", unconfigured)
    if not verify(creds, accepted, req.context.get("body") or b""):
        raise _refused(req, resource)


def _refused(req: falcon.Request, resource: Any) -> ApiError:
    """401, or the 429 of api/ratelimit.py once this client has failed too often."""
    return resource.limiter.refusal(req) or ApiError(401, "unauthorized", "Authentication required")
