"""Read routes. Each answer is a function of the request and one snapshot, ``holder.current``
taken once per request by api/conditional.py's :class:`DataRead`. Every route
under ``/api/projects/{slug}/...`` follows a renamed project's slug history with a 301, like
the project itself (and a buzz item's, its own)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, cast

import falcon
import msgspec
import numpy as np

from hotreload.api.conditional import Answer
from hotreload.api.errors import ApiError, bad_request
from hotreload.data.facets import STAGE_CODE
from hotreload.data.records import (
    RECORD_TYPES,
    ROLE_STATUSES,
    STAGES,
    TAG_NAMESPACES,
    Entry,
    HelpWantedRole,
    Person,
    Project,
    Tag,
    parse_timestamp,
    to_json_dict,
)
from hotreload.data.search import PEOPLE, PROJECTS, ROLES, Ranked
from hotreload.data.sheets import Sheet
from hotreload.data.snapshot import Snapshot

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


def _choice(req: falcon.Request, name: str, choices: Sequence[str], default: str | None = None) -> str | None:
    value = req.get_param(name)
    if value is None:
        return default
    if value not in choices:
        raise bad_request(name, f"must be one of {', '.join(choices)}")
    return value


_DIGITS = re.compile(r"[0-9]{1,9}")


def paging(req: falcon.Request, per_page: int = 20) -> tuple[int, int]:
    """``page`` and ``perPage`` (default ``per_page``), checked. Answers check every parameter
    before they look anything up: a bad one is a 400 even where the record moved (no 301 that
    would carry the bad query on)."""
    return _int_param(req, "page", 1, 1, 1_000_000), _int_param(req, "perPage", per_page, 1, 100)


def _check_handle(name: str, handle: str) -> None:
    if not TAG_HANDLE.match(handle):
        raise bad_request(name, f"{handle!r} must look like namespace.slug "
                          f"(namespace one of {', '.join(TAG_NAMESPACES)})")


def tag_params(req: falcon.Request) -> tuple[str, ...]:
    """The ``tag`` parameters (repeatable), checked, deduplicated and sorted."""
    handles = tuple(sorted(set(req.get_param_as_list("tag") or [])))
    for handle in handles:
        _check_handle("tag", handle)
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


def cached_body(snap: Snapshot, key: Hashable, body: Callable[[Snapshot], dict[str, Any]],
                reads: tuple[str, ...]) -> msgspec.Raw:
    """The answer to a read of memoised data: ``body(snapshot)`` encoded once per snapshot and
    kept with its pages (``reads``: every sheet ``body`` reads, answer and rendering), so a
    repeated read costs a lookup and the write of its bytes (issue #17)."""
    return cast(msgspec.Raw, snap.page(key, lambda s: msgspec.Raw(msgspec.json.encode(body(s))), reads))


def envelope(data: Any, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "data": data}
    if meta is not None:
        body["meta"] = meta
    return body


class Moved(ApiError):
    """301 to where a renamed record now answers (see :func:`live_record`)."""

    def __init__(self, what: str, old: str, new: str, location: str) -> None:
        super().__init__(301, "moved_permanently", f"{what} {old!r} is now {new!r}",
                         {"location": location},
                         # short: the redirect ends when the slug-history entry expires
                         {"Location": location, "Cache-Control": "public, max-age=300"})


def _redirect(req: falcon.Request, snap: Snapshot, entity: str, slug: str, live: Callable[[str], bool],
              path: Callable[[str], str]) -> None:
    """Raise :class:`Moved` when ``slug`` is not live but ``slug-history`` says where
    it went; the rest of the URL and its query are kept."""
    target = snap.slug_redirect(entity, slug, live, dt.datetime.now(dt.UTC))
    if target is not None:
        query = f"?{req.query_string}" if req.query_string else ""
        raise Moved(entity, slug, target, path(target) + query)


def _live(snap: Snapshot, kind: str, slug: str) -> Any:
    record = snap.project_by_slug(slug) if kind == "project" else snap.person_by_slug(slug)
    return record if record is not None and record.deleted_at is None else None


def live_record(req: falcon.Request, snap: Snapshot, kind: str, slug: str, suffix: str = "") -> Any:
    """The live project or person (``kind``) at ``slug``; else 301 to its new slug
    (``slug-history``), keeping ``suffix`` (the rest of the path); else 404."""
    record = _live(snap, kind, slug)
    if record is None:
        base = "/api/projects" if kind == "project" else "/api/people"
        _redirect(req, snap, kind, slug, lambda s: _live(snap, kind, s) is not None,
                  lambda s: f"{base}/{s}{suffix}")
        raise ApiError(404, "not_found", f"no {kind} with slug {slug!r}")
    return record


def _by_legacy_id(snap: Snapshot, kind: str, legacy_id: int) -> Any:
    sheet = "projects" if kind == "project" else "people"
    record_id = snap.indices[f"{kind}_by_legacy_id"].get(legacy_id)
    record = snap.table(sheet).by_id.get(record_id) if record_id else None
    return record if record is not None and getattr(record, "deleted_at", None) is None else None


def _legacy_id(req: falcon.Request, name: str) -> int | None:
    return _int_param(req, name, 0, 1, 999_999_999) if req.get_param(name) is not None else None


def _legacy_page(req: falcon.Request, snap: Snapshot, kind: str, pages: tuple[int, int],
                 render: Callable[[Any], Any]) -> dict[str, Any] | None:
    """``legacyId=<n>``: the list of the 0 or 1 records with that legacy id. ``ID=<n>``, the
    seed's old links (``/projects?ID=<n>``): 301 to the record's page, or 404. None: neither."""
    legacy_id, old_link = _legacy_id(req, "legacyId"), _legacy_id(req, "ID")
    if old_link is not None:
        record = _by_legacy_id(snap, kind, old_link)
        if record is None:
            raise ApiError(404, "not_found", f"no {kind} with legacy id {old_link}")
        sheet = "projects" if kind == "project" else "people"
        raise Moved(f"{kind} with legacy id", str(old_link), record.slug, f"/api/{sheet}/{record.slug}")
    if legacy_id is None:
        return None
    found = _by_legacy_id(snap, kind, legacy_id)
    return page_body(pages, [found] if found else [], render)


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


def projects(req: falcon.Request, snap: Snapshot) -> Any:
    q, stage, handles = req.get_param("q"), _choice(req, "stage", STAGES), tag_params(req)
    page, per_page = paging(req)
    legacy = _legacy_page(req, snap, "project", (page, per_page), lambda p: project_json(snap, p))
    if legacy is not None:
        return legacy

    def body(s: Snapshot) -> dict[str, Any]:
        results, facets = s.cached(("projects", q, stage, handles),
                                   lambda s: _project_query(s, q, stage, handles), reads=PROJECT_QUERY_READS)
        start = (page - 1) * per_page
        return envelope([project_json(s, p) for p in project_window(s, results, start, start + per_page)],
                        {"total": len(results), "page": page, "perPage": per_page, "facets": facets})

    return cached_body(snap, ("projects", q, stage, handles, page, per_page), body, PROJECT_QUERY_READS)


def project(req: falcon.Request, snap: Snapshot, slug: str) -> Any:
    found: Project = live_record(req, snap, "project", slug)
    people = snap.table("people").by_id
    members = []
    for m in snap.memberships_of_project(found.id):
        person = people.get(m.person_id)
        if isinstance(person, Person) and person.deleted_at is None:
            members.append({"person": person.slug, "fullName": person.full_name,
                            "role": m.role, "isMaintainer": m.is_maintainer})
    return envelope({**project_json(snap, found), "members": members})


def people(req: falcon.Request, snap: Snapshot) -> Any:
    pages = paging(req)
    legacy = _legacy_page(req, snap, "person", pages, lambda p: person_json(snap, p))
    if legacy is not None:
        return legacy
    q = req.get_param("q")
    return cached_body(snap, ("people", q, pages),
                       lambda s: page_body(pages, _people(s, q), lambda p: person_json(s, p)), PERSON_READS)


def person(req: falcon.Request, snap: Snapshot, slug: str) -> Any:
    found: Person = live_record(req, snap, "person", slug)
    projects = snap.table("projects").by_id
    memberships = []
    for m in snap.memberships_of_person(found.id):
        project = projects.get(m.project_id)
        if isinstance(project, Project) and project.deleted_at is None:
            memberships.append({"project": project.slug, "title": project.title,
                                "role": m.role, "isMaintainer": m.is_maintainer})
    return envelope({**person_json(snap, found), "projects": memberships})


def tags(req: falcon.Request, snap: Snapshot) -> Any:
    namespace = _choice(req, "namespace", TAG_NAMESPACES)

    def compute(s: Snapshot) -> list[dict[str, Any]]:
        by_tag = s.indices["assignments_by_tag"]
        tags = sorted(cast(Mapping[str, Tag], s.table("tags").by_id).values(), key=lambda t: t.handle)
        return [{**to_json_dict(t), "handle": t.handle, "count": len(by_tag.get(t.id, ()))}
                for t in tags if namespace is None or t.namespace == namespace]

    def body(s: Snapshot) -> dict[str, Any]:
        data = s.cached(("tags", namespace), compute, reads=("tags", "tag-assignments"))
        return envelope(data, {"total": len(data)})

    return cached_body(snap, ("tags", namespace), body, ("tags", "tag-assignments"))


def tag(req: falcon.Request, snap: Snapshot, handle: str) -> Any:
    """One tag with the live projects and people it is assigned to."""
    _check_handle("handle", handle)
    namespace, slug = handle.split(".", 1)

    def live(s: str) -> bool:
        # as the seed: a slug in use in any namespace is live (no redirect away from it)
        return any(f"{ns}.{s}" in snap.indices["tag_by_handle"] for ns in TAG_NAMESPACES)

    tag_id = snap.indices["tag_by_handle"].get(handle)
    if not isinstance(snap.table("tags").by_id.get(tag_id) if tag_id else None, Tag):
        _redirect(req, snap, "tag", slug, live, lambda s: f"/api/tags/{namespace}.{s}")
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
    return cached_body(snap, ("tag", handle), lambda s: envelope(s.cached(("tag", handle), compute, reads)), reads)


def role_json(snap: Snapshot, role: HelpWantedRole, project_slug: str) -> dict[str, Any]:
    return {**to_json_dict(role), "project": project_slug,
            "tags": [t.handle for t in snap.tags_of("help_wanted_role", role.id)],
            "interestCount": len(snap.indices["interest_by_role"].get(role.id, ()))}


def project_items(what: str, sheet: str, index: str, newest: Callable[[Any], Any]) -> Answer:
    """``/api/projects/{slug}/<what>``: the items of ``sheet`` the project's ``index`` lists,
    newest first (by ``newest``), paged; help-wanted roles filtered by ``status``."""

    def answer(req: falcon.Request, snap: Snapshot, slug: str) -> Any:
        status = _choice(req, "status", ROLE_STATUSES) if what == "help-wanted" else None
        pages = paging(req)
        project: Project = live_record(req, snap, "project", slug, f"/{what}")
        table = snap.table(sheet).by_id
        items: list[Any] = [table[i] for i in snap.indices[index].get(project.id, ())]
        items = sorted((x for x in items if status is None or x.status == status), key=newest, reverse=True)
        if what == "help-wanted":
            return page_body(pages, items, lambda r: role_json(snap, r, project.slug))
        return page_body(pages, items, lambda x: {**to_json_dict(x), "project": project.slug})

    return answer


def project_update(req: falcon.Request, snap: Snapshot, slug: str, number: str) -> Any:
    n = whole_number(number)
    if n is None or n < 1:
        raise bad_request("number", "must be a whole number from 1")
    project: Project = live_record(req, snap, "project", slug, f"/updates/{number}")
    update_id = snap.indices["update_by_project_number"].get((project.id, n))
    if update_id is None:
        raise ApiError(404, "not_found", f"project {project.slug!r} has no update {number}")
    return envelope({**to_json_dict(snap.table("project-updates").by_id[update_id]), "project": project.slug})


def project_buzz(req: falcon.Request, snap: Snapshot, slug: str, buzz: str) -> Any:
    """One buzz item; a renamed one answers 301 to its new slug (``slug-history``, entity
    ``buzz``), as a renamed project does."""
    project: Project = live_record(req, snap, "project", slug, f"/buzz/{buzz}")
    index = snap.indices["buzz_by_project_slug"]
    buzz_id = index.get((project.id, buzz))
    if buzz_id is None:
        _redirect(req, snap, "buzz", buzz, lambda b: (project.id, b) in index,
                  lambda b: f"/api/projects/{project.slug}/buzz/{b}")
        raise ApiError(404, "not_found", f"project {project.slug!r} has no buzz {buzz!r}")
    return envelope({**to_json_dict(snap.table("project-buzz").by_id[buzz_id]), "project": project.slug})


def _since(req: falcon.Request) -> dt.datetime | None:
    raw = req.get_param("since")
    if raw is None:
        return None
    with contextlib.suppress(ValueError):
        if raw.isascii():  # fromisoformat takes other scripts' digits too
            when = dt.datetime.fromisoformat(raw.upper())
            return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
    raise bad_request("since", "must be a date or an RFC 3339 time (2024-05-01 or 2024-05-01T12:00:00Z)")


def global_feed(sheet: str, when: str) -> Answer:
    """``/api/project-updates`` and ``/api/project-buzz``, the seed's global feeds: the items
    of every live project, newest first (``createdAt`` of an update, ``publishedAt`` of buzz;
    ties by id), ``since`` (only items at or after that time), ``tag`` (repeatable: items of
    projects carrying *any* of them, as the seed reads it), paged (``perPage`` default 30)."""

    def answer(req: falcon.Request, snap: Snapshot) -> Any:
        since, handles, pages = _since(req), tag_params(req), paging(req, per_page=30)

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
        return cached_body(snap, (*key, pages), lambda s: page_body(
            pages, s.cached(key, compute, reads), lambda ip: {**to_json_dict(ip[0]), "project": ip[1]}), reads)

    return answer


def help_wanted(req: falcon.Request, snap: Snapshot) -> Any:
    """Roles of live projects, ``status`` (default open), ``tag`` (every one given),
    ``commitmentMax`` (hours per week) and ``q`` (full text over title and description;
    best match first, else newest first)."""
    status = _choice(req, "status", ROLE_STATUSES, "open")
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
    return cached_body(snap, (*key, pages), lambda s: page_body(
        pages, s.cached(key, compute, reads), lambda rp: role_json(s, rp[0], rp[1])),
        (*reads, "help-wanted-interest"))  # role_json counts interest


# -- /api/sheets: every sheet the data repository declares, typed or not, read-only. A sheet the
# service has no schema for is served only here; a record's key is its path below the sheet's
# root, without .toml (tags/topic/transit.toml is /api/sheets/tags/topic/transit).


def _sheet(snap: Snapshot, name: str) -> Sheet:
    sheet = snap.sheet(name)
    if sheet is None:
        known = ", ".join(s.name for s in snap.sheets)
        raise ApiError(404, "not_found", f"no sheet {name!r} (this commit has: {known})")
    return sheet


def _entry_json(sheet: Sheet, path: str, record: Entry) -> dict[str, Any]:
    return {"key": path[len(sheet.root) + 1 : -len(".toml")], "path": path, "data": to_json_dict(record)}


def sheets(req: falcon.Request, snap: Snapshot) -> Any:
    return envelope([{"name": s.name, "root": s.root, "pathTemplate": s.path_template,
                      "typed": s.name in RECORD_TYPES, "count": len(snap.table(s.name)),
                      "changedInCommit": snap.changed_in.get(s.name)}
                     for s in sorted(snap.sheets, key=lambda s: s.name)])


def sheet_records(req: falcon.Request, snap: Snapshot, sheet: str) -> Any:
    pages = paging(req)
    _sheet(snap, sheet)  # 404 for a sheet this commit does not declare

    def body(s: Snapshot) -> dict[str, Any]:
        table, config = s.table(sheet), _sheet(s, sheet)
        paths = s.cached(("sheet-paths", sheet), lambda s: sorted(s.table(sheet).id_by_path), reads=(sheet,))
        return page_body(pages, paths, lambda p: _entry_json(config, p, table.by_id[table.id_by_path[p]]))

    return cached_body(snap, ("sheet", sheet, pages), body, (sheet,))


def sheet_record(req: falcon.Request, snap: Snapshot, sheet: str, key: str) -> Any:
    found, table = _sheet(snap, sheet), snap.table(sheet)
    path = f"{found.root}/{key}.toml"
    record_key = table.id_by_path.get(path)
    if record_key is None:
        raise ApiError(404, "not_found", f"sheet {sheet!r} has no record {key!r} (looked for {path})")
    return envelope(_entry_json(found, path, table.by_id[record_key]))


ROUTES: dict[str, Answer] = {
    "/api/projects": projects,
    "/api/projects/{slug}": project,
    "/api/people": people,
    "/api/people/{slug}": person,
    "/api/projects/{slug}/updates": project_items("updates", "project-updates", "updates_by_project",
                                                  lambda u: u.number),
    "/api/projects/{slug}/updates/{number}": project_update,
    "/api/projects/{slug}/buzz": project_items("buzz", "project-buzz", "buzz_by_project",
                                               lambda b: (b.published_at, b.slug)),
    "/api/projects/{slug}/buzz/{buzz}": project_buzz,
    "/api/project-updates": global_feed("project-updates", "created_at"),
    "/api/project-buzz": global_feed("project-buzz", "published_at"),
    "/api/projects/{slug}/help-wanted": project_items("help-wanted", "help-wanted-roles", "roles_by_project",
                                                      lambda r: (r.created_at, r.id)),
    "/api/help-wanted": help_wanted,
    "/api/tags": tags,
    "/api/tags/{handle}": tag,
    "/api/sheets": sheets,
    "/api/sheets/{sheet}": sheet_records,
    "/api/sheets/{sheet}/{key:path}": sheet_record,
}
"""Every read route and its answer."""
