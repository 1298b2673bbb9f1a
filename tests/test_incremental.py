"""Property tests: the fast paths give exactly what the slow, obvious paths give."""

from __future__ import annotations

import datetime as dt
import random
import tempfile
import tomllib
import uuid
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotreload.api.read import _project_query, project_window
from hotreload.data import layered, search
from hotreload.data.records import (
    STAGES,
    HelpWantedInterest,
    HelpWantedRole,
    Person,
    Project,
    ProjectBuzz,
    ProjectMembership,
    ProjectUpdate,
    Revocation,
    SlugHistory,
    Tag,
    TagAssignment,
    Untyped,
    parse_toml,
    to_toml,
)
from hotreload.data.search import TABLES
from hotreload.data.snapshot import INDEX_SPECS, Snapshot, build_full, build_incremental
from hotreload.git.repo import GitRepo, Signature
from simulator.corpus import WORDS
from tests.conftest import corpus_files, write_corpus

# -- what the service writes, TOML parsers read back ------------------------------------

keys = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)
values = st.one_of(text, st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans())


def toml_line(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key} = {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{key} = {value}"
    return f"{key} = {to_toml_string(value)}"


def to_toml_string(value: str) -> str:
    from hotreload.data.records import _toml_string

    return _toml_string(value)


@given(st.dictionaries(keys, values, max_size=8))
def test_what_the_service_writes_reads_back_as_written(table: dict[str, Any]) -> None:
    doc = "".join(toml_line(k, v) + "\n" for k, v in table.items())
    assert parse_toml(doc.encode()) == tomllib.loads(doc) == table


# -- incremental == full ------------------------------------------------------------------

def snapshot_state(snap: Snapshot) -> dict[str, Any]:
    state: dict[str, Any] = {"tree": snap.tree, "counts": snap.record_counts()}
    for name, table in snap.tables.items():
        state[f"{name}.by_id"] = dict(table.by_id), len(table.by_id)
        state[f"{name}.paths"] = (dict(table.path_by_id), len(table.path_by_id),
                                  dict(table.id_by_path), len(table.id_by_path))
    for spec in INDEX_SPECS:
        state[spec.name] = dict(snap.indices[spec.name]), len(snap.indices[spec.name])
    for word in [*WORDS[:12], "edited", "renamed", "developer"]:
        state[f"q:{word}"] = {name: snap.search.search(t, word) for name, t in TABLES.items()}  # ranked
    handles = sorted(t.handle for t in snap.table("tags").by_id.values())[:2]  # type: ignore[attr-defined]
    for q in [None, "data", f"{WORDS[3]} {WORDS[5]}", "edited", "new"]:  # ranked with arrays; facets
        for stage, tagged in [(None, ()), ("prototyping", ()), (None, tuple(handles[:1])), (None, tuple(handles))]:
            results, facets = _project_query(snap, q, stage, tagged)
            state[f"projects:{q}:{stage}:{tagged}"] = (
                [p.id for p in project_window(snap, results, 0, len(results))], facets)
    return state


OPS = ["add-project", "add-person", "add-tag", "add-membership", "add-assignment", "add-update", "add-buzz",
       "add-role", "add-interest", "add-history", "add-revocation", "add-sponsor", "edit", "delete", "rename"]
EDITED = ("title", "fullName", "role", "body", "headline", "description", "message", "newSlug", "expiresAt")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def apply_ops(repo: GitRepo, snap: Snapshot, ops: list[tuple[str, int, int]], seed: int) -> str:
    rng = random.Random(f"ops-{seed}")  # not make_corpus's stream (random.Random(seed)): its ids would repeat
    ts = "2025-01-01T00:00:00Z"
    changes: dict[str, bytes | None] = {}
    projects = sorted(snap.table("projects").by_id.values(), key=lambda r: r.key)
    people = sorted(snap.table("people").by_id.values(), key=lambda r: r.key)
    tags = sorted(snap.table("tags").by_id.values(), key=lambda r: r.key)
    roles = sorted(snap.table("help-wanted-roles").by_id.values(), key=lambda r: r.key)
    for op, a, b in ops:
        n = rng.randrange(10**6)
        if op == "add-project":
            p = Project(id=str(uuid.UUID(int=rng.getrandbits(128))), slug=f"new-project-{n}", title=f"New {rng.choice(WORDS)}",
                        summary=" ".join(rng.choices(WORDS, k=4)), stage=rng.choice(STAGES), created_at=ts, updated_at=ts)  # type: ignore[arg-type]
            changes[f"projects/{p.slug}.toml"] = to_toml(p)
        elif op == "add-person":
            q = Person(id=str(uuid.UUID(int=rng.getrandbits(128))), slug=f"new-person-{n}", full_name=f"Pat {rng.choice(WORDS)}",
                       bio=" ".join(rng.choices(WORDS, k=5)), created_at=ts, updated_at=ts)
            changes[f"people/{q.slug}.toml"] = to_toml(q)
        elif op == "add-tag":
            t = Tag(id=str(uuid.UUID(int=rng.getrandbits(128))), namespace=rng.choice(["topic", "tech", "event"]),  # type: ignore[arg-type]
                    slug=f"tag-{n}", title=f"Tag {n}", created_at=ts, updated_at=ts)
            changes[f"tags/{t.namespace}/{t.slug}.toml"] = to_toml(t)
        elif op == "add-membership" and projects and people:
            p, q = projects[a % len(projects)], people[b % len(people)]
            m = ProjectMembership(id=str(uuid.UUID(int=rng.getrandbits(128))), project_id=p.id, person_id=q.id,
                                  role="Helper", joined_at=ts, created_at=ts, updated_at=ts)
            changes[f"project-memberships/{p.slug}/{q.slug}-{n}.toml"] = to_toml(m)
        elif op == "add-assignment" and projects and tags:
            t, p = tags[a % len(tags)], projects[b % len(projects)]
            x = TagAssignment(id=str(uuid.UUID(int=rng.getrandbits(128))), tag_id=t.id, taggable_type="project",
                              taggable_id=p.id, created_at=ts)
            changes[f"tag-assignments/{t.id}/project/{p.id}.toml"] = to_toml(x)
        elif op == "add-update" and projects:
            p = projects[a % len(projects)]
            u = ProjectUpdate(id=_uuid(rng), project_id=p.id, body=" ".join(rng.choices(WORDS, k=6)),
                              number=1000 + n, created_at=ts, updated_at=ts)
            changes[f"project-updates/{p.slug}/{u.number}.toml"] = to_toml(u)
        elif op == "add-buzz" and projects:
            p = projects[a % len(projects)]
            z = ProjectBuzz(id=_uuid(rng), project_id=p.id, slug=f"buzz-{n}", headline=f"News {rng.choice(WORDS)}",
                            url="https://example.org/n", published_at=ts, created_at=ts, updated_at=ts)
            changes[f"project-buzz/{p.slug}/{z.slug}.toml"] = to_toml(z)
        elif op == "add-role" and projects and people:
            p = projects[a % len(projects)]
            r = HelpWantedRole(id=_uuid(rng), project_id=p.id, posted_by_id=people[b % len(people)].id,
                               title=f"Data {rng.choice(WORDS)}", description=" ".join(rng.choices(WORDS, k=8)),
                               created_at=ts, updated_at=ts)
            changes[f"help-wanted-roles/{p.slug}/{r.id}.toml"] = to_toml(r)
        elif op == "add-interest" and roles and people:
            r, q = roles[a % len(roles)], people[b % len(people)]
            e = HelpWantedInterest(id=_uuid(rng), role_id=r.id, person_id=q.id, created_at=ts)
            changes[f"help-wanted-interest/{r.id}/{q.slug}-{n}.toml"] = to_toml(e)
        elif op == "add-history" and projects:
            p = projects[a % len(projects)]
            h = SlugHistory(id=_uuid(rng), entity_type="project", old_slug=f"old-{n}", new_slug=p.slug,
                            entity_id=p.id, changed_at=ts, expires_at="2099-01-01T00:00:00Z")
            changes[f"slug-history/project/old-{n}.toml"] = to_toml(h)
        elif op == "add-revocation" and people:
            v = Revocation(jti=f"jti-{n}", person_id=people[a % len(people)].id, revoked_at=ts,
                           expires_at="2099-01-01T00:00:00Z")
            changes[f"revocations/jti-{n}.toml"] = to_toml(v)
        elif op == "add-sponsor":
            changes[f"sponsors/new-{n}.toml"] = f"slug = 'new-{n}'\nsince = 2024-01-0{1 + a % 9}\n[x]\ny = [1, 2]\n".encode()
        elif op in ("edit", "delete", "rename"):
            sheet = sorted(snap.tables)[a % len(snap.tables)]
            table = snap.table(sheet)
            if not table.by_id:
                continue
            record = sorted(table.by_id.values(), key=lambda r: r.key)[b % len(table.by_id)]
            path = table.path_by_id[record.key]
            if path in changes:
                continue
            if op == "delete":
                changes[path] = None
            elif op == "edit" and isinstance(record, Untyped):
                changes[path] = f"slug = '{record.key}'\nedited = {n}\n".encode()
            elif op == "edit":
                import msgspec
                fields = msgspec.to_builtins(record)
                for key in EDITED:
                    if key in fields:
                        fields[key] = {"expiresAt": "2098-01-01T00:00:00Z", "newSlug": f"edited-{n}"}.get(
                            key, f"Edited {rng.choice(WORDS)}")
                if "stage" in fields:
                    fields["stage"] = rng.choice(STAGES)
                changes[path] = to_toml(msgspec.convert(fields, type=type(record)))
            elif sheet in ("projects", "people"):
                import msgspec
                fields = msgspec.to_builtins(record)
                fields["slug"] = f"renamed-{n}"
                changes[path] = None
                changes[f"{sheet}/renamed-{n}.toml"] = to_toml(msgspec.convert(fields, type=type(record)))
    parent = snap.commit
    tree = repo.write_tree_changes(repo.tree_of(parent), changes)
    commit = repo.write_commit(tree, [parent], "change\n", Signature(b"T <t@example.org>", 1, 0))
    repo.set_ref(b"refs/heads/published", commit)
    return commit


def blobs(repo: GitRepo, tree: str, table: Any) -> dict[str, str | None]:
    """The blob of each of the table's paths, as git has it (the oracle)."""
    return {path: repo.blob_at(tree, path) for path in table.id_by_path}


change_sets = st.lists(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 999), st.integers(0, 999)),
                                min_size=0, max_size=8), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), records=st.integers(10, 60), steps=change_sets,
       fold_after=st.sampled_from([0, 4, 10_000]))
def test_incremental_snapshot_equals_a_full_build(seed: int, records: int, steps: list[list[tuple[str, int, int]]],
                                                  fold_after: int) -> None:
    """``fold_after``: the search deltas (decision 68) and the tables' and indices' layered
    changes (decision 71) are folded into their bases at every step, after a few changed
    rows, or never."""
    with (tempfile.TemporaryDirectory() as tmp, patch.object(search, "FOLD_MIN", fold_after),
          patch.object(layered, "FOLD_MIN", fold_after)):
        write_corpus(f"{tmp}/r.git", corpus_files(records, seed=seed))
        repo = GitRepo(f"{tmp}/r.git")
        snap = build_full(repo, repo.branch_commit("published") or "")
        quiet = snap  # a lineage never searched: its rankers learn only from its databases
        for i, ops in enumerate(steps):
            commit = apply_ops(repo, snap, ops, seed + i)
            incremental = build_incremental(repo, snap, commit)
            full = build_full(repo, commit)
            assert snapshot_state(incremental) == snapshot_state(full)
            assert snapshot_state(build_incremental(repo, quiet, commit)) == snapshot_state(full)
            quiet = build_incremental(repo, quiet, commit)
            for sheet, table in incremental.tables.items():
                new_blobs, old_blobs = blobs(repo, incremental.tree, table), blobs(repo, snap.tree, snap.table(sheet))
                moved = new_blobs != old_blobs  # changedIn moves only with the sheet's records
                assert incremental.changed_in[sheet] == (commit if moved else snap.changed_in[sheet]), sheet
                for path, blob in new_blobs.items():  # unchanged records are shared, not copied
                    old_key = snap.table(sheet).id_by_path.get(path)
                    if old_key is not None and old_blobs.get(path) == blob:
                        assert table.by_id[table.id_by_path[path]] is snap.table(sheet).by_id[old_key]
            snap = incremental
        repo.close()


def test_previous_snapshot_is_never_mutated(tmp_path: Any) -> None:
    write_corpus(str(tmp_path / "r.git"), corpus_files(40, seed=3))
    repo = GitRepo(str(tmp_path / "r.git"))
    snap = build_full(repo, repo.branch_commit("published") or "")
    before = snapshot_state(snap)
    commit = apply_ops(repo, snap, [("delete", 0, 1), ("rename", 2, 3), ("add-project", 0, 0), ("edit", 1, 4)], 9)
    build_incremental(repo, snap, commit)
    assert snapshot_state(snap) == before
    repo.close()


tree_paths = st.from_regex(r"(a|b)(/(x|y)){0,2}/f[0-9]", fullmatch=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.dictionaries(tree_paths, st.binary(max_size=3), max_size=10),
       after=st.dictionaries(tree_paths, st.binary(max_size=3), max_size=10))
def test_diff_trees_agrees_with_dulwich(tmp_path_factory: Any, before: dict[str, bytes], after: dict[str, bytes]) -> None:
    from dulwich.diff_tree import tree_changes

    from hotreload.git.repo import init_bare

    def usable(files: dict[str, bytes]) -> dict[str, bytes | None]:
        # a path cannot be both a file and a folder
        return {p: c for p, c in files.items() if not any(o.startswith(p + "/") for o in files)}

    repo = init_bare(str(tmp_path_factory.mktemp("d") / "r.git"))
    old = repo.write_tree_changes(None, usable(before))
    new = repo.write_tree_changes(None, usable(after))
    ours = {(c.path, c.old, c.new) for c in repo.diff_trees(old, new)}
    theirs = set()
    for change in tree_changes(repo.repo.object_store, old.encode(), new.encode()):
        o = (change.old.path.decode(), change.old.sha.decode()) if change.old and change.old.path else None
        n = (change.new.path.decode(), change.new.sha.decode()) if change.new and change.new.path else None
        if o and n and o[0] == n[0]:
            theirs.add((o[0], o[1], n[1]))
        else:
            if o:
                theirs.add((o[0], o[1], None))
            if n:
                theirs.add((n[0], None, n[1]))
    assert ours == theirs
    repo.close()


def test_a_dropped_snapshot_closes_its_search_database_without_a_gc_pass(tmp_path: Any) -> None:
    """sqlite3 connections sit in reference cycles; on a big, quiet heap full GC
    passes are rare, and each reload's in-memory search database stayed (found by
    the memory benchmark: +12 MB per reload at 50k records)."""
    import gc
    import sqlite3

    def open_connections() -> int:
        count = 0
        for obj in gc.get_objects():
            if isinstance(obj, sqlite3.Connection):
                try:
                    obj.total_changes  # noqa: B018 - raises on a closed connection
                    count += 1
                except sqlite3.ProgrammingError:
                    pass
        return count

    write_corpus(str(tmp_path / "r.git"), corpus_files(40, seed=5))
    repo = GitRepo(str(tmp_path / "r.git"))
    before = open_connections()
    gc.disable()
    try:
        snap = build_full(repo, repo.branch_commit("published") or "")
        counts = []
        for i in range(12):
            commit = apply_ops(repo, snap, [("add-project", i, i), ("edit", 1, i)], i)
            snap = build_incremental(repo, snap, commit)
            counts.append(open_connections() - before)
        # per searched sheet, its base database and at most one delta (decision 68)
        assert len(TABLES) < counts[-1] <= 2 * len(TABLES)
        assert counts[5:] == [counts[-1]] * 7  # no more as reloads go on
    finally:
        gc.enable()
        repo.close()


def _as_written(table: dict[str, Any]) -> dict[str, Any]:
    """Native TOML date-times as the RFC 3339 strings the writer's style holds."""
    return {k: v.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(v, dt.datetime) else v for k, v in table.items()}


def test_a_mixed_style_corpus_reads_the_same_as_the_flat_one(tmp_path: Any) -> None:
    """Records written as people write TOML (aligned keys, literal and multi-line
    strings, comments, native date-times) hold the same values and build the same snapshot."""
    flat, mixed = corpus_files(200, seed=4), corpus_files(200, seed=4, mix="mixed")
    restyled = [p for p in flat if flat[p] != mixed[p]]
    assert len(restyled) > 50
    for path in restyled:
        assert tomllib.loads(flat[path].decode()) == _as_written(tomllib.loads(mixed[path].decode()))
    snaps = []
    for name, files in (("flat", flat), ("mixed", mixed)):
        write_corpus(tmp_path / name, files)
        repo = GitRepo(str(tmp_path / name))
        snaps.append(build_full(repo, repo.branch_commit("published") or ""))
        repo.close()
    for sheet, table in snaps[0].tables.items():
        assert dict(table.by_id) == dict(snaps[1].table(sheet).by_id), sheet
