"""Conditional reads (specs/read-api.md, "Conditional and repeated reads"; decision 92): every data
response carries an ``ETag`` naming the commit it was answered from and the request, and a request
whose ``If-None-Match`` holds it is answered ``304 Not Modified`` before any query work; writers read
the commit of an ``If-Match`` tag back with :func:`parse_etag`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from typing import Any, NamedTuple

import falcon
import msgspec

from hotreload.data.snapshot import SnapshotHolder

CACHE_CONTROL = "public, no-cache"
VARY = "X-Data-Min-Commit"
_TAG = re.compile(r'\A(?:W/)?"?([0-9a-f]{40})-([0-9a-f]{16})"?\Z')


class DataTag(NamedTuple):
    commit: str
    """The full commit id the tagged response was answered from."""
    identity: str
    """16 hex of the hash of the request's path and query."""


def identity(req: falcon.Request) -> str:
    """What selects a data answer, as 16 hex: the path, and the query parameters as the
    app reads them, by name (a name's values in their order), JSON-encoded: unambiguous."""
    text = msgspec.json.encode((req.path, sorted(req.params.items())))
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def etag(commit: str, req: falcon.Request) -> str:
    """The tag of the answer to ``req`` from ``commit`` (quoted, as the header carries it)."""
    return f'"{commit}-{identity(req)}"'


def parse_etag(value: str) -> DataTag | None:
    """The commit and identity of a tag this service gave (quoted or not, weak or not),
    or None for any other value."""
    match = _TAG.match(value.strip())
    return DataTag(match.group(1), match.group(2)) if match else None


def _matches(req: falcon.Request, tag: str, star: bool) -> bool:
    """Does ``If-None-Match`` hold ``tag`` (weak comparison, as RFC 9110 asks for it), or
    ``*`` when ``star`` (once an answer exists: ``*`` never turns a 400 or 404 into a 304)?"""
    return any(t == tag.strip('"') or (star and t == "*") for t in req.if_none_match or ())


class ConditionalMiddleware:
    """ETags, 304s and cache headers for GET and HEAD of the data routes (``routes``:
    their URI templates), in one place."""

    def __init__(self, holder: SnapshotHolder, routes: Collection[str]) -> None:
        self.holder = holder
        self.routes = routes

    def _applies(self, req: falcon.Request) -> bool:
        return req.method in ("GET", "HEAD") and req.uri_template in self.routes

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         params: dict[str, Any]) -> None:
        """A tag for the served commit: 304 at once, the resource never runs."""
        if req.if_none_match is None or not self._applies(req):
            return
        commit = self.holder.current.commit
        tag = etag(commit, req)
        if _matches(req, tag, star=False):
            resp.set_header("X-Data-Commit", commit)
            self._not_modified(resp, tag)
            resp.complete = True

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if not self._applies(req) or (resp.complete and resp.status_code == 304):
            return  # not a data read, or answered 304 before the resource ran
        if resp.get_header("Cache-Control") is None:  # a redirect sets its own
            resp.set_header("Cache-Control", CACHE_CONTROL)
        resp.set_header("Vary", VARY)
        commit = resp.get_header("X-Data-Commit")
        if not req_succeeded or commit is None or resp.status_code != 200:
            return
        tag = etag(commit, req)  # the commit the resource answered from, not the one served now
        resp.set_header("ETag", tag)
        if _matches(req, tag, star=True):  # answered after all (If-None-Match: *, or a reload in between)
            resp.media = None
            self._not_modified(resp, tag)

    @staticmethod
    def _not_modified(resp: falcon.Response, tag: str) -> None:
        resp.status = falcon.HTTP_304
        resp.set_header("ETag", tag)
        resp.set_header("Cache-Control", CACHE_CONTROL)
        resp.set_header("Vary", VARY)
