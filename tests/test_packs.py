"""Reading packs as git leaves them: long delta chains (``git fast-import``) and
deltas between similar records (``git repack -adf``) read back exactly, by the
one-pass delta resolution and by the per-object path alike (issue #14, part 4)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hotreload.data.snapshot import build_full
from hotreload.git import objects
from hotreload.git.repo import GitRepo
from tests.conftest import corpus_files, write_corpus


def repacked(tmp_path: Path, how: str) -> Path:
    source = tmp_path / "written.git"
    write_corpus(str(source), corpus_files(400, seed=11))
    target = tmp_path / f"{how}.git"
    if how == "fast-import":
        subprocess.run(["git", "init", "-q", "--bare", str(target)], check=True)
        stream = subprocess.run(["git", "--git-dir", str(source), "fast-export", "--reencode=no", "--all"],
                                check=True, capture_output=True).stdout
        subprocess.run(["git", "--git-dir", str(target), "fast-import", "--quiet"], input=stream, check=True)
    else:  # git repack finds few deltas among unrelated records (it is the history it deltas)
        subprocess.run(["git", "clone", "-q", "--bare", str(source), str(target)], check=True)
        subprocess.run(["git", "--git-dir", str(target), "repack", "-adf", "-q"], check=True)
    return target


def deltified_blobs(path: Path) -> int:
    pack = next((path / "objects" / "pack").glob("*.idx"))
    out = subprocess.run(["git", "--git-dir", str(path), "verify-pack", "-v", str(pack)],
                         check=True, capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if len(line.split()) == 7 and line.split()[1] == "blob")


@pytest.mark.parametrize("how", ["fast-import", "repack"])
def test_every_object_of_a_deltified_pack_reads_back_exactly(tmp_path: Path, how: str) -> None:
    path = repacked(tmp_path, how)
    if how == "fast-import":  # the case under test: most records stored as deltas, in long chains
        assert deltified_blobs(path) > 300
    repo = GitRepo(str(path))
    store = repo.repo.object_store
    shas = [e.sha for e in repo.list_blobs(repo.tree_of(repo.branch_commit("published") or ""))]
    got = objects.read_many(store, shas)
    # the oracle: git itself
    batch = subprocess.run(["git", "--git-dir", str(path), "cat-file", "--batch"], input="".join(
        f"{s}\n" for s in shas).encode(), check=True, capture_output=True).stdout
    want, pos = {}, 0
    while pos < len(batch):
        newline = batch.index(b"\n", pos)
        sha, _, size = batch[pos:newline].split()
        want[sha.decode()] = batch[newline + 1:newline + 1 + int(size)]
        pos = newline + 2 + int(size)
    assert got == want
    assert sum(build_full(repo, repo.branch_commit("published") or "").record_counts().values()) == 400
    repo.close()
