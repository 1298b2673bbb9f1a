"""Read resources. Each request takes ``holder.current`` once and answers from
that snapshot only; ``X-Data-Commit`` names its commit."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, cast

import falcon
import msgspec
import numpy as np

from hotreload.api.errors import ApiError, bad_request
from hotreload.data.facets import STAGE_CODE
from hotreload.data.records import STAGES, TAG_NAMESPACES, Entry, Person, Project, Tag, to_json_dict
from hotreload.data.search import PEOPLE, PROJECTS, Ranked
from hotreload.data.snapshot import Snapshot, SnapshotHolder

TAG_HANDLE = re.compile(r"\A(topic|tech|event)\.[a-z0-9][a-z0-9._-]{0,79}\Z")
FACET_NAMES = {"topic": "byTopic", "tech": "byTech", "event": "byEvent"}
FACET_SIZE = 10
PROJECT_QUERY_READS = ("projects", "tags", "tag-assignments")
"""Every sheet :func:`_project_query` and :func:`project_json` read (memo answers and
rendered pages carry over while none changes)."""
PERSON_READS = ("people", "tags", "tag-assignments")
"""Every sheet :func:`_people` and :func:`person_json` read."""


def _int_param(req: falcon.Request, name: str, default: int, low: int, high: int) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    # ASCII digits only, and few of them: isdigit() accepts "²", which int() refuses
    value = whole_number(raw)
    if value is None or not low <= value <= high:
        raise bad_request(name, f"must be a whole number from {low} to {high}")
    return value


_DIGITS = re.compile(r"[0-9]{1,9}")


def paging(req: falcon.Request, per_page: int = 20) -> tuple[int, int]:
    """``page`` and ``perPage`` (default ``per_page``), checked. Handlers check every parameter
    before they look anything up: a bad one is a 400 even where the record moved (no 301 that
    would carry the bad query on)."""
    return _int_param(req, "page", 1, 1, 1_000_000), _int_param(req, "perPage", per_page, 1, 100)


def tag_params(req: falcon.Request) -> tuple[str, ...]:
    """The ``tag`` parameters (repeatable), checked, deduplicated and sorted."""
    handles = tuple(sorted(set(req.get_param_as_list("tag") or [])))
    for handle in handles:
        if not TAG_HANDLE.match(handle):
            raise bad_request("tag", f"{handle!r} must look like namespace.slug "
                              f"(namespace one of {', '.join(TAG_NAMESPACES)})")
    return handles


def whole_number(raw: str) -> int | None:
    """``raw`` as a whole number when it is 1-9 ASCII digits, else None."""
    return int(raw) if _DIGITS.fullmatch(raw) else None


def page_body(pages: tuple[int, int], items: Sequence[Any], render: Callable[[Any], Any]) -> dict[str, Any]:
    """The body of one page of ``items`` (``pages`` from :func:`paging`), rendered, with the total."""
    page, per_page = pages
    start = (page - 1) * per_page
    return envelope([render(x) for x in items[start:start + per_page]],
                    {"total": len(items), "page": page, "perPage": per_page})


def page_of(resp: falcon.Response, snap: Snapshot, pages: tuple[int, int], items: Sequence[Any],
            render: Callable[[Any], Any]) -> None:
    """One page of ``items``, rendered, with the total."""
    resp.media = page_body(pages, items, render)


def cached_body(resp: falcon.Response, snap: Snapshot, key: Hashable, body: Callable[[Snapshot], dict[str, Any]],
                reads: tuple[str, ...]) -> None:
    """The answer to a read of memoised data: ``body(snapshot)`` encoded once per snapshot and
    kept with its pages (``reads``: every sheet ``body`` reads, answer and rendering), so a
    repeated read costs a lookup and the write of its bytes (issue #17)."""
    resp.media = snap.page(key, lambda s: msgspec.Raw(msgspec.json.encode(body(s))), reads)


class Moved(ApiError):
    """301 to where a renamed record now answers (see :func:`live_project`)."""

    def __init__(self, what: str, old: str, new: str, location: str) -> None:
        super().__init__(301, "moved_permanently", f"{what} {old!r} is now {new!r}",
                         {"location": location},
                         # short: the redirect ends when the slug-history entry expires
                         {"Location": location, "Cache-Control": "public, max-age=300"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _redirect(req: falcon.Request, snap: Snapshot, entity: str, what: str, slug: str,
              live: Callable[[str], bool], path: Callable[[str], str]) -> None:
    """Raise :class:`Moved` when ``slug`` is not live but ``slug-history`` says where
    it went; the rest of the URL and its query are kept."""
    target = snap.slug_redirect(entity, slug, live, _now())
    if target is not None:
        query = f"?{req.query_string}" if req.query_string else ""
        raise Moved(what, slug, target, path(target) + query)


def _project_live(snap: Snapshot, slug: str) -> Project | None:
    project = snap.project_by_slug(slug)
    return project if project is not None and project.deleted_at is None else None


def live_project(req: falcon.Request, snap: Snapshot, slug: str, suffix: str = "") -> Project:
    """The live project at ``slug``; else 301 to its new slug (``slug-history``),
    keeping ``suffix`` (the rest of the path); else 404."""
    project = _project_live(snap, slug)
    if project is None:
        _redirect(req, snap, "project", "project", slug, lambda s: _project_live(snap, s) is not None,
                  lambda s: f"/api/projects/{s}{suffix}")
        raise ApiError(404, "not_found", f"no project with slug {slug!r}")
    return project


def _person_live(snap: Snapshot, slug: str) -> Person | None:
    person = snap.person_by_slug(slug)
    return person if person is not None and person.deleted_at is None else None


def _legacy_id(req: falcon.Request, name: str) -> int | None:
    return _int_param(req, name, 0, 1, 999_999_999) if req.get_param(name) is not None else None


def _by_legacy_id(snap: Snapshot, index: str, sheet: str, legacy_id: int) -> Any:
    record_id = snap.indices[index].get(legacy_id)
    record = snap.table(sheet).by_id.get(record_id) if record_id else None
    return record if record is not None and getattr(record, "deleted_at", None) is None else None


def _legacy_redirect(req: falcon.Request, snap: Snapshot, kind: str) -> None:
    """The seed's old links, ``/projects?ID=<n>``: 301 to the record's page, or 404."""
    legacy_id = _legacy_id(req, "ID")
    if legacy_id is None:
        return
    sheet, index = ("projects", "project_by_legacy_id") if kind == "project" else \
        ("people", "person_by_legacy_id")
    record = _by_legacy_id(snap, index, sheet, legacy_id)
    if record is None:
        raise ApiError(404, "not_found", f"no {kind} with legacy id {legacy_id}")
    location = f"/api/{sheet}/{record.slug}"
    raise Moved(f"{kind} with legacy id", str(legacy_id), record.slug, location)


def _snapshot(holder: SnapshotHolder, resp: falcon.Response) -> Snapshot:
    """The one snapshot this request reads. Its commit goes on the response at once,
    so a 404 or 400 answered from it names it too."""
    snap = holder.current
    resp.set_header("X-Data-Commit", snap.commit)
    return snap


def envelope(data: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "data": data}
    if meta is not None:
        body["meta"] = meta
    return body


def _ok(resp: falcon.Response, snap: Snapshot, data: Any, meta: dict[str, Any] | None = None) -> None:
    resp.media = envelope(data, meta)


def project_json(snap: Snapshot, project: Project) -> dict[str, Any]:
    return {**to_json_dict(project), "tags": [t.handle for t in snap.tags_of("project", project.id)]}


def person_json(snap: Snapshot, person: Person) -> dict[str, Any]:
    return {**to_json_dict(person), "tags": [t.handle for t in snap.tags_of("person", person.id)]}


def _people(snap: Snapshot, q: str | None) -> list[Person]:
    """Live people: search order for ``q``, else by name, slug. Memoised per
    snapshot (a pure function of it)."""

    def compute(s: Snapshot) -> list[Person]:
        table = cast(Mapping[str, Person], s.table("people").by_id)
        if q is not None:
            records = [table[i] for i in s.search.search(PEOPLE, q) if i in table]
        else:
            records = sorted(table.values(), key=lambda r: (r.full_name.lower(), r.slug))
        return [r for r in records if r.deleted_at is None]

    result: list[Person] = snap.cached(("ordered", "people", q), compute, reads=("people",))
    return result


def _project_order(snap: Snapshot, q: str | None) -> Ranked:
    """Projects (search rowids, deleted ones included) in the order a project query
    answers: search order for ``q`` (ranked with arrays where the query allows,
    else by SQLite), else by title, slug (memoised per snapshot)."""
    if q is None:
        def listing(s: Snapshot) -> Ranked:
            rowid_of = s.search.rowid_map(PROJECTS)
            projects = sorted(s.table("projects").by_id.values(),
                              key=lambda p: (p.title.lower(), p.slug))  # type: ignore[attr-defined]
            return Ranked(np.array([rowid_of[p.key] for p in projects], dtype=np.int64), None)

        result: Ranked = snap.cached(("listing", "projects"), listing, reads=("projects",))
        return result
    ranked = snap.search.rank(PROJECTS, q)
    return ranked if ranked is not None else Ranked(snap.search.search_rowids(PROJECTS, q), None)


def _project_query(snap: Snapshot, q: str | None, stage: str | None,
                   handles: tuple[str, ...]) -> tuple[Ranked, dict[str, Any]]:
    """Matching projects (live ones, in order) and the facets, for one snapshot and
    one query.

    A namespace's facet counts the projects that pass every other filter (the
    stage, and the tags asked for in the other namespaces), so picking a tag does
    not hide its siblings: a project adds to every facet when it passes all the
    filters, and to one namespace's facet when it fails only that namespace's tags.
    Counting runs over arrays keyed by search rowid (:mod:`hotreload.data.facets`),
    never one project at a time."""
    facets_data = snap.facets
    tag_index = snap.indices["tag_by_handle"]
    tags = cast(Mapping[str, Tag], snap.table("tags").by_id)
    wanted: dict[str, list[int | None]] = {}
    for handle in handles:
        tag_id = tag_index.get(handle)
        wanted.setdefault(handle.split(".", 1)[0], []).append(
            facets_data.slot_of.get(tag_id) if tag_id is not None else None)

    matches = _project_order(snap, q).where(facets_data.live)
    matched = facets_data.mask(matches.rowids)
    stage_ok = facets_data.stage == STAGE_CODE[stage] if stage is not None else np.ones_like(matched)
    passes = {ns: facets_data.has_all(slots) for ns, slots in wanted.items()}
    passing = np.logical_and.reduce([matched, *passes.values()])
    stage_counts = facets_data.stage_counts(passing)
    every_facet = facets_data.tag_counts(passing & stage_ok)
    own_facet = {  # projects failing only this namespace's tags
        ns: facets_data.tag_counts(np.logical_and.reduce(
            [matched, stage_ok, ~passes[ns], *(m for other, m in passes.items() if other != ns)]))
        for ns in wanted
    }

    facets: dict[str, Any] = {}
    for ns in TAG_NAMESPACES:
        counts = every_facet + own_facet[ns] if ns in own_facet else every_facet
        facets[FACET_NAMES[ns]] = [
            {"handle": tag.handle, "slug": tag.slug, "title": tag.title, "count": n}
            for tag, n in ((tags[tag_id], n) for tag_id, n in facets_data.top(counts, ns, FACET_SIZE))
        ]
    facets["byStage"] = [{"stage": s, "count": int(n)} for s, n in zip(STAGES, stage_counts, strict=True) if n]
    return matches.where(passing & stage_ok), facets


def project_window(snap: Snapshot, results: Ranked, start: int, stop: int) -> list[Project]:
    """Projects ``start:stop`` of a query's results."""
    table = snap.table("projects").by_id
    return [cast(Project, table[i])
            for i in results.window(start, stop, lambda r: snap.search.ids_of(PROJECTS, r.tolist()))]


class ProjectsResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snap = _snapshot(self.holder, resp)
        q = req.get_param("q")
        stage = req.get_param("stage")
        if stage is not None and stage not in STAGES:
            raise bad_request("stage", f"must be one of {', '.join(STAGES)}")
        handles = tag_params(req)
        page, per_page = paging(req)
        legacy_id = _legacy_id(req, "legacyId")
        _legacy_redirect(req, snap, "project")
        if legacy_id is not None:
            found = _by_legacy_id(snap, "project_by_legacy_id", "projects", legacy_id)
            page_of(resp, snap, (page, per_page), [found] if found else [], lambda p: project_json(snap, p))
            return

        def body(s: Snapshot) -> dict[str, Any]:
            results, facets = s.cached(("projects", q, stage, handles),
                                       lambda s: _project_query(s, q, stage, handles), reads=PROJECT_QUERY_READS)
            start = (page - 1) * per_page
            return envelope([project_json(s, p) for p in project_window(s, results, start, start + per_page)],
                            {"total": len(results), "page": page, "perPage": per_page, "facets": facets})

        cached_body(resp, snap, ("projects", q, stage, handles, page, per_page), body, PROJECT_QUERY_READS)


class ProjectResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        snap = _snapshot(self.holder, resp)
        project = live_project(req, snap, slug)
        people = snap.table("people").by_id
        members = []
        for m in snap.memberships_of_project(project.id):
            person = people.get(m.person_id)
            if isinstance(person, Person) and person.deleted_at is None:
                members.append({"person": person.slug, "fullName": person.full_name,
                                "role": m.role, "isMaintainer": m.is_maintainer})
        _ok(resp, snap, {**project_json(snap, project), "members": members})


class PeopleResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snap = _snapshot(self.holder, resp)
        pages = paging(req)
        legacy_id = _legacy_id(req, "legacyId")
        _legacy_redirect(req, snap, "person")
        if legacy_id is not None:
            found = _by_legacy_id(snap, "person_by_legacy_id", "people", legacy_id)
            page_of(resp, snap, pages, [found] if found else [], lambda p: person_json(snap, p))
            return
        q = req.get_param("q")
        cached_body(resp, snap, ("people", q, pages),
                    lambda s: page_body(pages, _people(s, q), lambda p: person_json(s, p)), PERSON_READS)


class PersonResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        snap = _snapshot(self.holder, resp)
        person = _person_live(snap, slug)
        if person is None:
            _redirect(req, snap, "person", "person", slug, lambda s: _person_live(snap, s) is not None,
                      lambda s: f"/api/people/{s}")
            raise ApiError(404, "not_found", f"no person with slug {slug!r}")
        projects = snap.table("projects").by_id
        memberships = []
        for m in snap.memberships_of_person(person.id):
            project = projects.get(m.project_id)
            if isinstance(project, Project) and project.deleted_at is None:
                memberships.append({"project": project.slug, "title": project.title,
                                    "role": m.role, "isMaintainer": m.is_maintainer})
        _ok(resp, snap, {**person_json(snap, person), "projects": memberships})


class TagsResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snap = _snapshot(self.holder, resp)
        namespace = req.get_param("namespace")
        if namespace is not None and namespace not in TAG_NAMESPACES:
            raise bad_request("namespace", f"must be one of {', '.join(TAG_NAMESPACES)}")

        def compute(s: Snapshot) -> list[dict[str, Any]]:
            by_tag = s.indices["assignments_by_tag"]
            tags = sorted(cast(Mapping[str, Tag], s.table("tags").by_id).values(), key=lambda t: t.handle)
            return [{**to_json_dict(t), "handle": t.handle, "count": len(by_tag.get(t.id, ()))}
                    for t in tags if namespace is None or t.namespace == namespace]

        def body(s: Snapshot) -> dict[str, Any]:
            data = s.cached(("tags", namespace), compute, reads=("tags", "tag-assignments"))
            return envelope(data, {"total": len(data)})

        cached_body(resp, snap, ("tags", namespace), body, ("tags", "tag-assignments"))


class TagResource:
    """One tag with the live projects and people it is assigned to."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, handle: str) -> None:
        snap = _snapshot(self.holder, resp)
        if not TAG_HANDLE.match(handle):
            raise bad_request("handle", f"{handle!r} must look like namespace.slug "
                              f"(namespace one of {', '.join(TAG_NAMESPACES)})")
        tags = snap.table("tags").by_id
        namespace, slug = handle.split(".", 1)

        def live(s: str) -> bool:
            # as the seed: a slug in use in any namespace is live (no redirect away from it)
            return any(f"{ns}.{s}" in snap.indices["tag_by_handle"] for ns in TAG_NAMESPACES)

        tag_id = snap.indices["tag_by_handle"].get(handle)
        tag = tags.get(tag_id) if tag_id else None
        if not isinstance(tag, Tag):
            _redirect(req, snap, "tag", "tag", slug, live, lambda s: f"/api/tags/{namespace}.{s}")
            raise ApiError(404, "not_found", f"no tag {handle!r}")

        def compute(s: Snapshot) -> dict[str, Any]:
            tag_id = s.indices["tag_by_handle"].get(handle)
            tag: Any = s.table("tags").by_id.get(tag_id) if tag_id else None
            if tag is None:
                raise LookupError(handle)  # gone in this snapshot: nothing to keep
            projects, people = s.table("projects").by_id, s.table("people").by_id
            found_projects: list[Project] = []
            found_people: list[Person] = []
            for assignment_id in s.indices["assignments_by_tag"].get(tag.id, ()):
                assignment: Any = s.table("tag-assignments").by_id[assignment_id]
                source: Mapping[str, Entry] = projects if assignment.taggable_type == "project" else people
                record: Any = source.get(assignment.taggable_id)
                if record is None or getattr(record, "deleted_at", None) is not None:
                    continue
                (found_projects if isinstance(record, Project) else found_people).append(record)
            found_projects.sort(key=lambda p: (p.title.lower(), p.slug))
            found_people.sort(key=lambda p: (p.full_name.lower(), p.slug))
            return {**to_json_dict(tag), "handle": tag.handle,
                    "projects": [{"slug": p.slug, "title": p.title, "stage": p.stage} for p in found_projects],
                    "people": [{"slug": p.slug, "fullName": p.full_name} for p in found_people]}

        reads = ("tags", "tag-assignments", "projects", "people")
        cached_body(resp, snap, ("tag", handle), lambda s: envelope(s.cached(("tag", handle), compute, reads)), reads)
