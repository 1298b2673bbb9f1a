"""Repository upkeep: pack loose objects, drop the packed copies, keep the
commit-graph current. Runs off the request path and never takes the data lock.

Three steps, each safe while readers, writes and reloads run:

1. **pack** every loose object into one new pack (it becomes visible when
   complete; the loose copies stay);
2. **prune** a loose object only once a pack has held it for :data:`PRUNE_GRACE_S`,
   so a reader that looked in the packs just before the new one landed still finds
   the loose copy a moment later;
3. **graph**: write the commit-graph of every commit reachable from the refs
   (git's format, checked by ``git commit-graph verify`` in the tests), to a
   temporary file renamed into place. A stale file is slower, never wrong
   (:mod:`hotreload.git.history`).

Why not dulwich's ``pack_loose_objects`` and ``write_commit_graph`` (decision 20):
the first deletes the loose copies at once; the second is quadratic, keeps two
parents of an octopus merge and recurses (RecursionError past ~1,000 commits).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dulwich.objects import Commit
from dulwich.pack import load_pack_index

from hotreload.git.objects import as_unpacked, get_raw, read_object
from hotreload.git.repo import GitRepo

log = logging.getLogger(__name__)

PRUNE_GRACE_S = 30.0
LOOSE_OBJECTS_TO_PACK = 256
"""Pack when at least this many loose objects exist (git's gc.auto counts 6,700;
ours are cheap to pack and make fetches and lookups slower, so sooner)."""
COMMITS_BEYOND_GRAPH = 64
"""Rewrite the commit-graph when this many commits are newer than it."""

_LOOSE_NAME = re.compile(r"\A[0-9a-f]{38}\Z")  # not the temporary files of writes under way
_GRAPH_PARENT_NONE = 0x70000000
_GRAPH_EXTRA_EDGES = 0x80000000
_GRAPH_LAST_EDGE = 0x80000000
_GENERATION_MAX = 0x3FFFFFFF


@dataclass(frozen=True)
class UpkeepResult:
    packed: int = 0
    pruned: int = 0
    graph_commits: int = 0
    duration_ms: float = 0.0


# -- loose objects ----------------------------------------------------------------


def loose_objects(objects_path: str) -> list[str]:
    """Ids of the loose objects (a scan of the 256 fan-out folders)."""
    found: list[str] = []
    for fan in range(256):
        folder = os.path.join(objects_path, f"{fan:02x}")
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            continue
        found.extend(f"{fan:02x}{name}" for name in names if _LOOSE_NAME.match(name))
    return found


def pack_loose_objects(repo: GitRepo) -> int:
    """Copy every loose object into one new pack; the loose files stay (see
    :func:`prune_packed`). Returns the number packed."""
    store = repo.store
    shas = [sha for sha in loose_objects(store.path) if not store.contains_packed(sha.encode())]
    if not shas:
        return 0
    raw = []
    for sha in shas:
        try:
            type_num, data = get_raw(store, sha.encode())
        except KeyError:
            continue  # pruned meanwhile by another process
        raw.append((type_num, data, sha.encode()))
    store.add_pack_data(len(raw), as_unpacked(raw))
    return len(raw)


def prune_packed(repo: GitRepo, grace_s: float = PRUNE_GRACE_S) -> int:
    """Delete loose objects that a pack older than ``grace_s`` also holds."""
    store = repo.store
    pack_dir = os.path.join(store.path, "pack")
    cutoff = time.time() - grace_s
    indexes = []
    for name in sorted(os.listdir(pack_dir)) if os.path.isdir(pack_dir) else []:
        index_path = os.path.join(pack_dir, name.removesuffix(".pack") + ".idx")
        try:  # a pack is complete once its index is there (dulwich and git write it last)
            if name.endswith(".pack") and os.path.exists(index_path) and \
                    os.path.getmtime(os.path.join(pack_dir, name)) <= cutoff:
                indexes.append(load_pack_index(index_path, store.object_format))
        except OSError:
            continue  # removed meanwhile (another process's repack)
    pruned = 0
    try:
        for sha in loose_objects(store.path):
            binary = bytes.fromhex(sha)
            if any(_holds(index, binary) for index in indexes):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(store.path, sha[:2], sha[2:]))
                    pruned += 1
    finally:
        for index in indexes:
            index.close()
    return pruned


def _holds(index: Any, binary: bytes) -> bool:
    try:
        index.object_offset(binary)
    except KeyError:
        return False
    return True


# -- the commit-graph ---------------------------------------------------------------


def write_commit_graph(repo: GitRepo, tips: Iterable[str]) -> int:
    """Write ``objects/info/commit-graph`` for every commit reachable from
    ``tips`` (git's format, version 1, generation numbers v1). Returns the count."""
    store = repo.store
    history = repo.history
    commits: dict[bytes, Commit] = {}
    stack = [t.encode() for t in tips]
    while stack:
        sha = stack.pop()
        if sha in commits:
            continue
        obj = read_object(store, sha)
        if not isinstance(obj, Commit):
            continue
        commits[sha] = obj
        stack.extend(p for p in obj.parents if p not in commits)
    if not commits:
        return 0
    # from the parents just read, never from the old file: one pass repairs a wrong number
    generation = history.generations({sha: tuple(c.parents) for sha, c in commits.items()})
    order = sorted(commits)  # hex order == binary order
    position = {sha: n for n, sha in enumerate(order)}
    first_bytes = [int(sha[:2], 16) for sha in order]
    fanout = struct.pack(">256I", *(bisect.bisect_right(first_bytes, byte) for byte in range(256)))
    lookup = b"".join(bytes.fromhex(sha.decode()) for sha in order)
    data = bytearray()
    edges: list[int] = []
    for sha in order:
        commit = commits[sha]
        parents = [position[p] for p in commit.parents]
        first = parents[0] if parents else _GRAPH_PARENT_NONE
        if len(parents) <= 2:
            second = parents[1] if len(parents) == 2 else _GRAPH_PARENT_NONE
        else:
            second = _GRAPH_EXTRA_EDGES | len(edges)  # the second parent on are in the EDGE chunk
            edges += [*parents[1:-1], _GRAPH_LAST_EDGE | parents[-1]]
        level = min(generation[sha], _GENERATION_MAX)
        when = commit.commit_time
        data += bytes.fromhex(commit.tree.decode())
        data += struct.pack(">IIII", first, second, (level << 2) | ((when >> 32) & 0x3), when & 0xFFFFFFFF)
    chunks = [(b"OIDF", fanout), (b"OIDL", lookup), (b"CDAT", bytes(data))]
    if edges:
        chunks.append((b"EDGE", struct.pack(f">{len(edges)}I", *edges)))
    header = b"CGPH" + bytes([1, 1, len(chunks), 0])
    offset = len(header) + 12 * (len(chunks) + 1)
    table = bytearray()
    for chunk_id, body in chunks:
        table += chunk_id + struct.pack(">Q", offset)
        offset += len(body)
    table += b"\0\0\0\0" + struct.pack(">Q", offset)
    content = header + bytes(table) + b"".join(body for _, body in chunks)
    content += hashlib.sha1(content).digest()
    info = os.path.join(store.path, "info")
    os.makedirs(info, exist_ok=True)
    target = os.path.join(info, "commit-graph")
    tmp = f"{target}.tmp-{os.getpid()}-{threading.get_ident()}"
    with open(tmp, "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o444)
    os.replace(tmp, target)
    history.reload_graph()
    return len(order)


def ref_tips(repo: GitRepo) -> list[str]:
    """Every commit a ref names (branches, remote-tracking refs, conflict branches)."""
    tips: set[str] = set()
    for prefix in (b"refs/heads/", b"refs/remotes/"):
        tips.update(repo.refs_under(prefix).values())
    return sorted(tips)


def run_upkeep(repo: GitRepo, grace_s: float = PRUNE_GRACE_S, force: bool = False) -> UpkeepResult:
    """One pass: pack loose objects if there are enough (or ``force``), prune the
    packed copies past their grace, rewrite the commit-graph if it lags."""
    started = time.perf_counter()
    loose = len(loose_objects(repo.store.path))
    packed = pack_loose_objects(repo) if (force or loose >= LOOSE_OBJECTS_TO_PACK) else 0
    pruned = prune_packed(repo, grace_s)
    graph = 0
    tips = ref_tips(repo)
    if tips and (force or not repo.history.graph_size or _commits_beyond_graph(repo, tips) >= COMMITS_BEYOND_GRAPH):
        graph = write_commit_graph(repo, tips)
    return UpkeepResult(packed, pruned, graph, round((time.perf_counter() - started) * 1000, 1))


def _commits_beyond_graph(repo: GitRepo, tips: list[str]) -> int:
    """Commits reachable from ``tips`` that the graph file lacks: computing their
    generations reads exactly those (call only when a graph file exists; without
    one the whole history would be read, just before writing it anyway)."""
    for tip in tips:
        repo.history.node(repo.store, tip.encode())
    return repo.history.commits_beyond_graph


def _lower_priority() -> None:
    os.nice(10)


class UpkeepDaemon:
    """Runs upkeep in the background: soon after start, then every ``interval_s``
    seconds (``CFP_DATA_UPKEEP_SECONDS``).

    Each run is a child process (``hotreload upkeep --auto``) at nice 10: parsing
    30,000 commits for a commit-graph is seconds of CPU, which in a thread held the
    GIL that request threads need; a process uses another core, and its memory is
    gone when it exits. This one then re-reads the graph."""

    def __init__(self, repo: GitRepo, interval_s: float = 300.0, first_after_s: float = 1.0) -> None:
        self._repo = repo
        self._interval = interval_s
        self._first_after = first_after_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.runs = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="upkeep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def run_once(self) -> None:
        # a graph file this process refused may pass the child's own checks (it disagreed with
        # the commits here): then everything is redone, the graph from the commits
        due = [] if self._repo.history.graph_refused else ["--auto"]
        command = [sys.executable, "-m", "hotreload.cli", "upkeep", *due, "--repo", self._repo.path]
        try:
            # at low CPU priority: requests come first when cores are scarce
            done = subprocess.run(command, capture_output=True, text=True, timeout=3600,
                                  preexec_fn=_lower_priority)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.error("upkeep could not run; the repository is still usable, only slower: %s", exc)
            return
        self.runs += 1
        if done.returncode != 0:
            self.last_error = (done.stderr.strip().splitlines() or ["no output"])[-1]
            log.error("upkeep failed (exit %d); the repository is still usable, only slower: %s",
                      done.returncode, self.last_error)
            return
        self.last_error = None
        summary = done.stdout.strip()
        if summary and "packed 0 loose objects, pruned 0 already packed, commit-graph of 0 " not in summary:
            log.info("upkeep: %s", summary, extra={"upkeep": summary})  # it did something
        self._repo.history.reload_graph()

    def _run(self) -> None:
        if self._stop.wait(self._first_after):
            return
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self._interval)
            self._wake.clear()
