"""Reading loose objects raw (objects.get_raw) against git itself: the same type and
bytes as ``git cat-file`` for every kind, loose or packed, and a corrupt loose
object is an error that names it, never wrong content."""

from __future__ import annotations

import random
import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotreload.git.errors import GitError
from hotreload.git.objects import get_raw
from hotreload.git.repo import GitRepo
from tests.conftest import World, git

KINDS = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}


def cat_file(repo: Path, sha: str) -> tuple[int, bytes]:
    kind = git("--git-dir", str(repo), "cat-file", "-t", sha)
    body = subprocess.run(["git", "--git-dir", str(repo), "cat-file", kind, sha], capture_output=True,
                          check=True).stdout
    return KINDS[kind], body


def test_loose_and_packed_objects_read_as_git_reads_them(world: World) -> None:
    world.commit_upstream({"projects/zz-loose.toml": 'title = "Loose"\n'}, push=True)
    git("--git-dir", str(world.origin), "tag", "-a", "-m", "a tag", "v1", "published")
    head = world.origin_head()
    shas = [head, git("--git-dir", str(world.origin), "rev-parse", "published^{tree}"),
            git("--git-dir", str(world.origin), "rev-parse", "published:projects"),
            git("--git-dir", str(world.origin), "rev-parse", "published:projects/zz-loose.toml"),
            git("--git-dir", str(world.origin), "rev-parse", "v1")]
    loose = {p.parent.name + p.name for p in (world.origin / "objects").glob("??/*")}
    assert loose & set(shas), "the test needs loose objects"
    repo = GitRepo(str(world.origin))
    try:
        for sha in shas:
            assert get_raw(repo.store, sha.encode()) == cat_file(world.origin, sha), sha
        git("--git-dir", str(world.origin), "repack", "-adq")
        git("--git-dir", str(world.origin), "prune-packed")
        repo.close()
        repo = GitRepo(str(world.origin))
        for sha in shas:  # now packed: dulwich's own path
            assert get_raw(repo.store, sha.encode()) == cat_file(world.origin, sha), sha
    finally:
        repo.close()


def test_a_corrupt_loose_object_is_an_error_naming_it(world: World) -> None:
    import zlib

    world.commit_upstream({"projects/zz-bad.toml": 'title = "Bad"\n'}, push=True)
    sha = git("--git-dir", str(world.origin), "rev-parse", "published:projects/zz-bad.toml")
    path = world.origin / "objects" / sha[:2] / sha[2:]
    path.chmod(0o644)
    path.write_bytes(zlib.compress(b"blob 999\0short"))
    repo = GitRepo(str(world.origin))
    try:
        with pytest.raises(GitError, match=sha):
            get_raw(repo.store, sha.encode())
    finally:
        repo.close()


def test_a_big_object_written_uncompressed_is_read_by_git(world: World) -> None:
    from hotreload.git.objects import STORE_UNCOMPRESSED_FROM, write_loose

    content = b"".join(b"line %d of a big flat folder's worth of bytes\n" % i
                       for i in range(STORE_UNCOMPRESSED_FROM // 40))
    assert len(content) >= STORE_UNCOMPRESSED_FROM
    repo = GitRepo(str(world.clone))
    try:
        sha = write_loose(repo.store, 3, content)
        assert get_raw(repo.store, sha.encode()) == (3, content)
    finally:
        repo.close()
    assert cat_file(world.clone, sha) == (3, content)
    git("--git-dir", str(world.clone), "fsck", "--strict", "--no-dangling")


@given(size=st.sampled_from([0, 1, 0xFFFF - 12, 0xFFFF - 11, 0xFFFF - 10, 2 * 0xFFFF - 11, 200_000]),
       seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_a_stored_zlib_stream_inflates_to_its_data(size: int, seed: int) -> None:
    """Stored deflate blocks as zlib itself reads them, at every block boundary (the
    11-byte header ``blob <size>\\0`` counts: 0xFFFF - 11 fills one block exactly)."""
    from hotreload.git.objects import stored_zlib

    raw = random.Random(seed).randbytes(size)
    header = b"blob %d\0" % size
    assert zlib.decompress(b"".join(stored_zlib(header, raw))) == header + raw


def test_a_store_moved_away_is_not_recreated_by_a_write(world: World, tmp_path: Path) -> None:
    """A push to a local remote holds the remote's store open; if the remote is moved
    away meanwhile, writing an object must fail, not recreate its folders at the
    old path (the model test saw an origin folder reappear and block the move back)."""
    from hotreload.git.objects import write_loose

    repo = GitRepo(str(world.origin))
    away = tmp_path / "away.git"
    try:
        world.origin.rename(away)
        with pytest.raises(OSError):
            write_loose(repo.store, 3, b"written after the remote moved\n")
        assert not world.origin.exists()
    finally:
        repo.close()
        away.rename(world.origin)


def test_objects_written_together_appear_only_whole_and_leave_nothing_on_a_failure(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """``write_loose_many`` writes every file, fsyncs them side by side, then renames
    them in order: a failure while writing leaves none of them visible and no
    temporary file, and a batch that completes is what git reads."""
    from hotreload.git import objects

    store = GitRepo(str(world.clone)).store
    contents = [f"blob {i}\n".encode() * (1 + (i % 2) * 5000) for i in range(5)]  # small (deflated), big (stored)
    batch = [(3, raw, objects.object_id(3, raw)) for raw in contents]
    before = {p for p in (world.clone / "objects").rglob("*") if p.is_file()}
    real, calls = objects.zlib_ng.compress, []

    def failing(data: bytes, level: int = -1) -> bytes:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(data, level)

    monkeypatch.setattr(objects.zlib_ng, "compress", failing)
    with pytest.raises(OSError, match="disk full"):
        objects.write_loose_many(store, batch)
    monkeypatch.setattr(objects.zlib_ng, "compress", real)
    assert {p for p in (world.clone / "objects").rglob("*") if p.is_file()} == before
    objects.write_loose_many(store, batch)
    for type_num, raw, sha in batch:
        assert cat_file(world.clone, sha.decode()) == (type_num, raw)
    assert not list((world.clone / "objects").rglob("tmp_obj_*"))
