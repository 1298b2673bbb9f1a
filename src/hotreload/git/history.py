"""Ancestry questions, each bounded by the change, whatever the history's length.

Every question the service asks (is L an ancestor of R; which commits does L have
that R lacks, and the other way) is answered by one walk, :meth:`History.compare`:
git's "paint down to common", taking commits in order of **generation number** (a
root is 1, any other commit 1 + its parents' largest) and stopping as soon as every
commit still queued is reachable from both tips. A commit is taken only after all
its children, so the walk touches the commits that differ plus a few below the merge
base. Not ``dulwich.graph``: it prunes by commit date, so a wrong clock turns a
fast-forward into a divergence, and it has no ahead/behind lists (decision 19).

Generation numbers come from ``objects/info/commit-graph`` (read with
``dulwich.commit_graph`` after the checks it leaves out, decision 88; written by
:mod:`hotreload.git.upkeep` or by git) and, for commits the file lacks, are computed
from their parents and remembered. A missing or stale file only makes the first
question slower; an answer that can drop a commit is asked with ``confirmed=True``,
which checks it against the commit objects, and a graph that disagrees with them is
dropped and the question asked again without it.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import io
import itertools
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dulwich.commit_graph import CommitGraph
from dulwich.objects import Commit, ObjectID

from hotreload.git.errors import GitError
from hotreload.git.objects import read_typed

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


def read_checked_graph(path: str) -> CommitGraph:
    """dulwich's reader, after the checks it leaves out: the SHA-1 trailer, a chunk
    table that tiles the file up to the trailer, an OID fan-out that counts the sorted,
    repeat-free lookup table, and chunk sizes that fit the commit count. Raises
    ValueError naming what failed (a torn, truncated or bit-flipped file)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 40 or hashlib.sha1(data[:-20]).digest() != data[-20:]:
        raise ValueError("its SHA-1 checksum does not match its contents")
    if data[:6] != b"CGPH\x01\x01" or data[7] != 0:
        raise ValueError("it is not a version 1, SHA-1, single-file commit-graph")
    table = [(data[at:at + 4], struct.unpack_from(">Q", data, at + 4)[0]) for at in range(8, 20 + 12 * data[6], 12)]
    offsets = [offset for _, offset in table]
    if offsets[0] != 20 + 12 * data[6] or offsets != sorted(offsets) or offsets[-1] != len(data) - 20:
        raise ValueError("its chunk table does not fit the file")
    chunks = {cid: data[start:end] for (cid, start), (_, end) in itertools.pairwise(table)}
    fanout, lookup = chunks.get(b"OIDF", b""), chunks.get(b"OIDL", b"")
    counts = struct.unpack(">256I", fanout) if len(fanout) == 1024 else ()
    oids = [lookup[at:at + 20] for at in range(0, len(lookup), 20)]
    if not counts or len(lookup) != 20 * counts[-1] or len(chunks.get(b"CDAT", b"")) != 36 * len(oids) \
            or len(chunks.get(b"EDGE", b"")) % 4:
        raise ValueError("its chunk sizes do not fit its commit count")
    if any(a >= b for a, b in itertools.pairwise(oids)) or \
            any(counts[byte] != bisect.bisect_left(oids, bytes([byte + 1])) for byte in range(255)):
        raise ValueError("its commit lookup table is out of order or disagrees with its fan-out")
    return CommitGraph.from_file(io.BytesIO(data))


class History:
    """Generation numbers and parents of one repository's commits, shared by every thread."""

    def __init__(self, objects_path: str) -> None:
        self._graph_path = os.path.join(objects_path, "info", "commit-graph")
        self._graph: CommitGraph | None = None
        self._graph_stamp: tuple[int, int, int] | None = None
        self.graph_refused: str | None = None
        """Why the file on disk is not used (None: it is, or there is none); upkeep
        then rewrites it from the commits."""
        self._computed: dict[bytes, Node] = {}
        self._epoch = 0
        """Counts the graph files used: what was settled on top of an older one is not kept."""
        self._lock = threading.Lock()
        self.commits_read = 0
        """Commit objects parsed: for tests that pin the cost of a question."""
        self.nodes_visited = 0
        """Commits taken by the walks (likewise)."""
        self.reload_graph()

    # -- the commit-graph file -------------------------------------------------------

    def reload_graph(self) -> bool:
        """Read the commit-graph file again if it changed on disk. True if a graph
        is in use afterwards. A file that fails its checks is logged once and ignored."""
        try:
            st = os.stat(self._graph_path)
        except FileNotFoundError:
            if self._graph_stamp is not None:  # it was there: what was settled on it goes too
                self._use(None, None, None)
            return False
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._graph_stamp:
            return self._graph is not None
        try:
            graph = read_checked_graph(self._graph_path)
        except Exception as exc:  # a torn or foreign file must not stop ancestry questions
            self._refuse(stamp, f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))
            return False
        self._use(graph, stamp, None)
        return True

    def _use(self, graph: CommitGraph | None, stamp: tuple[int, int, int] | None, refused: str | None) -> None:
        # what was computed on top of the old file goes with it (its generations came from it)
        with self._lock:
            self._graph, self._graph_stamp, self.graph_refused = graph, stamp, refused
            self._computed = {}
            self._epoch += 1

    def refuse_graph(self, reason: str) -> None:
        """Stop using the graph file (it disagrees with the commits) until upkeep rewrites it."""
        if self._graph is not None:
            self._refuse(self._graph_stamp, reason)

    def _refuse(self, stamp: tuple[int, int, int] | None, reason: str) -> None:
        log.warning("ignoring the commit-graph file %s until upkeep rewrites it: %s", self._graph_path, reason,
                    extra={"commitGraph": "refused"})
        self._use(None, stamp, reason)

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
        epoch = self._epoch
        settled = self._settle([sha], lambda commit: self._read_parents(store, commit), self._lookup)
        with self._lock:
            if epoch == self._epoch:
                self._computed.update(settled)
        # another thread may have settled it since the lookup above (then _settle found it known)
        found = settled.get(sha) or self._lookup(sha)
        if found is None:
            raise GitError(f"commit {sha.decode()} has no generation after settling it")
        return found

    @staticmethod
    def generations(parents_of: dict[bytes, tuple[bytes, ...]]) -> dict[bytes, int]:
        """Generation numbers of the commits in ``parents_of`` (every parent is in it)
        from those parents alone: what upkeep writes (decision 90)."""
        settled = History._settle(list(parents_of), parents_of.__getitem__, lambda _sha: None)
        return {sha: node[0] for sha, node in settled.items()}

    @staticmethod
    def _settle(starts: list[bytes], parents_of: Callable[[bytes], tuple[bytes, ...]],
                known_before: Callable[[bytes], Node | None]) -> dict[bytes, Node]:
        """Generation numbers for ``starts`` and every ancestor ``known_before``
        lacks, bottom-up without recursion: push unknown parents, settle a commit
        once all its parents are known."""
        settled: dict[bytes, Node] = {}
        read: dict[bytes, tuple[bytes, ...]] = {}

        def known(commit: bytes) -> Node | None:
            return settled.get(commit) or known_before(commit)

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
            commit = read_typed(store, sha.decode(), Commit)
        except KeyError:
            raise GitError(f"commit {sha.decode()} is missing from the repository") from None
        self.commits_read += 1
        return tuple(commit.parents)

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

    def compare_confirmed(self, store: Any, left: str, right: str) -> Comparison:
        """:meth:`compare`, borne out by the commit objects (:meth:`_confirms`) for an
        answer that can drop a commit; when the graph file disagrees with them it is
        refused and the question asked again from the commits alone."""
        for _attempt in range(2):  # the second from the commits alone
            diff = self.compare(store, left, right)
            if self._confirms(store, left, diff.left_only, right) and \
                    self._confirms(store, right, diff.right_only, left):
                return diff
            self.refuse_graph(f"it disagrees with the commits between {left[:12]} and {right[:12]}")
        raise GitError(f"the history between {left[:12]} and {right[:12]} does not add up (a missing commit?)")

    def _confirms(self, store: Any, tip: str, only: Sequence[str], other: str) -> bool:
        """True if the commits themselves show that everything reachable from ``tip``
        is in ``only`` or reachable from ``other``: a walk of real parents from ``tip``
        through ``only`` (each as the graph says it is), stopping at commits not listed,
        each of which a real path from ``other`` reaches. Reads the change, not the history."""
        listed = {sha.encode() for sha in only}
        reached: set[bytes] = set()
        stops: set[bytes] = set()
        stack = [tip.encode()]
        while stack:
            sha = stack.pop()
            if sha in reached or sha in stops:
                continue
            if sha not in listed:
                stops.add(sha)
                continue
            reached.add(sha)
            parents = self._read_parents(store, sha)
            generation, said = self.node(store, sha)
            if parents != said or any(self.node(store, p)[0] >= generation for p in parents):
                return False
            stack.extend(parents)
        return reached == listed and self._reaches(store, other.encode(), stops, confirmed=True)

    def is_ancestor(self, store: Any, ancestor: str, descendant: str, confirmed: bool = False) -> bool:
        """True if ``ancestor`` is reachable from ``descendant`` (or equal). Costs
        the commits between them: a walk from ``descendant`` that never goes below
        ``ancestor``'s generation. ``confirmed``: along the commits' own parents, so
        a True is a path that exists whatever the graph file says."""
        return ancestor == descendant or self._reaches(store, descendant.encode(), {ancestor.encode()}, confirmed)

    def _reaches(self, store: Any, start: bytes, targets: set[bytes], confirmed: bool) -> bool:
        if not targets:
            return True
        floor = min(self.node(store, target)[0] for target in targets)
        missing = set(targets)
        heap = [(-self.node(store, start)[0], start)]
        seen = {start}
        while heap:
            negative_generation, sha = heapq.heappop(heap)
            self.nodes_visited += 1
            missing.discard(sha)
            if not missing:
                return True
            if -negative_generation <= floor:
                continue  # same generation or lower, and not a target: cannot lead to one
            parents = self._read_parents(store, sha) if confirmed else self.node(store, sha)[1]
            for parent in parents:
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
