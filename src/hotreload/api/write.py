"""Write resources: ``POST /api/{sheet}``, ``PATCH`` and ``DELETE /api/{sheet}/{slug}``
for projects and people, with the bearer ``CFP_API_WRITE_TOKEN`` (checked, then the body
limited, by the hooks of api/auth.py); conditional with ``If-Match`` (PATCH, DELETE: the
record's ETag) and ``If-None-Match: *`` (POST)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import falcon

from hotreload.api import auth
from hotreload.api.conditional import parse_etag
from hotreload.api.errors import ApiError, bad_request, parse_json
from hotreload.api.freshness import WAITING_SHARE
from hotreload.api.ratelimit import FailureLimiter
from hotreload.api.read import person_json, project_json
from hotreload.data.records import Person, Project, Record
from hotreload.data.snapshot import Snapshot
from hotreload.service.runtime import Runtime
from hotreload.service.writer import WriteError, WriteResult

MAX_BODY = 256 * 1024
ERRORS = {"bad_request": (400, "bad_request"), "not_found": (404, "not_found"), "conflict": (409, "conflict"),
          "precondition": (412, "precondition_failed"), "invalid": (422, "invalid_data"),
          "unavailable": (503, "service_unavailable")}


authorized = falcon.before(auth.authenticate, lambda settings: (settings.write_token,) if settings.write_token else (),
                           "writes not configured (set CFP_API_WRITE_TOKEN)", bearer_only=True)
"""401 without a bearer token, 503 when ``CFP_API_WRITE_TOKEN`` is unset, 401 when it differs."""
limited = falcon.before(auth.limit_body, MAX_BODY)


def _json_object(req: falcon.Request) -> dict[str, Any]:
    media = (req.content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be application/json, not {req.content_type or 'missing'!r}")
    body = parse_json(req.context.body or b"null")
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object")
    return body


def _if_match(req: falcon.Request) -> list[str] | None:
    """The commits of ``If-Match``'s tags (None: no header, or ``*``, which any existing
    record matches). A tag this service did not give names no commit, so it never matches;
    a header holding no tag at all (empty: a script's GET failed) matches nothing either."""
    if req.get_header("If-None-Match") is not None:
        raise bad_request("If-None-Match", "only POST takes it (as *); PATCH and DELETE take If-Match")
    if req.get_header("If-Match") is None:
        return None
    tags = req.if_match or ()
    if "*" in tags:
        return None
    return [tag.commit for tag in map(parse_etag, map(str, tags)) if tag is not None]


def _if_none_match(req: falcon.Request) -> bool:
    """``If-None-Match: *`` on a create: refuse (412) to create over an existing slug."""
    if req.get_header("If-Match") is not None:
        raise bad_request("If-Match", "a create has no record to match yet; use If-None-Match: *")
    if req.get_header("If-None-Match") is None:
        return False
    if list(map(str, req.if_none_match or ())) != ["*"]:
        raise bad_request("If-None-Match", "only * is meaningful on a create")
    return True


def _record_json(runtime: Runtime, record: Record, snap: Snapshot | None = None) -> dict[str, Any]:
    """``record`` as its GET gives it, with what ``snap`` (else the served snapshot) links to it."""
    snap = snap or runtime.holder.current
    return project_json(snap, record) if isinstance(record, Project) else (
        person_json(snap, record) if isinstance(record, Person) else {})


def remote_gate(runtime: Runtime, threads: int) -> threading.BoundedSemaphore | None:
    """``CFP_WRITE_ACK=remote``: the writes that may wait on the remote at once, at most a quarter of
    the worker threads (as for ``X-Data-Min-Commit``), so a stalled remote never takes every worker
    from the readers (decision 148). None: ``local`` writes never wait on the network."""
    return threading.BoundedSemaphore(max(1, threads // WAITING_SHARE)) if runtime.settings.write_ack == "remote" \
        else None


def _run(runtime: Runtime, action: Callable[[], WriteResult], gate: threading.BoundedSemaphore | None) -> WriteResult:
    if gate is not None and not gate.acquire(blocking=False):
        raise ApiError(503, "service_unavailable", "a quarter of the worker threads (--threads) already wait "
                       "for the remote (CFP_WRITE_ACK=remote); nothing was saved; retry", {"outcome": "refused"},
                       {"Retry-After": "1"})
    try:
        return action()
    except WriteError as exc:
        details: dict[str, Any] = {"field": exc.field} if exc.field else {}
        if exc.current is not None:  # a 409 or 412: what the record holds now
            details["current"] = _record_json(runtime, exc.current, exc.seen_in)
        if exc.kind == "unavailable":
            details["outcome"] = exc.outcome
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        raise ApiError(*ERRORS[exc.kind], str(exc), details or None, headers) from None
    finally:
        if gate is not None:
            gate.release()


class _Writes:
    """What the write resources share: the runtime, the sheet, the limiter (api/auth.py's hook asks
    it) and the remote gate."""

    def __init__(self, runtime: Runtime, sheet: str, limiter: FailureLimiter,
                 gate: threading.BoundedSemaphore | None) -> None:
        self.runtime, self.sheet, self.limiter, self.gate = runtime, sheet, limiter, gate

    def _write(self, resp: falcon.Response, action: Callable[[], WriteResult], status: int) -> None:
        """One write (one commit), answered with the record and the commit."""
        result = _run(self.runtime, action, self.gate)
        resp.status = status
        resp.set_header("X-Data-Commit", result.commit)
        resp.media = {"success": True, "data": _record_json(self.runtime, result.record, result.snapshot),
                      "meta": {"commit": result.commit, "pushed": result.pushed}}


class CollectionWriteResource(_Writes):
    @authorized
    @limited
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body, if_none_match = _json_object(req), _if_none_match(req)
        self._write(resp, lambda: self.runtime.writer.create(self.sheet, body, req.path, if_none_match), 201)


class ItemWriteResource(_Writes):
    @authorized
    @limited
    def on_patch(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        body, if_match = _json_object(req), _if_match(req)
        self._write(resp, lambda: self.runtime.writer.update(self.sheet, slug, body, req.path, if_match), 200)

    @authorized
    def on_delete(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        if_match = _if_match(req)
        self._write(resp, lambda: self.runtime.writer.delete(self.sheet, slug, req.path, if_match), 200)
