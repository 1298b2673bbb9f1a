"""Write resources: ``POST /api/{sheet}``, ``PATCH`` and ``DELETE /api/{sheet}/{slug}``
for projects and people, with the bearer ``CFP_API_WRITE_TOKEN``."""

from __future__ import annotations

import hmac
from typing import Any

import falcon

from hotreload.api import auth
from hotreload.api.errors import ApiError, bad_request, parse_json
from hotreload.api.read import person_json, project_json
from hotreload.data.records import Person, Project
from hotreload.service.runtime import Runtime
from hotreload.service.writer import WriteError, WriteResult

MAX_BODY = 256 * 1024
STATUS = {"bad_request": 400, "not_found": 404, "conflict": 409, "invalid": 422, "unavailable": 503}
CODES = {"bad_request": "bad_request", "not_found": "not_found", "conflict": "conflict",
         "invalid": "invalid_data", "unavailable": "service_unavailable"}


def _authorize(req: falcon.Request, token: str | None) -> None:
    creds = auth.credentials(req)
    if creds is None or creds.bearer is None:
        raise ApiError(401, "unauthorized", "Authentication required")
    if not token:
        raise ApiError(503, "service_unavailable", "writes not configured (set CFP_API_WRITE_TOKEN)")
    if not hmac.compare_digest(creds.bearer.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "Authentication required")


def _json_object(req: falcon.Request) -> dict[str, Any]:
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"request body is larger than {MAX_BODY} bytes")
    media = (req.content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be application/json, not {req.content_type or 'missing'!r}")
    body = parse_json(raw or b"null")
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object")
    return body


def _run(runtime: Runtime, action: Any) -> WriteResult:
    try:
        result: WriteResult = action()
        return result
    except WriteError as exc:
        details = {"field": exc.field} if exc.field else None
        raise ApiError(STATUS[exc.kind], CODES[exc.kind], str(exc), details) from None


def _respond(runtime: Runtime, resp: falcon.Response, result: WriteResult, status: int) -> None:
    snap = runtime.holder.current
    record = result.record
    data = project_json(snap, record) if isinstance(record, Project) else (
        person_json(snap, record) if isinstance(record, Person) else {})
    resp.status = status
    resp.set_header("X-Data-Commit", result.commit)
    resp.media = {"success": True, "data": data}


class CollectionWriteResource:
    def __init__(self, runtime: Runtime, sheet: str) -> None:
        self.runtime = runtime
        self.sheet = sheet

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _authorize(req, self.runtime.settings.write_token)
        body = _json_object(req)
        result = _run(self.runtime, lambda: self.runtime.writer.create(self.sheet, body, req.path))
        _respond(self.runtime, resp, result, 201)


class ItemWriteResource:
    def __init__(self, runtime: Runtime, sheet: str) -> None:
        self.runtime = runtime
        self.sheet = sheet

    def on_patch(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        _authorize(req, self.runtime.settings.write_token)
        body = _json_object(req)
        result = _run(self.runtime,
                      lambda: self.runtime.writer.update(self.sheet, slug, body, req.path))
        _respond(self.runtime, resp, result, 200)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        _authorize(req, self.runtime.settings.write_token)
        result = _run(self.runtime, lambda: self.runtime.writer.delete(self.sheet, slug, req.path))
        _respond(self.runtime, resp, result, 200)
