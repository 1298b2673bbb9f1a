"""What downstream reads to follow the data (specs/downstream.md): ``/api/changes``, the
files that differ between two commits, and ``/api/events``, a stream of server-sent events,
one per swap (:mod:`hotreload.service.events`)."""

from __future__ import annotations

import bisect
import contextlib
import re
import urllib.parse
from itertools import islice
from typing import Any

import falcon

from hotreload.api.conditional import served
from hotreload.api.errors import ApiError, bad_request
from hotreload.api.read import _int_param, envelope
from hotreload.data.records import RecordError, parse_record, to_json_dict
from hotreload.data.snapshot import Snapshot, sheet_for
from hotreload.git.repo import BlobChange, GitError, readable
from hotreload.server import STREAM_KEY
from hotreload.service.events import TooManySubscribers
from hotreload.service.runtime import Runtime

MAX_COMMITS = 100
"""A page lists at most this many of the commits in its range (the newest)."""


def _entry(snap: Snapshot, change: BlobChange, contents: dict[str, bytes] | None) -> dict[str, Any]:
    sheet = sheet_for(snap.sheets, change.path)
    entry: dict[str, Any] = {
        "path": readable(change.path),
        "change": "added" if change.old is None else "removed" if change.new is None else "changed",
        "sheet": sheet.name if sheet else None,
        "key": readable(change.path[len(sheet.root) + 1:-len(".toml")]) if sheet else None}
    if contents is not None:  # as the read API renders it; null if removed, not a record, or invalid
        entry["record"] = None
        if sheet is not None and change.new is not None:
            with contextlib.suppress(RecordError):
                entry["record"] = to_json_dict(parse_record(sheet, change.path, contents[change.new]))
    return entry


def _hex(req: falcon.Request, name: str, default: str | None = None) -> str:
    value = req.get_param(name) or default
    if value is None or not re.fullmatch(r"[0-9a-fA-F]{4,40}", value):
        raise bad_request(name, "must be a commit id, 4 to 40 hex digits (since: the last one you have, an event's id)")
    return value


class Changes:
    """``/api/changes?since=<commit>``: every file that differs between ``since`` and the served
    commit (``to``, which the next page's link pins), in path order, a page after the path
    ``after``. The tree diff costs the change and the folders on the page's path, and nothing is
    kept between pages; from the commit served before the last swap, that swap's own diff (kept
    with its snapshot) answers. 404: a commit this clone lacks; 409: a rewritten history."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def _commit(self, name: str, value: str) -> str:
        sha = self.runtime.repo.resolve_commit_prefix(value)
        with contextlib.suppress(GitError):
            if sha:
                return str(self.runtime.repo.commit(sha).id.decode())
        raise ApiError(404, "not_found", f"{name}: this service has no commit {value}", {name: value})

    def answer(self, req: falcon.Request, snap: Snapshot) -> Any:
        repo = self.runtime.repo
        include, after = req.get_param("include"), _after(req)
        limit = _int_param(req, "perPage", 100, 1, 1000)
        if include not in (None, "records"):
            raise bad_request("include", "must be records (each record's JSON as the read API renders it)")
        since, to = _hex(req, "since"), _hex(req, "to", snap.commit)  # all checked before anything is looked up
        since, to = self._commit("since", since), self._commit("to", to)
        if not (repo.is_ancestor(to, snap.commit) and repo.is_ancestor(since, to)):
            raise ApiError(409, "resync_required", f"{since} is not in the history of {to} served here (the branch "
                           "was rewritten): read every record again (/api/sheets/{sheet}) and follow the feed from "
                           f"{snap.commit}", {"since": since, "servedCommit": snap.commit})
        kept = snap.changes.files
        if kept is not None and (since, to) == (snap.changes.base, snap.commit):  # the last swap's own diff
            start = bisect.bisect_right(kept, after, key=lambda c: c.path)
            page = list(kept[start:start + limit + 1])
        else:
            page = list(islice(repo.diff_trees(repo.tree_of(since), repo.tree_of(to), after), limit + 1))
        more, page = len(page) > limit, page[:limit]
        contents = repo.read_many({c.new for c in page if c.new}) if include else None
        commits = repo.compare(since, to).right_only
        cursor = page[-1].path.encode("utf-8", "surrogateescape") if more else None
        query = {"since": since, "to": to, "perPage": limit, "after": cursor,
                 **({"include": include} if include else {})}
        return envelope([_entry(snap, change, contents) for change in page], {
            "from": since, "to": to, "commits": list(commits[-MAX_COMMITS:]), "commitCount": len(commits),
            "perPage": limit, "next": f"/api/changes?{urllib.parse.urlencode(query)}" if more else None})


def _after(req: falcon.Request) -> str:
    """The cursor: the last path of the page before, percent-encoded from its bytes, so a name
    that is not UTF-8 comes back as it was (its readable form sorts elsewhere: a page would repeat)."""
    values = urllib.parse.parse_qs(req.query_string, errors="surrogateescape").get("after")
    return values[-1] if values else ""


class EventsResource:
    """``/api/events``: ``text/event-stream``, one event per swap (``id`` its commit), heartbeats,
    resumable with ``Last-Event-ID``. The request's worker thread is free once the stream has
    begun: ``hotreload serve``'s loop carries it (server.py); another WSGI server gets a 501."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        last = req.get_header("Last-Event-ID")
        if last is not None and not re.fullmatch(r"[0-9a-f]{40}", last):
            raise bad_request("Last-Event-ID", "must be an event's id (a 40-hex commit)")
        if STREAM_KEY not in req.env:  # a stream here would hold a worker thread for as long as it is open
            raise ApiError(501, "not_implemented", "the event stream is served by hotreload serve only")
        snap = served(self.runtime.holder, resp)
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")  # nginx: pass each event on at once
        if req.method != "HEAD":
            try:
                req.env[STREAM_KEY], start = self.runtime.events.subscribe(last, snap.commit)
            except TooManySubscribers as exc:
                raise ApiError(503, "service_unavailable", f"{exc} (CFP_EVENTS_MAX_SUBSCRIBERS); try again later",
                               headers={"Retry-After": "5"}) from None
            resp.stream = iter([start])  # not a list: waitress would give a list of one a Content-Length
