"""A received thin pack unpacked into loose objects (hotreload.git.unpack, decision 65).

The oracle is git: it makes the pack (``git pack-objects --thin``, deltas against
objects the receiver has, as ``upload-pack`` sends them), and it says what each
object is (``git cat-file``) and what it points to (``git ls-tree``, the commit's
parents)."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest
from dulwich.pack import unpack_object_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotreload.git.errors import GitError
from hotreload.git.unpack import pack_object_count, unpack, write_order
from tests.conftest import git

TYPES = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}


def _repo(path: Path) -> Path:
    git("init", "-q", "-b", "main", str(path))
    git("-C", str(path), "config", "user.email", "t@example.org")
    git("-C", str(path), "config", "user.name", "T")
    return path


def _commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for name, text in files.items():
        target = repo / name
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git("-C", str(repo), "add", "-A")
    git("-C", str(repo), "commit", "-q", "--allow-empty", "-m", message)
    return git("-C", str(repo), "rev-parse", "HEAD").strip()


def _thin_pack(repo: Path, new: str, old: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), "pack-objects", "--revs", "--thin", "--stdout", "-q"],
                          input=f"{new}\n^{old}\n".encode(), capture_output=True, check=True).stdout


def _pack_types(pack: bytes) -> list[int]:
    """The type of each entry in a pack (6, 7: deltas), read with dulwich's reader."""
    types, at = [], 12
    for _ in range(pack_object_count(pack)):
        entry, at = unpack_object_at(pack, at, hashlib.sha1)
        types.append(entry.pack_type_num)
    return types


def _cat(repo: Path, sha: str) -> tuple[int, bytes]:
    kind = git("-C", str(repo), "cat-file", "-t", sha).strip()
    body = subprocess.run(["git", "-C", str(repo), "cat-file", kind, sha], capture_output=True, check=True).stdout
    return {v: k for k, v in TYPES.items()}[kind], body


def _has(repo: Path, old: str):  # type: ignore[no-untyped-def]
    """base_of for a receiver that has ``old``'s objects and nothing newer."""
    known = set(git("-C", str(repo), "rev-list", "--objects", old).split())

    def base_of(binary: bytes) -> tuple[int, bytes] | None:
        sha = binary.hex()
        return _cat(repo, sha) if sha in known else None
    return base_of


def _check(repo: Path, new: str, old: str) -> None:
    """Unpacking git's thin pack for old..new yields exactly the objects git lists
    for old..new, each as git stores it, in a safe order."""
    pack = _thin_pack(repo, new, old)
    objects = unpack(pack, _has(repo, old))
    ids = [sha.decode() for _, _, sha in objects]
    expected = {line.split()[0] for line in git("-C", str(repo), "rev-list", "--objects", new, f"^{old}").splitlines()}
    assert sorted(ids) == sorted(expected)
    for type_num, raw, sha in objects:
        assert (type_num, raw) == _cat(repo, sha.decode())
    position = {sha: n for n, sha in enumerate(ids)}
    for type_num, _, sha in objects:
        if type_num == 2:
            pointed = [line.split()[2] for line in git("-C", str(repo), "ls-tree", sha.decode()).splitlines()]
        elif type_num == 1:
            pointed = git("-C", str(repo), "rev-parse", f"{sha.decode()}^@").split()
            pointed.append(git("-C", str(repo), "rev-parse", f"{sha.decode()}^{{tree}}").strip())
        else:
            continue
        for other in pointed:
            if other in position:
                assert position[other] < position[sha.decode()], (TYPES[type_num], sha, other)


def test_a_one_record_change_unpacks_to_what_git_stores(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r")
    people = {f"people/p{n:04d}.toml": f'id = "p{n}"\nfullName = "Person {n} with a long enough name"\n'
              for n in range(400)}
    old = _commit(repo, {**people, "projects/a.toml": 'title = "A"\n'}, "corpus")
    new = _commit(repo, {"people/p0200.toml": 'id = "p200"\nfullName = "Renamed"\n'}, "one record")
    pack = _thin_pack(repo, new, old)
    assert pack_object_count(pack) == 4  # commit, root tree, people/ tree, blob
    assert _pack_types(pack).count(7) >= 1  # the folder's tree as a delta against the receiver's
    _check(repo, new, old)


def test_several_commits_and_nested_folders_come_children_first(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r")
    old = _commit(repo, {f"a/b/c/f{n}.toml": f"n = {n}\n" * 20 for n in range(50)}, "base")
    _commit(repo, {"a/b/c/f3.toml": "n = 'three'\n", "a/x/new.toml": "x = 1\n"}, "two")
    _commit(repo, {"a/b/c/f4.toml": None, "d/e.toml": "e = 1\n"}, "three")
    new = _commit(repo, {"a/b/c/f3.toml": "n = 3\n" * 20}, "four")
    _check(repo, new, old)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), commits=st.integers(1, 4))
def test_random_histories_unpack_to_what_git_stores(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                    commits: int) -> None:
    rng = random.Random(seed)
    repo = _repo(tmp_path_factory.mktemp("r") / "r")
    names = [f"{rng.choice(['p', 'q/r', 'q', 's/t/u'])}/f{n}.toml" for n in range(60)]
    files = {name: f"v = {rng.random()}\n" * rng.randint(1, 30) for name in names}
    old = _commit(repo, files, "base")
    new = old
    for n in range(commits):
        change: dict[str, str | None] = {}
        for name in rng.sample(sorted(files), rng.randint(1, 5)):
            change[name] = None if rng.random() < 0.3 else f"w = {rng.random()}\n" * rng.randint(1, 30)
        change[f"{rng.choice(['p', 'new', 'q/r/new'])}/g{n}.toml"] = f"g = {n}\n"
        for name, text in change.items():
            if text is None:
                files.pop(name, None)
            else:
                files[name] = text
        change = {k: v for k, v in change.items() if v is not None or (repo / k).exists()}
        new = _commit(repo, change, f"c{n}")
    _check(repo, new, old)


def test_a_pack_not_matching_its_checksum_is_refused(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r")
    old = _commit(repo, {"a.toml": "a = 1\n"}, "one")
    new = _commit(repo, {"a.toml": "a = 2\n"}, "two")
    pack = bytearray(_thin_pack(repo, new, old))
    pack[20] ^= 0xFF
    with pytest.raises(GitError, match="checksum"):
        unpack(bytes(pack), _has(repo, old))
    with pytest.raises(GitError, match="not a pack"):
        unpack(b"HTTP/1.1 500 oops" + bytes(40), _has(repo, old))


def test_a_delta_against_an_object_the_clone_lacks_says_which(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r")
    old = _commit(repo, {f"p/f{n}.toml": f"n = {n}\n" for n in range(200)}, "one")
    new = _commit(repo, {"p/f7.toml": "n = 'seven'\n"}, "two")
    pack = _thin_pack(repo, new, old)
    with pytest.raises(GitError, match="lacks"):
        unpack(pack, lambda binary: None)


def test_write_order_ignores_a_coincidental_cycle() -> None:
    """Two trees whose bytes each hold the other's id (a coincidence the byte search
    cannot tell from a reference) still come out, both, once."""
    a_id, b_id = b"a" * 40, b"b" * 40
    a = (2, b"x" + bytes.fromhex(b_id.decode()), a_id)
    b = (2, b"y" + bytes.fromhex(a_id.decode()), b_id)
    blob = (3, b"text", b"c" * 40)
    order = write_order([a, b, blob])
    assert order[0] == blob and sorted(order[1:]) == sorted([a, b])

