"""The cold-start floor: every record of a repository's ``published`` tree read with
``git cat-file --batch`` and parsed with ``tomllib``: what any loader must at least
do. Used by the start-up benchmarks, and runnable on its own to compare a full build
with the floor on any repository, in the same process and minute::

    .venv/bin/python benchmarks/floor.py .bench-cache/corpus-v3-50000.git   # build ms, floor ms, ratio
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

from hotreload.git.repo import GitRepo


def record_shas(path: Path | str) -> list[str]:
    repo = GitRepo(str(path))
    tree = repo.tree_of(repo.branch_commit("published") or "")
    shas = [e.sha for e in repo.list_blobs(tree) if e.path.endswith(".toml") and not e.path.startswith(".gitsheets/")]
    repo.close()
    return shas


def read_and_parse(path: Path | str, shas: list[str]) -> int:
    """The floor's work; returns how many records it parsed."""
    out = subprocess.run(["git", "--git-dir", str(path), "cat-file", "--batch"],
                         input="".join(f"{s}\n" for s in shas).encode(), capture_output=True, check=True).stdout
    pos = n = 0
    while pos < len(out):
        newline = out.index(b"\n", pos)
        size = int(out[pos:newline].split()[2])
        tomllib.loads(out[newline + 1:newline + 1 + size].decode())
        pos = newline + 2 + size
        n += 1
    return n


def floor_seconds(path: Path | str) -> float:
    shas = record_shas(path)
    started = time.perf_counter()
    read_and_parse(path, shas)
    return time.perf_counter() - started


def build_seconds(path: Path | str) -> float:
    from hotreload.data.snapshot import build_full

    started = time.perf_counter()
    repo = GitRepo(str(path))  # a fresh repository object: nothing cached from an earlier build
    build_full(repo, repo.branch_commit("published") or "")
    repo.close()
    return time.perf_counter() - started


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        floor, build = floor_seconds(arg), build_seconds(arg)
        print(f"{arg}: full build {build * 1000:.0f} ms, floor {floor * 1000:.0f} ms, build/floor {build / floor:.2f}")
