"""Project search's facets against their definition, over random corpora and
random filters. The oracle below is written from the definition (a namespace's
facet counts the projects passing the stage and every *other* namespace's tag
filter), one namespace at a time, and shares nothing with the service's counting."""

from __future__ import annotations

import tempfile
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotreload.api.read import FACET_NAMES, FACET_SIZE, _project_query, project_window
from hotreload.data.records import STAGES, TAG_NAMESPACES
from hotreload.data.search import PROJECTS
from hotreload.data.snapshot import Snapshot, build_full
from hotreload.git.repo import GitRepo
from tests.conftest import corpus_files, write_corpus


def by_definition(snap: Snapshot, q: str | None, stage: str | None, handles: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    projects = [p for p in snap.table("projects").by_id.values() if p.deleted_at is None]  # type: ignore[attr-defined]
    if q is not None:
        order = {i: n for n, i in enumerate(snap.search.search(PROJECTS, q))}
        projects = sorted((p for p in projects if p.id in order), key=lambda p: order[p.id])
    else:
        projects.sort(key=lambda p: (p.title.lower(), p.slug))
    tags = snap.table("tags").by_id
    handle_of = {t.id: t.handle for t in tags.values()}  # type: ignore[attr-defined]
    assigned: dict[str, set[str]] = {}
    for a in snap.table("tag-assignments").by_id.values():
        if a.taggable_type == "project":  # type: ignore[attr-defined]
            assigned.setdefault(a.taggable_id, set()).add(a.tag_id)  # type: ignore[attr-defined]

    def handles_of(p: Any) -> set[str]:
        return {handle_of[t] for t in assigned.get(p.id, ()) if t in handle_of}

    def passes(p: Any, except_ns: str | None) -> bool:
        return all(h in handles_of(p) for h in handles if h.split(".", 1)[0] != except_ns)

    results = [p.id for p in projects if passes(p, None) and (stage is None or p.stage == stage)]
    facets: dict[str, Any] = {}
    for ns in TAG_NAMESPACES:
        counts = Counter(h for p in projects if passes(p, ns) and (stage is None or p.stage == stage)
                         for h in handles_of(p) if h.startswith(ns + "."))
        facets[FACET_NAMES[ns]] = sorted(counts.items(), key=lambda hn: (-hn[1], hn[0]))[:FACET_SIZE]
    stages = Counter(p.stage for p in projects if passes(p, None))
    facets["byStage"] = [(s, stages[s]) for s in STAGES if stages[s]]
    return results, facets


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), data=st.data())
def test_facets_and_results_match_their_definition(seed: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(f"{tmp}/r.git", corpus_files(120, seed=seed))
        repo = GitRepo(f"{tmp}/r.git")
        snap = build_full(repo, repo.branch_commit("published") or "")
        repo.close()
    known = sorted(t.handle for t in snap.table("tags").by_id.values())  # type: ignore[attr-defined]
    handles = tuple(sorted(set(data.draw(st.lists(st.sampled_from([*known, "topic.no-such-tag"]), max_size=3)))))
    stage = data.draw(st.sampled_from([None, *STAGES]))
    q = data.draw(st.sampled_from([None, "civic", "data", "open map"]))
    results, facets = _project_query(snap, q, stage, handles)
    expected_results, expected_facets = by_definition(snap, q, stage, handles)
    assert [p.id for p in project_window(snap, results, 0, len(results))] == expected_results
    got = {name: [(f["handle"], f["count"]) for f in facets[name]] for name in FACET_NAMES.values()}
    got["byStage"] = [(f["stage"], f["count"]) for f in facets["byStage"]]
    assert got == expected_facets
