"""What happens around a project: its updates, its buzz (press), and help-wanted
roles, per project and across all projects (the seed's global feeds). Read-only; every
route under ``/api/projects/{slug}/...`` follows a renamed project's slug history
with a 301, like the project itself (and a buzz item's, its own)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import Any, cast

import falcon

from hotreload.api.errors import ApiError, bad_request
from hotreload.api.read import (
    _int_param,
    _ok,
    _redirect,
    _snapshot,
    cached_body,
    live_project,
    page_body,
    page_of,
    paging,
    tag_params,
    whole_number,
)
from hotreload.data.records import (
    ROLE_STATUSES,
    HelpWantedRole,
    Project,
    ProjectBuzz,
    ProjectUpdate,
    parse_timestamp,
    to_json_dict,
)
from hotreload.data.search import ROLES
from hotreload.data.snapshot import Snapshot, SnapshotHolder


def _children(snap: Snapshot, index: str, sheet: str, project: Project) -> list[Any]:
    table = snap.table(sheet).by_id
    return [table[i] for i in snap.indices[index].get(project.id, ())]


class ProjectUpdatesResource:
    """``/api/projects/{slug}/updates``: newest (highest number) first."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        snap = _snapshot(self.holder, resp)
        pages = paging(req)
        project = live_project(req, snap, slug, "/updates")
        updates = cast(list[ProjectUpdate], _children(snap, "updates_by_project", "project-updates", project))
        updates.sort(key=lambda u: -u.number)
        page_of(resp, snap, pages, updates, lambda u: {**to_json_dict(u), "project": project.slug})


class ProjectUpdateResource:
    """``/api/projects/{slug}/updates/{number}``."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str, number: str) -> None:
        snap = _snapshot(self.holder, resp)
        n = whole_number(number)
        if n is None or n < 1:
            raise bad_request("number", "must be a whole number from 1")
        project = live_project(req, snap, slug, f"/updates/{number}")
        update_id = snap.indices["update_by_project_number"].get((project.id, n))
        if update_id is None:
            raise ApiError(404, "not_found", f"project {project.slug!r} has no update {number}")
        update = snap.table("project-updates").by_id[update_id]
        _ok(resp, snap, {**to_json_dict(update), "project": project.slug})


class ProjectBuzzResource:
    """``/api/projects/{slug}/buzz``: newest (``publishedAt``) first."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        snap = _snapshot(self.holder, resp)
        pages = paging(req)
        project = live_project(req, snap, slug, "/buzz")
        buzz = cast(list[ProjectBuzz], _children(snap, "buzz_by_project", "project-buzz", project))
        buzz.sort(key=lambda b: (b.published_at, b.slug), reverse=True)
        page_of(resp, snap, pages, buzz, lambda b: {**to_json_dict(b), "project": project.slug})


class ProjectBuzzItemResource:
    """``/api/projects/{slug}/buzz/{buzz}``: one buzz item; a renamed one answers 301 to its
    new slug (``slug-history``, entity ``buzz``), as a renamed project does."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str, buzz: str) -> None:
        snap = _snapshot(self.holder, resp)
        project = live_project(req, snap, slug, f"/buzz/{buzz}")
        index = snap.indices["buzz_by_project_slug"]
        buzz_id = index.get((project.id, buzz))
        if buzz_id is None:
            _redirect(req, snap, "buzz", "buzz", buzz, lambda b: (project.id, b) in index,
                      lambda b: f"/api/projects/{project.slug}/buzz/{b}")
            raise ApiError(404, "not_found", f"project {project.slug!r} has no buzz {buzz!r}")
        _ok(resp, snap, {**to_json_dict(snap.table("project-buzz").by_id[buzz_id]), "project": project.slug})


def _since(req: falcon.Request) -> dt.datetime | None:
    raw = req.get_param("since")
    if raw is None:
        return None
    with contextlib.suppress(ValueError):
        if raw.isascii():  # fromisoformat takes other scripts' digits too
            when = dt.datetime.fromisoformat(raw.upper())
            return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
    raise bad_request("since", "must be a date or an RFC 3339 time (2024-05-01 or 2024-05-01T12:00:00Z)")


class GlobalFeedResource:
    """``/api/project-updates`` and ``/api/project-buzz``, the seed's global feeds: the items
    of every live project, newest first (``createdAt`` of an update, ``publishedAt`` of buzz;
    ties by id), ``since`` (only items at or after that time), ``tag`` (repeatable: items of
    projects carrying *any* of them, as the seed reads it), paged (``perPage`` default 30)."""

    def __init__(self, holder: SnapshotHolder, sheet: str, when: str) -> None:
        self.holder, self.sheet, self.when = holder, sheet, when

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snap = _snapshot(self.holder, resp)
        since, handles, pages = _since(req), tag_params(req), paging(req, per_page=30)
        sheet, when = self.sheet, self.when

        def compute(s: Snapshot) -> list[tuple[Any, str]]:
            projects: Mapping[str, Any] = s.table("projects").by_id
            wanted = {s.indices["tag_by_handle"].get(h) for h in handles} - {None}
            found: list[tuple[Any, str]] = []
            item: Any
            for item in s.table(sheet).by_id.values():
                project = projects.get(item.project_id)
                if project is None or project.deleted_at is not None:
                    continue
                if since is not None and parse_timestamp(getattr(item, when)) < since:
                    continue
                if handles and not wanted & s.tag_ids_of("project", project.id):
                    continue
                found.append((item, project.slug))
            found.sort(key=lambda ip: (parse_timestamp(getattr(ip[0], when)), ip[0].id), reverse=True)
            return found

        key = ("feed", sheet, since, handles)
        reads = (sheet, "projects", "tags", "tag-assignments")
        cached_body(resp, snap, (*key, pages), lambda s: page_body(
            pages, s.cached(key, compute, reads), lambda ip: {**to_json_dict(ip[0]), "project": ip[1]}), reads)


def _status(req: falcon.Request, default: str | None) -> str | None:
    status = req.get_param("status")
    if status is None:
        return default
    if status not in ROLE_STATUSES:
        raise bad_request("status", f"must be one of {', '.join(ROLE_STATUSES)}")
    return status


def role_json(snap: Snapshot, role: HelpWantedRole, project_slug: str) -> dict[str, Any]:
    return {**to_json_dict(role), "project": project_slug,
            "tags": [t.handle for t in snap.tags_of("help_wanted_role", role.id)],
            "interestCount": len(snap.indices["interest_by_role"].get(role.id, ()))}


class ProjectHelpWantedResource:
    """``/api/projects/{slug}/help-wanted``: every role of the project (``status``
    filters), newest first."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        snap = _snapshot(self.holder, resp)
        status = _status(req, None)
        pages = paging(req)
        project = live_project(req, snap, slug, "/help-wanted")
        roles = cast(list[HelpWantedRole], _children(snap, "roles_by_project", "help-wanted-roles", project))
        roles = [r for r in roles if status is None or r.status == status]
        roles.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        page_of(resp, snap, pages, roles, lambda r: role_json(snap, r, project.slug))


class HelpWantedResource:
    """``/api/help-wanted``: roles of live projects, ``status`` (default open),
    ``tag`` (every one given), ``commitmentMax`` (hours per week) and ``q`` (full
    text over title and description; best match first, else newest first)."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snap = _snapshot(self.holder, resp)
        status = _status(req, "open")
        q = req.get_param("q")
        handles = tag_params(req)
        most = _int_param(req, "commitmentMax", -1, 0, 168)
        pages = paging(req)

        def compute(s: Snapshot) -> list[tuple[HelpWantedRole, str]]:
            projects: Mapping[str, Any] = s.table("projects").by_id
            table = cast(Mapping[str, HelpWantedRole], s.table("help-wanted-roles").by_id)
            if q is not None:
                roles = [table[i] for i in s.search.search(ROLES, q) if i in table]
            else:
                roles = sorted(table.values(), key=lambda r: (r.created_at, r.id), reverse=True)
            wanted = {s.indices["tag_by_handle"].get(h) for h in handles}
            found = []
            for role in roles:
                project = projects.get(role.project_id)
                if project is None or project.deleted_at is not None:
                    continue
                if status is not None and role.status != status:
                    continue
                if most >= 0 and (role.commitment_hours_per_week is None
                                  or role.commitment_hours_per_week > most):
                    continue
                if wanted and not wanted <= s.tag_ids_of("help_wanted_role", role.id):
                    continue
                found.append((role, project.slug))
            return found

        key = ("help-wanted", q, status, handles, most)
        reads = ("projects", "help-wanted-roles", "tags", "tag-assignments")
        cached_body(resp, snap, (*key, pages), lambda s: page_body(
            pages, s.cached(key, compute, reads), lambda rp: role_json(s, rp[0], rp[1])),
            (*reads, "help-wanted-interest"))  # role_json counts interest
