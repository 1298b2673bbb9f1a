"""One JSON error envelope for every failure, written once:
``{"success": false, "error": {"code", "message", "traceId", "details"?}}``."""

from __future__ import annotations

import json
import logging
from typing import Any

import falcon

log = logging.getLogger(__name__)

STATUS_CODES = {
    301: "moved_permanently", 400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 411: "length_required", 412: "precondition_failed",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_data", 429: "too_many_requests",
    500: "internal_error", 502: "fetch_failed", 503: "service_unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(400, "bad_request", f"{field}: {message}", {"field": field})


def envelope(code: str, message: str, trace_id: str, details: dict[str, Any] | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "traceId": trace_id}
    if details:
        error["details"] = details
    return {"success": False, "error": error}


def handle_error(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    """Every failure in the envelope: an :class:`ApiError`, falcon's own (no route, a method not
    allowed, ...), and any other exception as a 500, logged with the traceId."""
    details: dict[str, Any] | None = None
    if isinstance(ex, ApiError):
        status, code, message, details, headers = ex.status, ex.code, ex.message, ex.details, ex.headers
        if status == 401:  # RFC 7235: say which scheme to use
            headers = {**headers, "WWW-Authenticate": 'Bearer realm="hotreload"'}
    elif isinstance(ex, falcon.HTTPError):
        status, code, headers = ex.status_code, STATUS_CODES.get(ex.status_code, "error"), dict(ex.headers or {})
        message = (f"no route for {req.method} {req.path}" if status == 404
                   else f"{req.method} is not allowed on {req.path}" if status == 405
                   else ex.description or ex.title or "request failed")
    else:
        log.exception("unhandled error on %s %s", req.method, req.path,
                      extra={"traceId": req.context.get("trace_id")})
        status, code, headers = 500, "internal_error", {}
        message = "internal error; see the server log for this traceId"
    resp.set_headers(headers)
    resp.status = status
    resp.media = envelope(code, message, str(req.context.get("trace_id") or ""), details)
    resp.complete = True


MAX_JSON_DEPTH = 32


def parse_json(raw: bytes, field: str = "body") -> Any:
    """JSON from a request body, or a 400 naming ``field``: malformed, or nested
    deeper than :data:`MAX_JSON_DEPTH` (checked without recursion, so no body can
    exhaust the stack)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise bad_request(field, f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise bad_request(field, "is not valid JSON") from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise bad_request(field, f"is nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value
