"""Data reads (:class:`DataRead`): answered from one snapshot, named by ``X-Data-Commit``, and
conditional (specs/read-api.md, "Conditional and repeated reads"; decision 92): every data response
carries an ``ETag`` naming the commit it was answered from and the request, and a request whose
``If-None-Match`` holds it is answered ``304 Not Modified`` before any query work; writers read the
commit of an ``If-Match`` tag back with :func:`parse_etag`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import falcon
import msgspec

from hotreload.data.snapshot import Snapshot, SnapshotHolder

CACHE_CONTROL = "public, no-cache"
VARY = "X-Data-Min-Commit"
_TAG = re.compile(r'\A(?:W/)?"?([0-9a-f]{40})-([0-9a-f]{16})"?\Z')
Answer = Callable[..., Any]
"""``answer(req, snapshot, **route_params)``: the media of a data read (api/read.py's routes)."""


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


def conditional(req: falcon.Request, resp: falcon.Response, commit: str, answer: Callable[[], Any]) -> None:
    """Answer a data read from ``commit``: 304 when ``If-None-Match`` holds its tag (``answer``
    never runs), else ``answer()`` with the tag; the cache headers on every answer, errors
    included (a redirect's own ``Cache-Control`` replaces them)."""
    resp.set_header("Cache-Control", CACHE_CONTROL)
    resp.set_header("Vary", VARY)
    tag = etag(commit, req)
    if not _matches(req, tag, star=False):
        media = answer()
        resp.set_header("ETag", tag)
        if not _matches(req, tag, star=True):
            resp.media = media
            return
    resp.set_header("ETag", tag)
    resp.status = falcon.HTTP_304


def served(holder: SnapshotHolder, resp: falcon.Response) -> Snapshot:
    """The one snapshot this request reads. Its commit goes on the response at once,
    so a 404 or 400 answered from it names it too."""
    snap = holder.current
    resp.set_header("X-Data-Commit", snap.commit)
    return snap


class DataRead:
    """GET of one data route: its :data:`Answer` from the served snapshot, conditional
    (:func:`conditional`)."""

    def __init__(self, holder: SnapshotHolder, answer: Answer) -> None:
        self.holder, self.answer = holder, answer

    def on_get(self, req: falcon.Request, resp: falcon.Response, **params: str) -> None:
        snap = served(self.holder, resp)
        conditional(req, resp, snap.commit, lambda: self.answer(req, snap, **params))
