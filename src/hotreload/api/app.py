"""The Falcon WSGI app: routes, middleware (request id), error handlers, JSON."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import falcon
import falcon.media
import msgspec

from hotreload.api.conditional import DataRead
from hotreload.api.downstream import Changes, EventsResource
from hotreload.api.errors import handle_error
from hotreload.api.freshness import MinCommitMiddleware
from hotreload.api.health import HealthResource, MetricsResource
from hotreload.api.openapi import OpenApiResource
from hotreload.api.ratelimit import FailureLimiter
from hotreload.api.read import ROUTES
from hotreload.api.reload import MAX_BODY as RELOAD_MAX_BODY
from hotreload.api.reload import DiversionsResource, ReloadResource
from hotreload.api.write import MAX_BODY as WRITE_MAX_BODY
from hotreload.api.write import CollectionWriteResource, ItemWriteResource, remote_gate
from hotreload.metrics import Metrics
from hotreload.service.runtime import Runtime

MAX_REQUEST_BODY = max(RELOAD_MAX_BODY, WRITE_MAX_BODY)
"""The server (waitress, server.py) refuses larger bodies without reading them; each
route still answers its own 413 for bodies over its own limit (api/auth.py's hook)."""

_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._-]{8,128}\Z")


class RequestIdMiddleware:
    """Every response carries ``X-Request-Id``: the caller's, if it sent a sane one."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-Id")
        req.context.trace_id = given if given and _REQUEST_ID.match(given) else os.urandom(16).hex()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        resp.set_header("X-Request-Id", str(req.context.get("trace_id") or ""))


class RequestMetricsMiddleware:
    """Every response counted by route template, method and status, and timed."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        """The counter and histogram of each (route, method, status): looked up once
        (prometheus_client's ``labels()`` was a fifth of a memoised read's time)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        key = (req.uri_template or "unmatched", req.method, resp.status_code)  # bounded: never the raw path
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (self.metrics.http_requests.labels(key[0], key[1], str(key[2])),
                                          self.metrics.http_duration.labels(key[0]))
        series[0].inc()
        started = req.context.get("started")
        if started is not None:
            series[1].observe(time.perf_counter() - started)


def _with_head(resource: Any) -> Any:
    """HEAD answers wherever GET does: the same status and headers, no body
    (the WSGI server drops it)."""
    if hasattr(resource, "on_get") and not hasattr(resource, "on_head"):
        resource.on_head = resource.on_get
    return resource


class _Router:
    """Methods of one path served by different resources (reads vs writes)."""

    def __init__(self, *resources: Any) -> None:
        for resource in resources:
            for name in dir(resource):
                if name.startswith("on_"):
                    setattr(self, name, getattr(resource, name))


def create_app(runtime: Runtime, threads: int = 8) -> falcon.App[falcon.Request, falcon.Response]:
    """The app; ``threads`` is the server's worker count (``--threads``)."""
    limiter = FailureLimiter(runtime.settings.auth_failures_per_minute, trusted=runtime.settings.trusted_proxies,
                             on_limited=runtime.metrics.auth_rate_limited.inc)
    middleware: list[Any] = [RequestIdMiddleware(), RequestMetricsMiddleware(runtime.metrics),
                             MinCommitMiddleware(runtime, threads)]
    app = falcon.App(middleware=middleware, cors_enable=False)
    json_handler = falcon.media.JSONHandler(dumps=msgspec.json.encode, loads=msgspec.json.decode)
    app.req_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = json_handler
    app.req_options.strip_url_path_trailing_slash = True

    def route(path: str, resource: Any) -> None:
        app.add_route(path, _with_head(resource))

    route("/api/health", HealthResource(runtime))
    route("/metrics", MetricsResource(runtime))
    route("/api/openapi.json", OpenApiResource())
    route("/api/_internal/reload-data", ReloadResource(runtime, limiter))
    route("/api/_internal/diversions", DiversionsResource(runtime, limiter))
    gate = remote_gate(runtime, threads)
    writes = {"/api/projects": CollectionWriteResource(runtime, "projects", limiter, gate),
              "/api/projects/{slug}": ItemWriteResource(runtime, "projects", limiter, gate),
              "/api/people": CollectionWriteResource(runtime, "people", limiter, gate),
              "/api/people/{slug}": ItemWriteResource(runtime, "people", limiter, gate)}
    for path, answer in {**ROUTES, "/api/changes": Changes(runtime).answer}.items():
        read = DataRead(runtime.holder, answer)
        route(path, _Router(read, writes[path]) if path in writes else read)
    route("/api/events", EventsResource(runtime))

    app.add_error_handler(Exception, handle_error)
    app.add_error_handler(falcon.HTTPError, handle_error)  # else falcon's own handler would win
    return app
