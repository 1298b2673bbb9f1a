"""Upstream changes for the benchmarks: edit N records on the origin in one commit."""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from hotreload.config import Settings
from hotreload.data.search import PROJECTS
from hotreload.data.snapshot import Snapshot
from hotreload.git.repo import GitRepo, Signature, branch_ref
from simulator.corpus import VERSION, WORDS

_round = itertools.count()


def record_blobs(repo: GitRepo, tree: str, sheets: tuple[str, ...] = ("projects", "people")) -> dict[str, str]:
    """path -> blob id of every project and person record in the tree."""
    blobs: dict[str, str] = {}
    for sheet in sheets:
        root = repo.subtree(tree, sheet)
        if root:
            blobs.update((e.path, e.sha) for e in repo.list_blobs(root, sheet))
    return blobs


def _edited(contents: bytes, n: int) -> bytes:
    """A record with ``Round n`` put before its title or name."""
    for key in (b'title = "', b'fullName = "'):
        contents = contents.replace(key, key + f"Round {n} ".encode(), 1)
    return contents


def edit_upstream(origin: str, count: int, seed: int = 0) -> str:
    """Commit an edit of ``count`` project/person records to the origin's branch."""
    repo = GitRepo(origin)
    try:
        parent = repo.branch_commit("published")
        assert parent is not None
        tree = repo.tree_of(parent)
        n = next(_round)
        blobs = record_blobs(repo, tree)
        paths = random.Random(seed + n).sample(sorted(blobs), count)
        contents = repo.read_many({blobs[p] for p in paths})
        changes: dict[str, bytes | None] = {path: _edited(contents[blobs[path]], n) for path in paths}
        new_tree = repo.write_tree_changes(tree, changes)  # the author's own tree cache: its GitRepo's
        commit = repo.write_commit(new_tree, [parent], f"bench edit {n}\n",
                                   Signature(b"Bench <bench@example.org>", 1_700_000_000 + n, 0))
        assert repo.cas_ref(branch_ref("published"), parent, commit)
        return commit
    finally:
        repo.close()


def edit_chain(origin: str, count: int, seed: int = 0) -> list[str]:
    """``count`` commits on the origin, each editing one project/person record of the one
    before, the first on the branch's tip; the branch is left where it is. The same
    origin and seed give the same commits (a harness comparing two versions feeds both
    the same changes); the record list is read once, not once a commit."""
    repo = GitRepo(origin)
    try:
        parent = repo.branch_commit("published")
        assert parent is not None
        tree = repo.tree_of(parent)
        blobs = record_blobs(repo, tree)
        paths = random.Random(seed).choices(sorted(blobs), k=count)
        edited: dict[str, bytes] = {}  # a record edited twice is edited as the first edit left it
        commits = []
        for n, path in enumerate(paths):
            data = edited[path] = _edited(edited.get(path) or repo.read_many({blobs[path]})[blobs[path]], n)
            tree = repo.write_tree_changes(tree, {path: data})
            parent = repo.write_commit(tree, [parent], f"bench edit {n}\n",
                                       Signature(b"Bench <bench@example.org>", 1_700_000_000 + n, 0))
            commits.append(parent)
        return commits
    finally:
        repo.close()


def learn_every_word(snapshot: Snapshot) -> None:
    """Search each corpus word once, so the project ranker has learnt every word's
    postings and each later reload patches them (as on a replica serving searches)."""
    for word in WORDS:
        snapshot.search.rank(PROJECTS, word)


BENCH_CACHE = Path(__file__).resolve().parent.parent / ".bench-cache"


def corpus_path(records: str) -> Path:
    """The cached corpus of ``records`` records, as conftest.cached_corpus names it."""
    return BENCH_CACHE / f"corpus-v{VERSION}-{records}.git"


def missing_corpus(records: str) -> str | None:
    """What to run when ``corpus_path(records)`` is not cached, else None."""
    source = corpus_path(records)
    return None if source.exists() else f"no corpus at {source}: run BENCH_RECORDS={records} make bench first"


def require_corpus(records: str) -> None:
    """Exit with status 2, saying what to run, when ``corpus_path(records)`` is not cached."""
    missing = missing_corpus(records)
    if missing:
        print(missing, file=sys.stderr)
        raise SystemExit(2)


@contextmanager
def origin_and_clone(records: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A copy of the cached corpus ``corpus_path(records)`` as the origin and a bare
    clone of it, in a temporary directory removed afterwards."""
    source = corpus_path(records)
    root = tempfile.mkdtemp(dir=BENCH_CACHE, prefix=prefix)
    try:
        origin, clone = f"{root}/origin.git", f"{root}/clone.git"
        subprocess.run(["git", "clone", "-q", "--bare", "--no-local", str(source), origin], check=True)
        subprocess.run(["git", "clone", "-q", "--bare", origin, clone], check=True)
        yield origin, clone
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_settings(clone: str, origin: str, **extra: Any) -> Settings:
    """A benchmark's service settings: ``clone`` serving ``published`` of ``origin``,
    no upkeep or polling to run beside what is measured."""
    return Settings(clone, origin, "published", "x" * 40, None, upkeep_seconds=0, poll_seconds=0,
                    **extra)


class PeakRss:
    """The highest resident size (bytes) of ``process`` seen while it runs, sampled
    every 2 ms from a thread: what a reload's transient memory adds, which a sample
    between reloads misses."""

    def __init__(self, process: psutil.Process) -> None:
        self.process, self.peak, self._stop = process, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
