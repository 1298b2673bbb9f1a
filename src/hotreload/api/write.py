"""Write resources: ``POST /api/{sheet}``, ``PATCH`` and ``DELETE /api/{sheet}/{slug}``
for projects and people, with the bearer ``CFP_API_WRITE_TOKEN`` (checked, then the body
limited, by the hooks of api/auth.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from hotreload.api import auth
from hotreload.api.errors import ApiError, bad_request, parse_json
from hotreload.api.read import person_json, project_json
from hotreload.data.records import Person, Project
from hotreload.service.runtime import Runtime
from hotreload.service.writer import WriteError, WriteResult

MAX_BODY = 256 * 1024
ERRORS = {"bad_request": (400, "bad_request"), "not_found": (404, "not_found"), "conflict": (409, "conflict"),
          "invalid": (422, "invalid_data"), "unavailable": (503, "service_unavailable")}


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


def _run(action: Callable[[], WriteResult]) -> WriteResult:
    try:
        return action()
    except WriteError as exc:
        raise ApiError(*ERRORS[exc.kind], str(exc), {"field": exc.field} if exc.field else None) from None


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

    @authorized
    @limited
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _json_object(req)
        result = _run(lambda: self.runtime.writer.create(self.sheet, body, req.path))
        _respond(self.runtime, resp, result, 201)


class ItemWriteResource:
    def __init__(self, runtime: Runtime, sheet: str) -> None:
        self.runtime = runtime
        self.sheet = sheet

    @authorized
    @limited
    def on_patch(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        body = _json_object(req)
        result = _run(lambda: self.runtime.writer.update(self.sheet, slug, body, req.path))
        _respond(self.runtime, resp, result, 200)

    @authorized
    def on_delete(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        result = _run(lambda: self.runtime.writer.delete(self.sheet, slug, req.path))
        _respond(self.runtime, resp, result, 200)
