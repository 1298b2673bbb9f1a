"""Snapshots: everything a reader needs, built from exactly one commit, immutable.

A snapshot holds the commit and tree it was built from, the records of every
sheet keyed by id, the secondary indices, and the search index. Readers take
``holder.current`` once per request and use only that object; a reload builds a
*new* snapshot and swaps the reference. Nothing here is ever mutated after
construction (the maps are plain dicts, or :class:`~hotreload.data.layered.Layered`
views of an earlier snapshot's dicts, built, then only read).

Both build paths go through one function, :func:`_assemble`, which applies a
delta of removed and added records to a previous snapshot: a full build is the
delta from the empty snapshot. So the incremental path cannot drift from the
full one: the same code maintains every index (and a property test checks the
results are equal).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from hotreload.data.facets import ProjectFacets
from hotreload.data.layered import layered
from hotreload.data.records import (
    RECORD_TYPES,
    Entry,
    Person,
    Project,
    ProjectMembership,
    RecordError,
    SlugHistory,
    Tag,
    parse_record,
    parse_timestamp,
)
from hotreload.data.search import TABLES, SearchIndex
from hotreload.data.sheets import CONFIG_DIR, Sheet, SheetConfigError, parse_sheet_config
from hotreload.git.repo import BlobChange, GitRepo, readable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    """The records of one sheet, by key (``id``; ``jti`` for revocations; the path
    below the root for a sheet served untyped)."""

    by_id: Mapping[str, Entry]
    path_by_id: Mapping[str, str]
    id_by_path: Mapping[str, str]

    def __len__(self) -> int:
        return len(self.by_id)


EMPTY_TABLE = Table({}, {}, {})


@dataclass(frozen=True)
class IndexSpec:
    """A secondary index over one sheet: ``key(record)`` -> id (unique), or the
    set of ``value(record)`` (default: the record's id) over records with that key."""

    name: str
    sheet: str
    key: Callable[[Any], Hashable | None]
    unique: bool
    label: str = ""
    value: Callable[[Any], Hashable] = lambda r: r.key


INDEX_SPECS: tuple[IndexSpec, ...] = (
    IndexSpec("project_by_slug", "projects", lambda r: r.slug, True, "slug"),
    IndexSpec("person_by_slug", "people", lambda r: r.slug, True, "slug"),
    IndexSpec("tag_by_handle", "tags", lambda r: r.handle, True, "namespace.slug"),
    IndexSpec("project_by_legacy_id", "projects", lambda r: r.legacy_id, True, "legacyId"),
    IndexSpec("person_by_legacy_id", "people", lambda r: r.legacy_id, True, "legacyId"),
    IndexSpec("tag_by_legacy_id", "tags", lambda r: r.legacy_id, True, "legacyId"),
    IndexSpec("memberships_by_project", "project-memberships", lambda r: r.project_id, False),
    IndexSpec("memberships_by_person", "project-memberships", lambda r: r.person_id, False),
    IndexSpec(
        "assignments_by_taggable", "tag-assignments",
        lambda r: (r.taggable_type, r.taggable_id), False,
    ),
    IndexSpec("assignments_by_tag", "tag-assignments", lambda r: r.tag_id, False),
    # tag ids per taggable; one assignment per (tag, taggable) is guaranteed by the
    # sheet's path template tag-assignments/<tagId>/<taggableType>/<taggableId>.toml
    IndexSpec("tags_by_taggable", "tag-assignments", lambda r: (r.taggable_type, r.taggable_id), False,
              value=lambda r: r.tag_id),
    IndexSpec("updates_by_project", "project-updates", lambda r: r.project_id, False),
    IndexSpec("update_by_project_number", "project-updates", lambda r: (r.project_id, r.number), True,
              "projectId and number"),
    IndexSpec("buzz_by_project", "project-buzz", lambda r: r.project_id, False),
    IndexSpec("buzz_by_project_slug", "project-buzz", lambda r: (r.project_id, r.slug), True,
              "projectId and slug"),
    IndexSpec("roles_by_project", "help-wanted-roles", lambda r: r.project_id, False),
    IndexSpec("interest_by_role", "help-wanted-interest", lambda r: r.role_id, False),
    # one entry per (entityType, oldSlug): the path template is <entityType>/<oldSlug>
    IndexSpec("slug_history", "slug-history", lambda r: (r.entity_type, r.old_slug), True,
              "entityType and oldSlug"),
)


class Memo:
    """Answers computed from one snapshot, kept with it (bounded, least recently
    used out). Every entry is a pure function of the snapshot, ``fn(snapshot)``, so
    a reader can never see a stale or partial one, and the same ``fn`` can answer
    for the next snapshot: :meth:`Snapshot.warm_from` recomputes the previous
    snapshot's entries before the swap, so readers after a reload find the queries
    they were asking already answered.

    Single flight: a key is computed by one thread; others asking for it meanwhile
    wait for that answer instead of computing it again."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: dict[Hashable, tuple[Any, Callable[[Any], Any], Reads]] = {}
        self._flights: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.warmed: tuple[int, int, float] = (0, 0, 0.0)
        """(answers recomputed, answers carried over, milliseconds) by :meth:`Snapshot.warm_from`."""

    def get(self, key: Hashable, fn: Callable[[Any], Any], snapshot: Any, reads: Reads = None) -> Any:
        while True:
            with self._lock:
                if key in self._entries:
                    entry = self._entries.pop(key)
                    self._entries[key] = entry  # most recently used last
                    return entry[0]
                flight = self._flights.get(key)
                if flight is None:
                    flight = self._flights[key] = threading.Event()
                    break
            flight.wait()  # the leader's answer is in the entries now (or it failed: try ourselves)
        try:
            value = fn(snapshot)
            self.put(key, value, fn, reads)
            return value
        finally:
            with self._lock:
                del self._flights[key]
            flight.set()

    def put(self, key: Hashable, value: Any, fn: Callable[[Any], Any], reads: Reads = None) -> None:
        with self._lock:
            self._entries[key] = (value, fn, reads)
            while len(self._entries) > self._size:
                self._entries.pop(next(iter(self._entries)))

    def recent(self) -> list[tuple[Hashable, Any, Callable[[Any], Any], Reads]]:
        """Keys, answers, functions and the sheets they read, most recently used first."""
        with self._lock:
            return [(key, *entry) for key, entry in reversed(self._entries.items())]

    def __len__(self) -> int:
        return len(self._entries)


Reads = tuple[str, ...] | None
"""The sheets a memoised answer reads, or None: unknown, always recomputed."""

WARM_KEYS = 64
"""At most this many of the previous snapshot's answers are recomputed before a swap."""
WARM_BUDGET_S = 5.0
"""... and none is recomputed after this long (one already running finishes): warming
holds a swap back by about this much at most (decision 54)."""


KEPT_FILES = 10_000


@dataclass(frozen=True)
class Changes:
    sheets: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Records per sheet that changed: ``{added, changed, removed}``."""
    base: str | None = None
    files: tuple[BlobChange, ...] | None = None
    """Every file that differs from the tree of commit ``base`` (the snapshot this one was
    derived from), in path order, when at most :data:`KEPT_FILES` do: the change feed's answer
    from that commit, kept (None: a full build, or more)."""

    def as_dict(self) -> dict[str, int]:
        """The totals, as the webhook's answer names them."""
        return {name: sum(c[word] for c in self.sheets.values())
                for name, word in (("added", "added"), ("modified", "changed"), ("deleted", "removed"))}


@dataclass(frozen=True, eq=False)
class Snapshot:
    commit: str
    tree: str
    sheets: tuple[Sheet, ...]
    config_blobs: Mapping[str, str]
    tables: Mapping[str, Table]
    indices: Mapping[str, Mapping[Any, Any]]
    search: SearchIndex
    facets: ProjectFacets
    """What project searches count (stages, tags), by project search rowid."""
    changes: Changes = field(default=Changes())
    """What changed from the snapshot this one was derived from (all added for a full build)."""
    build_ms: float = 0.0
    changed_in: Mapping[str, str] = field(default_factory=dict)
    """Per sheet, the first commit this process served with the sheet's current records."""
    memo: Memo = field(default_factory=Memo, compare=False, repr=False)
    pages: Memo = field(default_factory=Memo, compare=False, repr=False)
    """Pages of memoised answers as the API encodes them, apart from the answers so that
    they never push one out; carried to the next snapshot like answers, never recomputed
    before a swap (a page is rendered again when asked, from its warmed answer)."""

    # -- typed accessors used by the read API --------------------------------

    def cached(self, key: Hashable, fn: Callable[[Snapshot], Any], reads: Reads = None) -> Any:
        """``fn(self)``, memoised with this snapshot under ``key`` (one computation
        at a time per key; see :class:`Memo`). ``fn`` must use only its argument.
        ``reads``, when given, names every sheet ``fn`` reads (its records, the
        indices over them, their search rows): the answer is then carried to the
        next snapshot as it is when none of them changed."""
        return self.memo.get(key, fn, self, reads)

    def page(self, key: Hashable, fn: Callable[[Snapshot], Any], reads: tuple[str, ...]) -> Any:
        """``fn(self)``, kept with this snapshot's pages: as :meth:`cached`, for what the API
        renders of a memoised answer (``reads``: every sheet the rendering reads too)."""
        return self.pages.get(key, fn, self, reads)

    def _reads_same(self, previous: Snapshot, reads: Reads) -> bool:
        return reads is not None and all(self.tables.get(s) is previous.tables.get(s) for s in reads)

    def warm_from(self, previous: Snapshot, budget_s: float = WARM_BUDGET_S) -> tuple[int, int, float]:
        """Fill this snapshot's memo from the answers ``previous`` holds, most
        recently used first, at most ``WARM_KEYS`` of them: an answer whose sheets
        (``reads``) are the very same tables here is carried over as it is; any other
        is recomputed, until ``budget_s`` seconds are spent. Rendered pages are only
        carried over (or left to be rendered when asked). Called before the swap and
        outside the data lock, so the first readers after it find their queries
        answered. Returns (recomputed, carried over, milliseconds)."""
        started = time.perf_counter()
        warmed = carried = 0
        for key, value, fn, reads in reversed(previous.pages.recent()):  # oldest first: the order kept
            if self._reads_same(previous, reads):
                self.pages.put(key, value, fn, reads)
        for key, value, fn, reads in previous.memo.recent()[:WARM_KEYS]:
            if self._reads_same(previous, reads):
                self.memo.put(key, value, fn, reads)  # the same records in, the same answer out
                carried += 1
                continue
            if time.perf_counter() - started >= budget_s:
                continue  # nothing more is recomputed, but later answers may still carry over
            try:
                self.memo.put(key, fn(self), fn, reads)
            except Exception:  # e.g. the record it was about is gone: a reader will see why
                continue
            warmed += 1
        self.memo.warmed = (warmed, carried, (time.perf_counter() - started) * 1000)
        return self.memo.warmed

    def table(self, sheet: str) -> Table:
        return self.tables.get(sheet, EMPTY_TABLE)

    def record_counts(self) -> dict[str, int]:
        return {name: len(t) for name, t in sorted(self.tables.items())}

    def sheet(self, name: str) -> Sheet | None:
        return next((s for s in self.sheets if s.name == name), None)

    def slug_redirect(self, entity_type: str, slug: str, live: Callable[[str], bool],
                      now: dt.datetime) -> str | None:
        """The live slug that a slug not live now answers as, following ``slug-history``
        (A -> B -> C in one step, at most 8 hops, entries expired at ``now``, an RFC 3339
        UTC time, ignored), or None: a chain that repeats a slug or does not end at a
        live one redirects nowhere. A live slug is never redirected."""
        if live(slug):
            return None
        history = self.indices["slug_history"]
        entries = self.table("slug-history").by_id
        seen = {slug}
        for _ in range(8):
            entry_id = history.get((entity_type, slug))
            entry = entries.get(entry_id) if entry_id else None
            if not isinstance(entry, SlugHistory) or entry.new_slug in seen \
                    or parse_timestamp(entry.expires_at) <= now:
                return None
            slug = entry.new_slug
            if live(slug):
                return slug
            seen.add(slug)
        return None

    def project_by_slug(self, slug: str) -> Project | None:
        record_id = self.indices["project_by_slug"].get(slug)
        return self.table("projects").by_id.get(record_id) if record_id else None  # type: ignore[return-value]

    def person_by_slug(self, slug: str) -> Person | None:
        record_id = self.indices["person_by_slug"].get(slug)
        return self.table("people").by_id.get(record_id) if record_id else None  # type: ignore[return-value]

    def tag_ids_of(self, taggable_type: str, taggable_id: str) -> frozenset[str]:
        ids: frozenset[str] = self.indices["tags_by_taggable"].get((taggable_type, taggable_id), frozenset())
        return ids

    def tags_of(self, taggable_type: str, taggable_id: str) -> list[Tag]:
        tags = cast(Mapping[str, Tag], self.table("tags").by_id)
        found = [tags[t] for t in self.tag_ids_of(taggable_type, taggable_id) if t in tags]
        return sorted(found, key=lambda t: t.handle)

    def memberships_of_project(self, project_id: str) -> list[ProjectMembership]:
        table = self.table("project-memberships").by_id
        ids = self.indices["memberships_by_project"].get(project_id, ())
        return sorted((table[i] for i in ids), key=lambda m: m.id)  # type: ignore[misc]

    def memberships_of_person(self, person_id: str) -> list[ProjectMembership]:
        table = self.table("project-memberships").by_id
        ids = self.indices["memberships_by_person"].get(person_id, ())
        return sorted((table[i] for i in ids), key=lambda m: m.id)  # type: ignore[misc]


class SnapshotHolder:
    """Owns the served snapshot. Swapping is one reference assignment, made by the
    reloader and the writer under the data lock; readers just read ``current``.

    ``degraded`` says why the served snapshot is *not* the branch head: only after a
    start whose branch head did not build (the service then serves the newest
    commit that does, refuses writes, and says so in health); the first reload
    that serves the head clears it."""

    def __init__(self, snapshot: Snapshot, degraded: str | None = None) -> None:
        self.current = snapshot
        self.degraded = degraded
        self.on_swap: Callable[[str, str, Snapshot, Snapshot], None] = lambda *swap: None
        """Told each swap, under the data lock: (kind, outcome, base, snapshot); must not block."""


# -- building -----------------------------------------------------------------

_ANNOUNCED_UNTYPED: set[str] = set()


def load_sheets(repo: GitRepo, tree: str) -> tuple[tuple[Sheet, ...], dict[str, str]]:
    """Every sheet the tree declares in ``.gitsheets/*.toml``. A sheet the service has
    no schema for is served untyped, with one log line saying so."""
    config_tree = repo.subtree(tree, CONFIG_DIR)
    blobs = {e.path: e.sha for e in repo.list_blobs(config_tree, CONFIG_DIR)} if config_tree else {}
    sheets = []
    for path, sha in sorted(blobs.items()):
        name = path[len(CONFIG_DIR) + 1 :].removesuffix(".toml")
        if "/" in name or not path.endswith(".toml"):
            continue
        if readable(name) != name:
            log.warning("skipping sheet %r: its name is not UTF-8", readable(name),
                        extra={"sheet": readable(name)})
            continue
        if name not in RECORD_TYPES and name not in _ANNOUNCED_UNTYPED:
            _ANNOUNCED_UNTYPED.add(name)  # once per process, not once per build
            log.info("serving sheet %r untyped (read-only under /api/sheets/%s): this service "
                     "has no schema for it", name, name, extra={"sheet": name})
        try:
            sheets.append(parse_sheet_config(path, name, repo.read_blob(sha)))
        except SheetConfigError as exc:
            raise RecordError(exc.path, exc.message) from None
    for name in RECORD_TYPES:
        if not any(s.name == name for s in sheets):
            log.info("sheet %r has no %s/%s.toml in the tree; serving it empty",
                     name, CONFIG_DIR, name, extra={"sheet": name})
    return tuple(sheets), blobs


Added = dict[str, dict[str, Entry]]  # sheet -> path -> record
Removed = dict[str, set[str]]  # sheet -> paths


def sheet_for(sheets: Iterable[Sheet], path: str) -> Sheet | None:
    owners = [s for s in sheets if s.owns(path)]
    return max(owners, key=lambda s: len(s.root)) if owners else None


def build_full(repo: GitRepo, commit: str) -> Snapshot:
    """Read and validate every record of the commit's tree."""
    started = time.perf_counter()
    tree = repo.tree_of(commit)
    sheets, config_blobs = load_sheets(repo, tree)
    owned: list[tuple[Sheet, str, str]] = []  # (sheet, path, blob sha)
    for sheet in sheets:
        root = repo.subtree(tree, sheet.root)
        if root is None:
            continue
        nested = any(o is not sheet and o.root.startswith(sheet.root + "/") for o in sheets)
        owned += [(sheet, e.path, e.sha) for e in repo.list_blobs(root, sheet.root)
                  if e.path.endswith(".toml") and (not nested or sheet_for(sheets, e.path) is sheet)]
    return _assemble(None, commit, tree, sheets, config_blobs, {}, _read_records(repo, owned), started)


def build_incremental(repo: GitRepo, previous: Snapshot, commit: str) -> Snapshot:
    """The snapshot of ``commit``, derived from ``previous``: only the blobs that
    changed between the two trees are read; every unchanged record object, and
    every untouched index entry, is shared with ``previous``."""
    started = time.perf_counter()
    tree = repo.tree_of(commit)
    removed: Removed = {}
    new_blobs: list[tuple[Sheet, str, str]] = []
    files: list[BlobChange] | None = []
    for change in repo.diff_trees(previous.tree, tree) if tree != previous.tree else ():
        if files is not None:  # kept for the change feed while they are few (a re-import's are not)
            files.append(change)
            files = files if len(files) <= KEPT_FILES else None
        if change.path.startswith(CONFIG_DIR + "/"):
            log.info("sheet configuration changed (%s); building in full", change.path)
            return build_full(repo, commit)
        sheet = sheet_for(previous.sheets, change.path)
        if sheet is None:
            continue
        if change.old is not None:
            removed.setdefault(sheet.name, set()).add(change.path)
        if change.new is not None:
            new_blobs.append((sheet, change.path, change.new))
    snapshot = _assemble(previous, commit, tree, previous.sheets, previous.config_blobs, removed,
                         _read_records(repo, new_blobs), started)
    kept = tuple(files) if files is not None else None
    return replace(snapshot, changes=replace(snapshot.changes, base=previous.commit, files=kept))


def _read_records(repo: GitRepo, blobs: list[tuple[Sheet, str, str]]) -> Added:
    """The record of each (sheet, path, blob sha), read in pack order (see git/repo.py)."""
    contents = repo.read_many({sha for _, _, sha in blobs})
    added: Added = {}
    for sheet, path, sha in blobs:
        added.setdefault(sheet.name, {})[path] = parse_record(sheet, path, contents[sha])
    return added


def _assemble(
    previous: Snapshot | None,
    commit: str,
    tree: str,
    sheets: tuple[Sheet, ...],
    config_blobs: Mapping[str, str],
    removed: Removed,
    added: Added,
    started: float,
) -> Snapshot:
    """The snapshot of ``commit``: ``previous`` (None: the empty snapshot) less the records
    at the ``removed`` paths, plus the ``added`` ones; then its indices, search and facets."""
    tables, gone, new, counts = _apply_tables(previous.tables if previous else {}, sheets, removed, added)
    indices = dict(previous.indices) if previous else {spec.name: {} for spec in INDEX_SPECS}
    for spec in INDEX_SPECS:
        if spec.sheet in gone:
            indices[spec.name] = _apply_index(spec, indices[spec.name], tables[spec.sheet], gone[spec.sheet],
                                              new[spec.sheet])
    search = _derive_search(previous, tables, gone, new)
    return Snapshot(
        commit=commit,
        tree=tree,
        sheets=sheets,
        config_blobs=config_blobs,
        tables=tables,
        indices=indices,
        search=search,
        facets=ProjectFacets.of_snapshot(previous, tables, indices, search, gone, new),
        changes=Changes(counts),
        build_ms=(time.perf_counter() - started) * 1000,
        changed_in={s.name: commit if previous is None or s.name in gone
                    else previous.changed_in.get(s.name, commit) for s in sheets},
    )


def _apply_tables(
    prev_tables: Mapping[str, Table], sheets: tuple[Sheet, ...], removed: Removed, added: Added
) -> tuple[dict[str, Table], dict[str, list[Entry]], dict[str, list[tuple[str, Entry]]], dict[str, dict[str, int]]]:
    """Each sheet's table after the delta (the old one itself when unchanged), and per changed
    sheet: the records gone, the (path, record) pairs new, and the counts of the change."""
    tables: dict[str, Table] = {}
    gone: dict[str, list[Entry]] = {}
    new: dict[str, list[tuple[str, Entry]]] = {}
    counts: dict[str, dict[str, int]] = {}
    for sheet in sheets:
        old = prev_tables.get(sheet.name, EMPTY_TABLE)
        rm, add = removed.get(sheet.name, set()), added.get(sheet.name, {})
        if not rm and not add:
            tables[sheet.name] = old
            continue
        counts[sheet.name] = {"added": len(add.keys() - rm), "changed": len(rm & add.keys()),
                              "removed": len(rm - add.keys())}
        tables[sheet.name], gone[sheet.name], new[sheet.name] = _apply_table(old, rm, add)
    return tables, gone, new, counts


def _apply_table(
    old: Table, removed_paths: set[str], added: Mapping[str, Entry]
) -> tuple[Table, list[Entry], list[tuple[str, Entry]]]:
    """The table after a delta, each of its maps derived from the old one's by the
    changed entries alone (:func:`layered`, decision 71); a map no entry of which
    changes (the path maps, for records edited in place) is the old one."""
    records: dict[str, Entry | None] = {}
    paths: dict[str, str | None] = {}  # id -> path
    ids: dict[str, str | None] = {}  # path -> id
    removed = {path: old.id_by_path[path] for path in removed_paths}  # path -> id
    gone = []
    for path, record_id in removed.items():
        gone.append(old.by_id[record_id])
        records[record_id] = paths[record_id] = ids[path] = None
    new = []
    for path, record in sorted(added.items()):
        key = record.key
        other = paths[key] if key in paths else old.path_by_id.get(key)
        if other is not None:
            raise RecordError(path, f"{record.KEY_FIELD}: {key} is also the {record.KEY_FIELD} of {other}")
        records[key], paths[key], ids[path] = record, path, key
        new.append((path, record))
    # an edit in place (same path, same key) leaves both path maps as they were; only a
    # removed entry can be written back as it was (an added one that was not removed is new)
    for path, key in removed.items():
        if paths[key] == path:
            del paths[key]
        if ids[path] == key:
            del ids[path]
    table = Table(layered(old.by_id, records), layered(old.path_by_id, paths), layered(old.id_by_path, ids))
    return table, gone, new


def _apply_index(
    spec: IndexSpec,
    old: Mapping[Any, Any],
    table: Table,
    gone: list[Entry],
    new: list[tuple[str, Entry]],
) -> Mapping[Any, Any]:
    """The index after a delta: the old one itself when no key's value changes (an
    edit that keeps a record's slug; decision 57), else derived from it by the changed
    keys alone (:func:`layered`, decision 71)."""
    changes: dict[Hashable, Any] = {}  # key -> new value; None: the key goes
    if spec.unique:
        for record in gone:
            key = spec.key(record)
            if key is not None and old.get(key) == record.key:
                changes[key] = None
        for path, record in new:
            key = spec.key(record)
            if key is None:
                continue
            holder = changes[key] if key in changes else old.get(key)
            if holder is not None and holder != record.key:
                raise RecordError(path, f"{spec.label}: {key} is also used by {table.path_by_id[holder]}")
            changes[key] = record.key
    else:
        # multi-valued: gather per key, then write each touched key once (linear)
        touched: dict[Hashable, tuple[set[Hashable], set[Hashable]]] = {}
        for record in gone:
            key = spec.key(record)
            if key is not None:
                touched.setdefault(key, (set(), set()))[0].add(spec.value(record))
        for _, record in new:
            key = spec.key(record)
            if key is not None:
                touched.setdefault(key, (set(), set()))[1].add(spec.value(record))
        for key, (minus, plus) in touched.items():
            ids = (set(old.get(key, ())) - minus) | plus
            changes[key] = frozenset(ids) if ids else None
    return layered(old, {key: value for key, value in changes.items() if old.get(key) != value})


def _derive_search(
    previous: Snapshot | None,
    tables: Mapping[str, Table],
    gone: Mapping[str, list[Entry]],
    new: Mapping[str, list[tuple[str, Entry]]],
) -> SearchIndex:
    if previous is None:
        return SearchIndex.build({name: tables.get(name, EMPTY_TABLE).by_id.values()
                                  for name in TABLES})
    if not any(name in gone for name in TABLES):
        return previous.search
    return previous.search.derive({
        name: (gone[name], [r for _, r in new[name]])
        for name in TABLES if name in gone
    })
