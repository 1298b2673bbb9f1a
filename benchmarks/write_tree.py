"""A write's tree: ``write_tree_changes`` of one person record, a chain of writes
each on the tree the one before made, on a ``--shared`` clone of a cached corpus (the
corpus itself is not written). Prints the first and the median of the rest::

    .venv/bin/python benchmarks/write_tree.py 500000     # corpus .bench-cache/corpus-v3-500000.git

Run it from two worktrees alternately to compare versions (``PYTHONPATH=src:.``).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.changes import BENCH_CACHE, corpus_path, require_corpus
from hotreload.git.repo import GitRepo

WRITES = 12


def main(argv: list[str]) -> int:
    records = argv[0]
    require_corpus(records)
    root = tempfile.mkdtemp(dir=BENCH_CACHE, prefix="write-tree-")
    try:
        clone = f"{root}/clone.git"
        subprocess.run(["git", "clone", "-q", "--bare", "--shared", str(corpus_path(records)),
                        clone], check=True)
        repo = GitRepo(clone)
        tree = repo.tree_of(repo.branch_commit("published") or "")
        people = sorted(e.path for e in repo.list_blobs(repo.subtree(tree, "people") or "", "people"))
        times = []
        for n, path in enumerate(people[::max(1, len(people) // WRITES)][:WRITES]):
            started = time.perf_counter()
            tree = repo.write_tree_changes(tree, {path: f"id = 'edited-{n}'\n".encode()})
            times.append((time.perf_counter() - started) * 1000)
        repo.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{records} records: a write's tree, first {times[0]:.0f} ms, median of the next {len(times) - 1} "
          f"{statistics.median(times[1:]):.0f} ms; all: {[round(t) for t in times]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
