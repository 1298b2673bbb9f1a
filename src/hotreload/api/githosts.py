"""Git hosts' own webhooks on the reload endpoint (no workflow needed).

GitHub (``X-GitHub-Event``): ``ping`` answers, a ``push`` to the served branch
reloads with ``commitHash = after``. GitLab (``X-Gitlab-Event``): a ``Push Hook`` to
the served branch does the same. Anything else is acknowledged and ignored (202). The
credentials were already checked (on the raw bytes, for a signature) before this
module parses anything.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from hotreload.api.errors import bad_request, parse_json

ZERO = "0" * 40


@dataclass(frozen=True)
class Decision:
    reply: dict[str, Any] | None = None
    status: int = 200
    commit_hash: str | None = None
    forced: bool = False
    """A force-push: always reconcile (the pre-check cannot tell a rewind)."""


def _ignored(reason: str) -> Decision:
    return Decision({"ignored": True, "reason": reason}, 202)


def _payload(raw: bytes, content_type: str | None) -> dict[str, Any]:
    try:
        if content_type and content_type.startswith("application/x-www-form-urlencoded"):
            form = urllib.parse.parse_qs(raw.decode())
            raw = form.get("payload", [""])[0].encode()
    except UnicodeDecodeError:
        raise bad_request("body", "the payload is not valid JSON") from None
    payload = parse_json(raw)
    if not isinstance(payload, dict):
        raise bad_request("body", "the payload must be a JSON object")
    return payload


def _push(payload: dict[str, Any], served_branch: str) -> Decision:
    """A push event (GitHub's and GitLab's carry the same ``ref`` and ``after``)."""
    ref, after = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not isinstance(after, str):
        raise bad_request("body", "push payload needs string fields ref and after")
    if ref != f"refs/heads/{served_branch}":
        return _ignored(f"push to {ref}, not to the served branch refs/heads/{served_branch}")
    if after == ZERO or payload.get("deleted") is True:
        return _ignored(f"{ref} was deleted; nothing to serve from it")
    if not (4 <= len(after) <= 40) or any(c not in "0123456789abcdefABCDEF" for c in after):
        raise bad_request("after", "must be a commit hash")
    return Decision(commit_hash=after, forced=payload.get("forced") is True)


def github(event: str, raw: bytes, content_type: str | None, served_branch: str) -> Decision:
    if event == "ping":
        return Decision({"pong": True})
    if event != "push":
        return _ignored(f"event {event!r} is not handled; only push and ping are")
    return _push(_payload(raw, content_type), served_branch)


def gitlab(event: str, raw: bytes, served_branch: str) -> Decision:
    """GitLab flags no force-push: a rewind is still seen, as the reconcile of the
    announced commit (the pre-check short-circuits only the served or last-seen tip)."""
    if event != "Push Hook":
        return _ignored(f"GitLab event {event!r} is not handled; only Push Hook is")
    return _push(_payload(raw, "application/json"), served_branch)
