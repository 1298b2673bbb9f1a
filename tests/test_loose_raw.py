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
BIG = 128 << 10


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
    real, calls = objects.zlib.compress, []

    def failing(data: bytes, level: int = -1) -> bytes:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(data, level)

    monkeypatch.setattr(objects.zlib, "compress", failing)
    with pytest.raises(OSError, match="disk full"):
        objects.write_loose_many(store, batch)
    monkeypatch.setattr(objects.zlib, "compress", real)
    assert {p for p in (world.clone / "objects").rglob("*") if p.is_file()} == before
    objects.write_loose_many(store, batch)
    for type_num, raw, sha in batch:
        assert cat_file(world.clone, sha.decode()) == (type_num, raw)
    assert not list((world.clone / "objects").rglob("tmp_obj_*"))


def _stream_of_stored_blocks(header: bytes, raw: bytes, sizes: list[int]) -> bytes:
    """``header + raw`` as a zlib stream of stored blocks: first of the given sizes,
    then of the most a block holds, written by hand from RFC 1950/1951 for the test."""
    data = header + raw
    blocks, pos = [], 0
    for size in sizes:
        blocks.append(data[pos:pos + size])
        pos += len(blocks[-1])
    blocks.extend(data[start:start + 0xFFFF] for start in range(pos, len(data), 0xFFFF))
    out = [b"\x78\x01"]
    for n, block in enumerate(blocks):
        out.append(bytes([n == len(blocks) - 1]) + len(block).to_bytes(2, "little")
                   + (len(block) ^ 0xFFFF).to_bytes(2, "little") + block)
    out.append(zlib.adler32(data).to_bytes(4, "big"))
    return b"".join(out)


@given(size=st.sampled_from([0, 1, 100, 0xFFFF - 11, 0xFFFF - 10, 200_000]), seed=st.integers(0, 2**16),
       level=st.sampled_from(["hand", 0, 1, 6, 9]))
@settings(max_examples=60, deadline=None)
def test_a_loose_objects_content_is_what_zlib_inflates(size: int, seed: int, level: str | int) -> None:
    """``loose_content`` against the standard library's zlib, on hand-made stored
    blocks (a header split across blocks, empty blocks), and on zlib's own at every
    level (0 makes stored blocks, as a big object is written)."""
    from hotreload.git.objects import loose_content

    rng = random.Random(seed)
    raw = rng.randbytes(size)
    header = b"blob %d" % size
    if level == "hand":
        stream = _stream_of_stored_blocks(header + b"\0", raw, [rng.choice([0, 1, 3, 7, 40]) for _ in range(4)])
    else:
        stream = zlib.compress(header + b"\0" + raw, int(level))
    whole = zlib.decompress(stream)
    assert loose_content(stream) == (header, whole[len(header) + 1:])


@pytest.mark.parametrize("damage", ["a content byte", "the checksum", "a block length", "the end cut off"])
def test_a_damaged_stored_stream_is_refused_as_zlib_refuses_it(damage: str) -> None:
    """Damage to a stored stream is never read past: reading it raises."""
    from hotreload.git.objects import loose_content

    raw = random.Random(7).randbytes(150_000)
    stream = bytearray(zlib.compress(b"tree 150000\0" + raw, 0))
    if damage == "a content byte":
        stream[70_000] ^= 0x40
    elif damage == "the checksum":
        stream[-1] ^= 1
    elif damage == "a block length":
        stream[3] ^= 1
    else:
        del stream[-10:]
    with pytest.raises(zlib.error):
        zlib.decompress(bytes(stream))  # the oracle agrees it is damaged
    with pytest.raises(zlib.error):
        loose_content(bytes(stream))


def test_bytes_after_a_stored_stream_are_read_as_zlib_reads_them() -> None:
    """A byte after the checksum: the object reads as zlib reads it (the stream, the
    byte ignored), as it always has here."""
    from hotreload.git.objects import loose_content

    raw = random.Random(8).randbytes(70_000)
    stream = zlib.compress(b"blob 70000\0" + raw, 0) + b"\0"
    assert loose_content(stream) == (b"blob 70000", zlib.decompress(stream)[len(b"blob 70000\0"):])


@pytest.mark.parametrize("kind", ["stored by us", "deflated by git"])
def test_a_big_loose_object_reads_as_git_reads_it(world: World, kind: str) -> None:
    """A big loose object (a flat folder's tree) reads as ``git cat-file`` reads it,
    for our stored stream and for git's own deflated one."""
    from hotreload.git.objects import write_loose

    content = random.Random(3).randbytes(BIG + 12_345)  # does not deflate: the file stays this big
    repo = GitRepo(str(world.clone))
    try:
        if kind == "stored by us":
            sha = write_loose(repo.store, 3, content)
        else:
            blob = world.clone.parent / "big.bin"
            blob.write_bytes(content)
            sha = git("--git-dir", str(world.clone), "hash-object", "-w", str(blob))
        assert (world.clone / "objects" / sha[:2] / sha[2:]).stat().st_size >= BIG
        assert get_raw(repo.store, sha.encode()) == cat_file(world.clone, sha) == (3, content)
    finally:
        repo.close()


@pytest.mark.parametrize("damage", ["cut short", "garbage (read)", "empty (read)"])
def test_a_loose_object_that_does_not_inflate_is_an_error_naming_it(world: World, damage: str) -> None:
    from hotreload.git.objects import write_loose

    repo = GitRepo(str(world.clone))
    try:
        sha = write_loose(repo.store, 3, random.Random(4).randbytes(BIG * 2))
        path = world.clone / "objects" / sha[:2] / sha[2:]
        data = path.read_bytes()
        path.chmod(0o644)
        path.write_bytes({"cut short": data[:BIG + 100], "garbage (read)": b"not zlib at all",
                          "empty (read)": b""}[damage])
        with pytest.raises(GitError, match=f"loose object {sha} is corrupt"):
            get_raw(repo.store, sha.encode())
    finally:
        repo.close()
