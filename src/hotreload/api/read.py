"""Read resources. Each request takes ``holder.current`` once and answers from
that snapshot only; ``X-Data-Commit`` names its commit."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any, cast

import falcon

from hotreload.api.errors import ApiError, bad_request
from hotreload.data.records import STAGES, TAG_NAMESPACES, Person, Project, Tag, to_json_dict
from hotreload.data.search import PEOPLE, PROJECTS
from hotreload.data.snapshot import Snapshot, SnapshotHolder

TAG_HANDLE = re.compile(r"\A(topic|tech|event)\.[a-z0-9][a-z0-9._-]{0,79}\Z")
FACET_NAMES = {"topic": "byTopic", "tech": "byTech", "event": "byEvent"}
FACET_SIZE = 10


def _int_param(req: falcon.Request, name: str, default: int, low: int, high: int) -> int:
    raw = req.get_param(name)
    if raw is None:
        return default
    # ASCII digits only, and few of them: isdigit() accepts "²", which int() refuses
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise bad_request(name, f"must be a whole number from {low} to {high}")
    return int(raw)


_DIGITS = re.compile(r"[0-9]{1,9}")


def _paging(req: falcon.Request) -> tuple[int, int]:
    return _int_param(req, "page", 1, 1, 1_000_000), _int_param(req, "perPage", 20, 1, 100)


def _snapshot(holder: SnapshotHolder, resp: falcon.Response) -> Snapshot:
    """The one snapshot this request reads. Its commit goes on the response at once,
    so a 404 or 400 answered from it names it too."""
    snap = holder.current
    resp.set_header("X-Data-Commit", snap.commit)
    return snap


def _ok(resp: falcon.Response, snap: Snapshot, data: Any, meta: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"success": True, "data": data}
    if meta is not None:
        body["meta"] = meta
    resp.media = body


def project_json(snap: Snapshot, project: Project) -> dict[str, Any]:
    return {**to_json_dict(project), "tags": [t.handle for t in snap.tags_of("project", project.id)]}



def person_json(snap: Snapshot, person: Person) -> dict[str, Any]:
    return {**to_json_dict(person), "tags": [t.handle for t in snap.tags_of("person", person.id)]}


def _ordered(snap: Snapshot, sheet: str, q: str | None) -> list[Any]:
    """Live records of a sheet: search order for ``q``, else by title/name, slug.
    Memoised per snapshot (a pure function of it)."""

    def compute() -> list[Any]:
        table: Mapping[str, Any] = snap.table(sheet).by_id
        if q is not None:
            found = snap.search.search(PROJECTS if sheet == "projects" else PEOPLE, q)
            records = [table[i] for i in found if i in table]
        else:
            records = sorted(table.values(), key=lambda r: (
                (r.title if sheet == "projects" else r.full_name).lower(), r.slug))
        return [r for r in records if r.deleted_at is None]

    result: list[Any] = snap.memo.get(("ordered", sheet, q), compute)
    return result


def _project_query(snap: Snapshot, q: str | None, stage: str | None,
                   handles: tuple[str, ...]) -> tuple[list[Project], dict[str, Any]]:
    """Matching projects and the facets, for one snapshot and one query."""
    tag_index = snap.indices["tag_by_handle"]
    tags = cast(Mapping[str, Tag], snap.table("tags").by_id)
    wanted: dict[str, set[str | None]] = {}
    for handle in handles:
        wanted.setdefault(handle.split(".", 1)[0], set()).add(tag_index.get(handle))

    results: list[Project] = []
    stage_counts: Counter[str] = Counter()
    facet_counts: dict[str, Counter[str]] = {ns: Counter() for ns in TAG_NAMESPACES}
    for project in _ordered(snap, "projects", q):
        tag_ids = snap.tag_ids_of("project", project.id)
        ns_ok = {ns: ids <= tag_ids for ns, ids in wanted.items()}
        stage_ok = stage is None or project.stage == stage
        if all(ns_ok.values()):
            stage_counts[project.stage] += 1
            if stage_ok:
                results.append(project)
        if not stage_ok:
            continue
        for ns in TAG_NAMESPACES:
            # a namespace's facet ignores that namespace's own filter
            if all(ok for other, ok in ns_ok.items() if other != ns):
                for tag_id in tag_ids:
                    tag = tags.get(tag_id)
                    if tag is not None and tag.namespace == ns:
                        facet_counts[ns][tag_id] += 1

    facets: dict[str, Any] = {
        FACET_NAMES[ns]: [
            {"handle": t.handle, "slug": t.slug, "title": t.title, "count": n}
            for t, n in sorted(((tags[i], n) for i, n in counts.items()),
                               key=lambda tn: (-tn[1], tn[0].handle))[:FACET_SIZE]
        ]
        for ns, counts in facet_counts.items()
    }
    facets["byStage"] = [{"stage": s, "count": stage_counts[s]} for s in STAGES if stage_counts[s]]
    return results, facets


class ProjectsResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snap = _snapshot(self.holder, resp)
        q = req.get_param("q")
        stage = req.get_param("stage")
        if stage is not None and stage not in STAGES:
            raise bad_request("stage", f"must be one of {', '.join(STAGES)}")
        handles = tuple(sorted(set(req.get_param_as_list("tag") or [])))
        for handle in handles:
            if not TAG_HANDLE.match(handle):
                raise bad_request("tag", f"{handle!r} must look like namespace.slug "
                                  f"(namespace one of {', '.join(TAG_NAMESPACES)})")
        page, per_page = _paging(req)
        results, facets = snap.memo.get(("projects", q, stage, handles),
                                        lambda: _project_query(snap, q, stage, handles))
        start = (page - 1) * per_page
        data = [project_json(snap, p) for p in results[start:start + per_page]]
        _ok(resp, snap, data, {"total": len(results), "page": page, "perPage": per_page,
                               "facets": facets})


class ProjectResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        snap = _snapshot(self.holder, resp)
        project = snap.project_by_slug(slug)
        if project is None or project.deleted_at is not None:
            raise ApiError(404, "not_found", f"no project with slug {slug!r}")
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
        page, per_page = _paging(req)
        people = _ordered(snap, "people", req.get_param("q"))
        start = (page - 1) * per_page
        _ok(resp, snap, [person_json(snap, p) for p in people[start:start + per_page]],
            {"total": len(people), "page": page, "perPage": per_page})


class PersonResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        snap = _snapshot(self.holder, resp)
        person = snap.person_by_slug(slug)
        if person is None or person.deleted_at is not None:
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

        def compute() -> list[dict[str, Any]]:
            by_tag = snap.indices["assignments_by_tag"]
            tags = sorted(cast(Mapping[str, Tag], snap.table("tags").by_id).values(), key=lambda t: t.handle)
            return [{**to_json_dict(t), "handle": t.handle, "count": len(by_tag.get(t.id, ()))}
                    for t in tags if namespace is None or t.namespace == namespace]

        data = snap.memo.get(("tags", namespace), compute)
        _ok(resp, snap, data, {"total": len(data)})
