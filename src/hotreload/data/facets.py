"""What project searches count (projects per stage, per tag), as arrays keyed by the
project's search rowid (decision 62): per rowid its stage and whether it is live, and every
(project, tag) assignment as one sorted int64 ``rowid << 32 | tag slot``; counting is a few
numpy passes. A snapshot's facets are derived from the previous snapshot's with the
records that changed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hotreload.data.ranking import found_at
from hotreload.data.records import STAGES, TAG_NAMESPACES, Entry
from hotreload.data.search import PROJECTS, SheetDelta

Ints = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
STAGE_CODE = {stage: code for code, stage in enumerate(STAGES)}
NO_STAGE = len(STAGES)
"""The stage code of a rowid no live project has (never counted)."""
NAMESPACE_CODE = {ns: code for code, ns in enumerate(TAG_NAMESPACES)}


@dataclass(frozen=True)
class ProjectFacets:
    """One snapshot's project facets (never changed once built; see the module)."""

    stage: npt.NDArray[np.int8]
    """Stage code by project rowid (``NO_STAGE`` where no project is)."""
    live: Mask
    """Whether the rowid is a project that is not deleted (``deletedAt`` unset)."""
    keys: Ints
    """Assignments of tags to projects, ``rowid << 32 | slot``, ascending, unique."""
    slot_of: Mapping[str, int]
    """Tag id -> slot (a tag keeps its slot; slots are never reused)."""
    tag_ids: Sequence[str]
    """Slot -> tag id."""
    tag_namespace: npt.NDArray[np.int8]
    """Slot -> the tag's namespace code (-1: no such tag in the snapshot's tags)."""
    tag_order: Ints
    """Slot -> the rank of the tag's handle among the handles of the slotted tags."""

    @property
    def size(self) -> int:
        return len(self.live)

    def __getstate__(self) -> dict[str, Any]:
        """What pickle keeps (the snapshot cache): not the key parts, made again on use."""
        return {k: v for k, v in self.__dict__.items() if k != "_key_parts"}

    @functools.cached_property
    def _key_parts(self) -> tuple[Ints, Ints]:
        """The assignments' rowids and slots (two arrays, made on first count)."""
        return self.keys >> 32, self.keys & 0xFFFFFFFF

    def derive(self, delta: SheetDelta | None, previous: Mapping[str, Entry], projects: Sequence[Entry],
               gone_assignments: Sequence[Any], new_assignments: Sequence[Any],
               tags_by_project: Mapping[Any, frozenset[str]], tags: Mapping[str, Any],
               tags_changed: bool, rowid_of: Mapping[str, int]) -> ProjectFacets:
        """These facets after a snapshot's changes: ``delta`` is the projects' search
        delta (None: no project changed), ``previous`` the projects before,
        ``projects`` the records new or rewritten, the assignments gone and new
        (of any taggable type), ``tags_by_project`` the new snapshot's
        ``tags_by_taggable`` index, ``tags`` its tags by id and ``rowid_of`` its
        search index's rowid by project id."""
        if delta is None and not gone_assignments and not new_assignments and not tags_changed:
            return self
        stage, live, keys = self.stage, self.live, self.keys
        grown: tuple[dict[str, int], list[str]] | None = None  # the slots, copied on the first new tag
        drop: list[int] = []
        add: list[int] = []

        def slot(tag_id: str) -> int:
            nonlocal grown
            found = (grown[0] if grown else self.slot_of).get(tag_id)
            if found is None:
                if grown is None:
                    grown = dict(self.slot_of), list(self.tag_ids)
                found = grown[0][tag_id] = len(grown[1])
                grown[1].append(tag_id)
            return found

        if delta is not None:
            size = max(len(live), max(delta.written.values(), default=0) + 1)
            stage = np.full(size, NO_STAGE, dtype=np.int8)
            stage[:len(self.stage)] = self.stage
            live = np.zeros(size, dtype=np.bool_)
            live[:len(self.live)] = self.live
            for rowid in delta.removed.values():
                stage[rowid], live[rowid] = NO_STAGE, False
                lo, hi = np.searchsorted(keys, [rowid << 32, (rowid + 1) << 32])
                drop.extend(keys[lo:hi].tolist())
            for project in projects:
                rowid = delta.written[project.key]
                stage[rowid] = STAGE_CODE.get(project.stage, NO_STAGE)  # type: ignore[attr-defined]
                live[rowid] = project.deleted_at is None  # type: ignore[attr-defined]
                if project.key not in previous:  # new to this lineage: its tags as they are now
                    add.extend((rowid << 32) | slot(t) for t in tags_by_project.get(("project", project.key), ()))
        for assignments, into in ((gone_assignments, drop), (new_assignments, add)):
            for a in assignments:
                found = rowid_of.get(a.taggable_id) if a.taggable_type == "project" else None
                if found is not None:
                    into.append((found << 32) | slot(a.tag_id))
        slot_of, tag_ids = grown if grown else (self.slot_of, self.tag_ids)
        namespace, order = self.tag_namespace, self.tag_order
        if tags_changed or grown:
            namespace, order = _tag_arrays(tag_ids, tags)
        return ProjectFacets(stage, live, _with(_without(keys, drop), add), slot_of, tag_ids, namespace, order)

    @classmethod
    def of_snapshot(cls, previous: Any, tables: Mapping[str, Any], indices: Mapping[str, Any], search: Any,
                    gone: Mapping[str, list[Entry]], new: Mapping[str, list[tuple[str, Entry]]]) -> ProjectFacets:
        """A snapshot's facets: derived from ``previous`` (a snapshot, or None for a
        full build) with the delta ``_assemble`` applies."""
        tags = tables["tags"].by_id if "tags" in tables else {}
        rowid_of = search.rowid_map(PROJECTS)
        if previous is None:  # a full build: every project is new to the empty facets
            projects = list(tables["projects"].by_id.values()) if "projects" in tables else []
            empty = cls(np.full(0, NO_STAGE, dtype=np.int8), np.zeros(0, dtype=np.bool_), np.zeros(0, dtype=np.int64),
                        {}, [], np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64))
            return empty.derive(SheetDelta({}, rowid_of), {}, projects, [], [], indices["tags_by_taggable"], tags,
                                True, rowid_of)
        facets: ProjectFacets = previous.facets
        return facets.derive(
            search.deltas["projects"] if "projects" in gone else None,
            previous.table("projects").by_id, [r for _, r in new.get("projects", [])],
            gone.get("tag-assignments", []), [r for _, r in new.get("tag-assignments", [])],
            indices["tags_by_taggable"], tags, "tags" in gone, rowid_of)

    # -- counting ------------------------------------------------------------

    def has_all(self, slots: Iterable[int | None]) -> Mask:
        """Projects (a mask by rowid) having every tag in ``slots``; None: a tag no
        project has."""
        passing = np.ones(self.size, dtype=np.bool_)
        for s in slots:
            has = np.zeros(self.size, dtype=np.bool_)
            if s is not None:
                rowids, slots = self._key_parts
                has[rowids[slots == s]] = True
            passing &= has
        return passing

    def tag_counts(self, among: Mask) -> Ints:
        """Per slot, how many projects in ``among`` (a mask by rowid) have the tag."""
        rowids, slots = self._key_parts
        return np.bincount(slots[among[rowids]], minlength=len(self.tag_ids))

    def stage_counts(self, among: Mask) -> Ints:
        return np.bincount(self.stage[among], minlength=NO_STAGE + 1)[:NO_STAGE]

    def top(self, counts: Ints, namespace: str, n: int) -> list[tuple[str, int]]:
        """The ``n`` tags of ``namespace`` counted most in ``counts`` (by slot),
        most first, then by handle: (tag id, count) pairs."""
        slots = np.flatnonzero((counts > 0) & (self.tag_namespace == NAMESPACE_CODE[namespace]))
        best = slots[np.lexsort((self.tag_order[slots], -counts[slots]))[:n]]
        return [(self.tag_ids[s], int(counts[s])) for s in best.tolist()]

    def mask(self, rowids: Ints) -> Mask:
        m = np.zeros(self.size, dtype=np.bool_)
        m[rowids] = True
        return m


def _without(keys: Ints, drop: list[int]) -> Ints:
    if not drop:
        return keys
    at, present = found_at(keys, np.unique(np.array(drop, dtype=np.int64)))
    return np.delete(keys, at[present])


def _with(keys: Ints, add: list[int]) -> Ints:
    if not add:
        return keys
    extra = np.unique(np.array(add, dtype=np.int64))
    at, present = found_at(keys, extra)
    return np.insert(keys, at[~present], extra[~present])


def _tag_arrays(tag_ids: Sequence[str], tags: Mapping[str, Any]) -> tuple[npt.NDArray[np.int8], Ints]:
    """Per slot, the tag's namespace code and the rank of its handle."""
    namespace = np.full(len(tag_ids), -1, dtype=np.int8)
    handles = []
    for slot, tag_id in enumerate(tag_ids):
        tag = tags.get(tag_id)
        if tag is not None:
            namespace[slot] = NAMESPACE_CODE.get(tag.namespace, -1)
            handles.append((tag.handle, slot))
    order = np.zeros(len(tag_ids), dtype=np.int64)
    for rank, (_, slot) in enumerate(sorted(handles)):
        order[slot] = rank
    return namespace, order
