"""Ancestry questions, each bounded by the change, whatever the history's length.

Every question the service asks (is L an ancestor of R; which commits does L have
that R lacks, and how many the other way; what is pending a push) is answered by
one walk, :func:`compare`: git's "paint down to common", taking commits in order
of **generation number** (a root is 1, any other commit 1 + its parents' largest)
and stopping as soon as every commit still queued is reachable from both tips.
Because a child's generation is always above its parents', a commit is taken only
after all its children: nothing is decided too early, and the walk touches the
commits that differ plus the few just below the merge base.

Generation numbers come from ``objects/info/commit-graph`` (read with
``dulwich.commit_graph``; written by :mod:`hotreload.git.upkeep`, or by git) and,
for commits the file does not hold yet, are computed from their parents and
remembered for the life of the process. A missing, stale or unreadable graph file
therefore only makes the first question slower (the computation walks down to
commits the file holds, or to the root), never wrong.

Why not ``dulwich.graph``: its ``can_fast_forward`` prunes by commit *time*, and
answers False for a fast-forward whose path holds a commit dated before its start
(one upstream laptop with a wrong clock made a fast-forward look like a
divergence, and the rebase that follows would replay commits the remote already
has); and it has no ahead/behind or "commits to replay". See
specs/decisions.md for the measurements.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dulwich.commit_graph import CommitGraph, read_commit_graph
from dulwich.objects import Commit, ObjectID

from hotreload.git.errors import GitError
from hotreload.git.objects import read_object

log = logging.getLogger(__name__)

_LEFT, _RIGHT, _STALE = 1, 2, 4
_BOTH = _LEFT | _RIGHT

Node = tuple[int, tuple[bytes, ...]]
"""(generation number, parent ids) of a commit."""


@dataclass(frozen=True)
class Comparison:
    """What two commits ``left`` and ``right`` hold that the other does not."""

    left_only: tuple[str, ...]
    """Reachable from left, not from right: oldest first (parents before children)."""
    right_only: tuple[str, ...]
    """Reachable from right, not from left: oldest first."""
    merge_bases: tuple[str, ...]

    @property
    def left_is_ancestor(self) -> bool:
        return not self.left_only

    @property
    def right_is_ancestor(self) -> bool:
        return not self.right_only


class History:
    """Generation numbers and parents of one repository's commits, shared by
    every thread (commits are immutable, so what is known stays true)."""

    def __init__(self, objects_path: str) -> None:
        self._graph_path = os.path.join(objects_path, "info", "commit-graph")
        self._graph: CommitGraph | None = None
        self._graph_stamp: tuple[int, int] | None = None
        self._computed: dict[bytes, Node] = {}
        self._lock = threading.Lock()
        self.commits_read = 0
        """Commit objects parsed because the graph file did not hold them (for tests
        that pin the cost of a question)."""
        self.nodes_visited = 0
        """Commits taken by :func:`compare` walks (likewise)."""
        self.reload_graph()

    # -- the commit-graph file -------------------------------------------------------

    def reload_graph(self) -> bool:
        """Read the commit-graph file again if it changed on disk. True if a graph
        is in use afterwards. An unreadable file is logged and ignored."""
        try:
            st = os.stat(self._graph_path)
        except FileNotFoundError:
            self._graph, self._graph_stamp = None, None
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._graph_stamp:
            return self._graph is not None
        try:
            graph = read_commit_graph(self._graph_path)
        except Exception as exc:  # a torn or foreign file must not stop ancestry questions
            log.warning("ignoring an unreadable commit-graph file %s: %s", self._graph_path, exc)
            graph = None
        self._graph, self._graph_stamp = graph, stamp
        if graph is not None and self._computed:
            # what the new file holds need not be remembered twice
            with self._lock:
                self._computed = {sha: node for sha, node in self._computed.items()
                                  if graph.get_entry_by_oid(ObjectID(sha)) is None}
        return graph is not None

    @property
    def graph_size(self) -> int:
        graph = self._graph
        return len(graph) if graph is not None else 0

    @property
    def commits_beyond_graph(self) -> int:
        """Commits whose generation was computed because the file lacks them."""
        return len(self._computed)

    def in_graph(self, sha: str) -> bool:
        graph = self._graph
        return graph is not None and graph.get_entry_by_oid(ObjectID(sha.encode())) is not None

    # -- nodes ------------------------------------------------------------------------

    def _lookup(self, sha: bytes) -> Node | None:
        found = self._computed.get(sha)
        if found is not None:
            return found
        graph = self._graph
        if graph is not None:
            entry = graph.get_entry_by_oid(ObjectID(sha))
            if entry is not None and entry.generation > 0:  # 0: written without generations
                return entry.generation, tuple(entry.parents)
        return None

    def node(self, store: Any, sha: bytes) -> Node:
        """The generation and parents of a commit; raises GitError if it is missing.
        Commits the graph file lacks are computed once and remembered."""
        found = self._lookup(sha)
        if found is not None:
            return found
        settled = self._settle([sha], lambda commit: self._read_parents(store, commit))
        with self._lock:
            self._computed.update(settled)
        # another thread may have settled it since the lookup above (then _settle found it known)
        found = settled.get(sha) or self._lookup(sha)
        if found is None:
            raise GitError(f"commit {sha.decode()} has no generation after settling it")
        return found

    def generations(self, parents_of: dict[bytes, tuple[bytes, ...]]) -> dict[bytes, int]:
        """Generation numbers of the commits in ``parents_of`` (every parent is
        either in it or already known here), without reading any object and
        without remembering them (the caller is writing them to the graph file)."""
        settled = self._settle(list(parents_of), parents_of.__getitem__)
        return {sha: node[0] for sha, node in settled.items()}

    def _settle(self, starts: list[bytes], parents_of: Callable[[bytes], tuple[bytes, ...]]) -> dict[bytes, Node]:
        """Generation numbers for ``starts`` and every ancestor not known here,
        bottom-up without recursion: push unknown parents, settle a commit once all
        its parents are known."""
        settled: dict[bytes, Node] = {}
        read: dict[bytes, tuple[bytes, ...]] = {}

        def known(commit: bytes) -> Node | None:
            return settled.get(commit) or self._lookup(commit)

        for start in starts:
            stack = [start]
            while stack:
                top = stack[-1]
                if known(top) is not None:
                    stack.pop()
                    continue
                parents = read.get(top)
                if parents is None:
                    parents = read[top] = parents_of(top)
                unknown = [p for p in parents if known(p) is None]
                if unknown:
                    stack.extend(unknown)
                    continue
                generation = 1 + max((node[0] for p in parents if (node := known(p))), default=0)
                settled[top] = (generation, parents)
                stack.pop()
        return settled

    def _read_parents(self, store: Any, sha: bytes) -> tuple[bytes, ...]:
        try:
            obj = read_object(store, sha)
        except KeyError:
            raise GitError(f"commit {sha.decode()} is missing from the repository") from None
        if not isinstance(obj, Commit):
            raise GitError(f"{sha.decode()} is not a commit")
        self.commits_read += 1
        return tuple(obj.parents)

    # -- questions --------------------------------------------------------------------

    def compare(self, store: Any, left: str, right: str) -> Comparison:
        """Paint down from both tips in generation order until every queued commit
        is reachable from both (git's paint_down_to_common, with generation numbers
        in place of dates, so clock skew cannot cut it short)."""
        if left == right:
            return Comparison((), (), (left,))
        flags: dict[bytes, int] = {}
        heap: list[tuple[int, bytes]] = []
        queued: set[bytes] = set()
        active = 0  # queued commits that are not yet stale

        def push(sha: bytes, flag: int) -> None:
            nonlocal active
            before = flags.get(sha, 0)
            after = before | flag
            if after == before:
                return
            flags[sha] = after
            if sha in queued:
                if not before & _STALE and after & _STALE:
                    active -= 1
                return
            queued.add(sha)
            if not after & _STALE:
                active += 1
            heapq.heappush(heap, (-self.node(store, sha)[0], sha))

        push(left.encode(), _LEFT)
        push(right.encode(), _RIGHT)
        left_only: list[str] = []
        right_only: list[str] = []
        bases: list[str] = []
        while active:
            _, sha = heapq.heappop(heap)
            queued.discard(sha)
            flag = flags[sha]
            if not flag & _STALE:
                active -= 1
            self.nodes_visited += 1
            side = flag & _BOTH
            if side == _LEFT:
                left_only.append(sha.decode())
            elif side == _RIGHT:
                right_only.append(sha.decode())
            elif not flag & _STALE:
                bases.append(sha.decode())
                flag |= _STALE
            for parent in self.node(store, sha)[1]:
                push(parent, flag)
        return Comparison(tuple(reversed(left_only)), tuple(reversed(right_only)), tuple(bases))

    def is_ancestor(self, store: Any, ancestor: str, descendant: str) -> bool:
        """True if ``ancestor`` is reachable from ``descendant`` (or equal). Costs
        the commits between them: a walk from ``descendant`` that never goes below
        ``ancestor``'s generation."""
        if ancestor == descendant:
            return True
        target = ancestor.encode()
        floor = self.node(store, target)[0]
        start = descendant.encode()
        heap = [(-self.node(store, start)[0], start)]
        seen = {start}
        while heap:
            negative_generation, sha = heapq.heappop(heap)
            self.nodes_visited += 1
            if sha == target:
                return True
            if -negative_generation <= floor:
                continue  # same generation or lower, and not it: cannot lead to it
            for parent in self.node(store, sha)[1]:
                if parent not in seen:
                    seen.add(parent)
                    heapq.heappush(heap, (-self.node(store, parent)[0], parent))
        return False

    def walk(self, store: Any, *starts: str) -> Iterator[str]:
        """Every commit reachable from ``starts``, newest generation first (lazily:
        stop early, pay early)."""
        seen = {s.encode() for s in starts}
        heap = [(-self.node(store, sha)[0], sha) for sha in seen]
        heapq.heapify(heap)
        while heap:
            _, sha = heapq.heappop(heap)
            yield sha.decode()
            for parent in self.node(store, sha)[1]:
                if parent not in seen:
                    seen.add(parent)
                    heapq.heappush(heap, (-self.node(store, parent)[0], parent))
