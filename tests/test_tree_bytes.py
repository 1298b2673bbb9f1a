"""TreeBytes: the entries that differ between two trees, found from their raw
bytes. The oracle is git: the trees are written by ``git mktree`` and read back by
``git ls-tree``, so neither side of the comparison uses our parsing.

Two planted mistakes these tests do not catch, and why they are not faults: a
common prefix and suffix that overlap (the suffix not limited by the prefix) give
the same answer, since the middle is then empty on the old side and exactly the
inserted bytes on the new; and a suffix one byte too long only misplaces the end
when an entry's first byte differs alone, which needs a mode git never writes
("100644" -> "?00644"); anything else makes the new middle unparseable and the
rest is parsed."""

from __future__ import annotations

import itertools
import random
import subprocess
from pathlib import Path

import pytest
from dulwich.repo import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotreload.git import objects, trees
from hotreload.git.errors import GitError
from hotreload.git.repo import GitRepo

MODES = ("100644", "100755", "120000", "40000")
# names git allows, with the bytes that make entry boundaries ambiguous: spaces,
# digits, and text that looks like the start of an entry ("100644 x")
NAME_PARTS = ("a", "b", "z", " ", "1", "100644 ", "0", "é", "yy", "-", ".toml", "\t")


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], input=stdin, capture_output=True,
                          text=True, check=True, encoding="utf-8", errors="surrogateescape").stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trees") / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def mktree(repo: Path, entries: dict[str, tuple[str, str]]) -> str:
    """A tree written by git from name -> (mode, id) (the objects need not exist)."""
    lines = "".join(f"{mode} {'tree' if mode == '40000' else 'blob'} {sha}\t{name}\n"
                    for name, (mode, sha) in entries.items())
    return git(repo, "mktree", "--missing", stdin=lines).strip()


def ls_tree(repo: Path, tree: str) -> dict[bytes, tuple[int, bytes]]:
    """git's own reading of a tree."""
    found = {}
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "-z", tree], capture_output=True, check=True).stdout
    for record in filter(None, out.split(b"\0")):
        meta, _, name = record.partition(b"\t")
        mode, _kind, sha = meta.split(b" ")
        found[name] = (int(mode, 8), sha)
    return found


def expected(repo: Path, old: str | None, new: str | None) -> set[tuple]:
    before = ls_tree(repo, old) if old else {}
    after = ls_tree(repo, new) if new else {}
    return {(name, before.get(name), after.get(name)) for name in before.keys() | after.keys()
            if before.get(name) != after.get(name)}


def random_sha(rng: random.Random) -> str:
    # ids whose raw bytes hold NULs and spaces too, as real ids do
    return bytes(rng.choice((0, 0x20, rng.randrange(256))) for _ in range(20)).hex()


def random_name(rng: random.Random) -> str:
    return "".join(rng.choice(NAME_PARTS) for _ in range(rng.randint(1, 4))).strip("\t") or "x"


def changes(repo: Path, cache: trees.TreeBytes, old: str | None, new: str | None) -> set[tuple]:
    store = Repo(str(repo)).object_store
    found = cache.changes(store, old.encode() if old else None, new.encode() if new else None)
    assert len(found) == len({name for name, _, _ in found})
    return set(found)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 300), edits=st.integers(1, 6))
def test_changes_equal_git_over_a_chain_of_versions(repo: Path, seed: int, size: int, edits: int) -> None:
    """Versions v0 -> v1 -> v2 -> v3 of one folder, each a few edits (modify, add,
    remove, change mode) from the last: every step's changes equal git's, through
    a cache that derived each version's offsets from the previous one."""
    rng = random.Random(seed)
    entries = {random_name(rng): (rng.choice(MODES), random_sha(rng)) for _ in range(size)}
    versions = [mktree(repo, entries)]
    for _ in range(3):
        for _ in range(edits):
            kind = rng.choice(("modify", "add", "remove", "mode"))
            if kind == "add" or not entries:
                entries[random_name(rng) + rng.choice(("", "x", " y"))] = (rng.choice(MODES), random_sha(rng))
                continue
            name = rng.choice(sorted(entries))
            if kind == "remove":
                del entries[name]
            elif kind == "modify":  # a new id, or one differing only in its first or last byte
                sha = entries[name][1]
                entries[name] = (entries[name][0], rng.choice((
                    random_sha(rng), f"{(int(sha[:2], 16) + 1) % 256:02x}{sha[2:]}",
                    f"{sha[:-2]}{(int(sha[-2:], 16) + 1) % 256:02x}")))
            else:
                entries[name] = (rng.choice(MODES), entries[name][1])
        versions.append(mktree(repo, entries))
    cache = trees.TreeBytes()
    assert changes(repo, cache, None, versions[0]) == expected(repo, None, versions[0])
    for old, new in itertools.pairwise(versions):
        assert changes(repo, cache, old, new) == expected(repo, old, new)
    # and backwards (the newest version's offsets were derived, never scanned), and to nothing
    assert changes(repo, cache, versions[-1], versions[0]) == expected(repo, versions[-1], versions[0])
    assert changes(repo, trees.TreeBytes(), versions[-1], None) == expected(repo, versions[-1], None)


def test_an_entry_of_the_new_tree_running_into_the_common_tail(repo: Path) -> None:
    """Old: ``abc`` then ``yy``; new: one entry named ``abc 100644 yy`` with yy's id.
    The new tree ends with the bytes of the old ``yy`` entry, but there they are the
    end of a name, not an entry: the rest of the new tree must be parsed."""
    sha0, sha1 = "11" * 20, "22" * 20
    old = mktree(repo, {"abc": ("100644", sha0), "yy": ("100644", sha1)})
    new = mktree(repo, {"abc 100644 yy": ("100644", sha1)})
    cache = trees.TreeBytes()
    assert changes(repo, cache, old, new) == expected(repo, old, new) == {
        (b"abc", (0o100644, sha0.encode()), None),
        (b"yy", (0o100644, sha1.encode()), None),
        (b"abc 100644 yy", None, (0o100644, sha1.encode())),
    }
    assert changes(repo, cache, new, old) == expected(repo, new, old)


def test_a_one_entry_change_parses_only_that_entry(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of it: with the old version known, a modified entry in a folder of
    5,000 parses one entry of each version, not 10,000."""
    rng = random.Random(7)
    entries = {f"person-{n:05d}.toml": ("100644", random_sha(rng)) for n in range(5000)}
    old = mktree(repo, entries)
    entries["person-02500.toml"] = ("100644", random_sha(rng))
    new = mktree(repo, entries)
    cache = trees.TreeBytes()
    cache.changes(Repo(str(repo)).object_store, None, old.encode())  # the old version, as a reload leaves it
    parsed: list[int] = []
    real = trees.parse_tree

    def counting(raw: bytes, sha_len: int) -> list:
        found = list(real(raw, sha_len))
        parsed.append(len(found))
        return found

    monkeypatch.setattr(trees, "parse_tree", counting)
    assert changes(repo, cache, old, new) == expected(repo, old, new)
    assert sum(parsed) == 2


def test_not_a_tree_and_a_malformed_tree_are_errors(repo: Path) -> None:
    blob = git(repo, "hash-object", "-w", "--stdin", stdin="hello\n").strip()
    store = Repo(str(repo)).object_store
    with pytest.raises(GitError, match="not a tree"):
        trees.TreeBytes().changes(store, None, blob.encode())

    class Store:
        def get_raw(self, sha: bytes) -> tuple[int, bytes]:
            return trees.Tree.type_num, b"100644 cut\0" + b"x" * 7  # id cut short

    with pytest.raises(GitError):
        trees.TreeBytes().changes(Store(), None, b"ab" * 20)


def test_the_cache_is_bounded_by_bytes(repo: Path) -> None:
    rng = random.Random(3)
    cache = trees.TreeBytes(base_bytes=0)
    versions = [mktree(repo, {f"n{k}": ("100644", random_sha(rng)) for k in range(50)}) for _ in range(10)]
    for old, new in itertools.pairwise(versions):
        changes(repo, cache, old, new)
    one = len(ls_tree(repo, versions[0])) * (len("100644 n00\0") + 20)  # about one tree's bytes
    assert cache.held_bytes <= 4 * 2 * one  # four times the largest tree (+ offsets), not all ten
    assert len(cache) < len(versions)


# -- writing a tree by splicing its raw bytes -----------------------------------------

def git_expected_tree(repo: Path, base: str, changes: dict[str, str | None]) -> str:
    """What git makes of ``base`` with each path set to a blob id (None: removed):
    its own index, ``update-index --index-info``, ``write-tree``."""
    env = {"GIT_INDEX_FILE": str(repo / "oracle-index"), "PATH": "/usr/bin:/bin"}
    run = dict(cwd=repo, env=env, check=True, capture_output=True)
    subprocess.run(["git", "--git-dir", str(repo), "read-tree", base], **run)
    info = "".join(f"100644 {sha}\t{path}\n" if sha else f"0 {'0' * 40}\t{path}\n" for path, sha in changes.items())
    subprocess.run(["git", "--git-dir", str(repo), "update-index", "--index-info"], input=info.encode(), **run)
    return subprocess.run(["git", "--git-dir", str(repo), "write-tree"], **run).stdout.decode().strip()


@pytest.fixture(scope="module")
def wrepo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository for the writing tests: every object present, so ``git fsck`` can judge."""
    path = tmp_path_factory.mktemp("writes") / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


FILE_NAMES = ("a", "a-b", "a.toml", "a b", "b", "z", "é", "x 100644 y", "people", "people.toml", "0")


def random_tree(repo: Path, rng: random.Random, size: int) -> tuple[str, dict[str, str], dict[str, str]]:
    """A tree of ``size`` files (fewer where a path would be a file and a folder) in folders up
    to two deep, written by git's own index: (its id, blob id by path, text by path)."""
    files = {}
    for _ in range(size):
        depth = rng.choice((0, 1, 1, 2))
        files["/".join(rng.choice(FILE_NAMES) for _ in range(depth + 1))] = rng.choice(("one", "two", "three"))
    paths = {}
    for path in sorted(files):  # a path cannot be both a file and a folder
        if not any(path.startswith(p + "/") or p.startswith(path + "/") for p in paths):
            paths[path] = git(repo, "hash-object", "-w", "--stdin", stdin=files[path]).strip()
    env = {"GIT_INDEX_FILE": str(repo / "base-index"), "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "--git-dir", str(repo), "read-tree", "--empty"], env=env, check=True)
    info = "".join(f"100644 {sha}\t{path}\n" for path, sha in paths.items())
    subprocess.run(["git", "--git-dir", str(repo), "update-index", "--index-info"], input=info.encode(), env=env,
                   check=True, cwd=repo)
    base = subprocess.run(["git", "--git-dir", str(repo), "write-tree"], env=env, check=True,
                          capture_output=True, cwd=repo).stdout.decode().strip()
    return base, paths, {path: files[path] for path in paths}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 120))
def test_read_file_finds_what_git_wrote_and_nothing_else(wrepo: Path, seed: int, size: int) -> None:
    """Every file of a tree git wrote reads back as its text; a folder, a path below a file
    and a name that is not there are None."""
    rng = random.Random(seed)
    base, paths, texts = random_tree(wrepo, rng, size)
    repo = GitRepo(str(wrepo))
    for path in paths:
        assert repo.read_file(base, path) == texts[path].encode(), path
        assert repo.read_file(base, path + "/a") is None  # below a file
    folders = {path.rsplit("/", 1)[0] for path in paths if "/" in path}
    for folder in folders:
        assert repo.read_file(base, folder) is None
    for path in {"/".join(rng.choice(FILE_NAMES) for _ in range(rng.choice((1, 2, 3)))) for _ in range(20)}:
        if path not in paths:
            assert repo.read_file(base, path) is None, path
    repo.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 120), edits=st.integers(1, 5))
def test_a_written_tree_is_the_tree_git_writes(wrepo: Path, seed: int, size: int, edits: int) -> None:
    """Files added, replaced and removed at any depth, folders appearing and
    disappearing, a file replacing a folder of the same name and back: the tree id
    equals git's own (``write-tree``) for the same changes."""
    repo = wrepo
    rng = random.Random(seed)
    blob = lambda text: git(repo, "hash-object", "-w", "--stdin", stdin=text).strip()  # noqa: E731
    base, paths, _ = random_tree(repo, rng, size)
    changes: dict[str, bytes | None] = {}
    for _ in range(edits):
        if paths and rng.random() < 0.4:
            changes[rng.choice(sorted(paths))] = None  # remove an existing file
        else:
            depth = rng.choice((0, 1, 2))
            path = "/".join(rng.choice(FILE_NAMES) for _ in range(depth + 1))
            present = [p for p in paths if changes.get(p, b"") is not None] + [p for p, c in changes.items() if c]
            if any(p.startswith(path + "/") or path.startswith(p + "/") for p in present):
                continue  # a file where a folder is (or the reverse): git's index would refuse it too
            changes[path] = rng.choice(("four", "five", "one")).encode()
    store = Repo(str(repo)).object_store
    cache = trees.TreeBytes()
    ours = cache.write(store, base, changes)
    theirs = git_expected_tree(repo, base, {p: (blob(c.decode()) if c is not None else None) for p, c in changes.items()})
    if ours != theirs:  # show the difference, as git lists it
        pytest.fail(f"{changes}\nours:\n{git(repo, 'ls-tree', '-r', ours)}\ngit:\n{git(repo, 'ls-tree', '-r', theirs)}")
    git(repo, "fsck", "--no-dangling", "--strict")  # and every tree written is well-formed
    # each tree written is remembered with offsets carried over from its base: they must be
    # where git's bytes put each entry (scanned here, one entry at a time)
    written = [ours] + [line.split()[2] for line in git(repo, "ls-tree", "-r", "-t", ours).splitlines()
                        if line.split()[1] == "tree"]
    for sha in written:
        remembered = cache._trees.get(sha.encode())
        if remembered is None:
            continue  # a folder the write did not touch
        raw = subprocess.run(["git", "-C", str(repo), "cat-file", "tree", sha], capture_output=True,
                             check=True).stdout
        starts, at = [], 0
        while at < len(raw):
            starts.append(at)
            at = raw.index(b"\0", at) + 21
        assert remembered.raw == raw and list(remembered.offsets) == [*starts, len(raw)], sha


def test_removing_every_file_gives_the_empty_tree(wrepo: Path) -> None:
    repo = wrepo
    blob = git(repo, "hash-object", "-w", "--stdin", stdin="x").strip()
    base = mktree(repo, {"only.toml": ("100644", blob)})
    store = Repo(str(repo)).object_store
    assert trees.TreeBytes().write(store, base, {"only.toml": None}) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@pytest.mark.parametrize("case", ["folder becomes a file", "file becomes a folder"])
def test_a_file_and_a_folder_of_one_name_replace_each_other(wrepo: Path, case: str) -> None:
    repo = wrepo
    one = git(repo, "hash-object", "-w", "--stdin", stdin="one").strip()
    sub = mktree(repo, {"x.toml": ("100644", one)})
    if case == "folder becomes a file":
        base = mktree(repo, {"a": ("40000", sub), "a-b": ("100644", one), "a.toml": ("100644", one)})
        changes: dict[str, bytes | None] = {"a/x.toml": None, "a": b"two"}
    else:
        base = mktree(repo, {"a": ("100644", one), "a-b": ("100644", one), "a.toml": ("100644", one)})
        changes = {"a": None, "a/x.toml": b"two"}
    two = git(repo, "hash-object", "-w", "--stdin", stdin="two").strip()
    store = Repo(str(repo)).object_store
    ours = trees.TreeBytes().write(store, base, changes)
    assert ours == git_expected_tree(repo, base, {p: (two if c else None) for p, c in changes.items()})
    with pytest.raises(ValueError, match="as a file and as a folder"):
        trees.TreeBytes().write(store, base, {"a": b"two", "a/y.toml": b"two"})


def test_the_empty_tree_is_known_without_being_stored(tmp_path: Path) -> None:
    repo = tmp_path / "fresh.git"  # the shared repositories may hold it by now
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    one = git(repo, "hash-object", "-w", "--stdin", stdin="one").strip()
    tree = mktree(repo, {"a.toml": ("100644", one)})
    store = Repo(str(repo)).object_store
    assert not objects.has_object(store, trees.EMPTY_TREE_ID)
    assert trees.TreeBytes().changes(store, trees.EMPTY_TREE_ID, tree.encode()) == [
        (b"a.toml", None, (0o100644, one.encode()))]


def _naive_prefix(a: bytes, b: bytes, limit: int) -> int:
    n = 0
    while n < limit and a[n] == b[n]:
        n += 1
    return n


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(max_size=40), mid_a=st.binary(max_size=12), mid_b=st.binary(max_size=12),
       tail=st.binary(max_size=40), chunk=st.sampled_from([1, 3, 8, 1 << 16]), data=st.data())
def test_common_prefix_and_suffix_count_equal_bytes_one_by_one(
        head: bytes, mid_a: bytes, mid_b: bytes, tail: bytes, chunk: int, data: st.DataObject,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunked memcmp search against a count made one byte at a time, with chunks
    shorter than, equal to and longer than the strings."""
    monkeypatch.setattr(trees, "_CHUNK", chunk)
    a, b = head + mid_a + tail, head + mid_b + tail
    limit = data.draw(st.integers(0, min(len(a), len(b))))
    prefix = trees._common_prefix(a, b, limit)
    assert prefix == _naive_prefix(a, b, limit)
    rest = data.draw(st.integers(0, min(len(a), len(b))))
    assert trees._common_suffix(a, b, rest) == _naive_prefix(a[::-1], b[::-1], rest)


# -- the recursive diff a reload builds from, against git's diff-tree --------------------------

ENTRY_MODES = ("100644", "100644", "100755", "120000", "160000")


def index_tree(repo: Path, files: dict[str, tuple[str, str]]) -> str:
    """A nested tree of path -> (mode, id) written by git's own index (the ids need not exist)."""
    env = {"GIT_INDEX_FILE": str(repo / "diff-index"), "PATH": "/usr/bin:/bin"}
    run = dict(cwd=repo, env=env, check=True, capture_output=True)
    subprocess.run(["git", "--git-dir", str(repo), "read-tree", "--empty"], **run)
    info = "".join(f"{mode} {sha}\t{path}\n" for path, (mode, sha) in files.items())
    subprocess.run(["git", "--git-dir", str(repo), "update-index", "--index-info"], input=info.encode(), **run)
    return subprocess.run(["git", "--git-dir", str(repo), "write-tree", "--missing-ok"], **run).stdout.decode().strip()


def git_file_changes(repo: Path, old: str, new: str) -> set[tuple[str, str | None, str | None]]:
    """``git diff-tree -r``, read as diff_trees answers: regular files only (a symlink or a
    submodule is not a record), so a change of mode alone is no change, and a file that
    becomes a symlink is a file removed."""
    out = subprocess.run(["git", "--git-dir", str(repo), "diff-tree", "-r", "-z", "--no-renames", old, new],
                         capture_output=True, check=True).stdout.split(b"\0")
    found = set()
    for meta, path in zip(out[0::2], out[1::2], strict=False):
        old_mode, new_mode, old_sha, new_sha, _status = meta[1:].decode().split(" ")
        before = old_sha if old_mode in ("100644", "100755") else None
        after = new_sha if new_mode in ("100644", "100755") else None
        if before != after:
            found.add((path.decode(errors="surrogateescape"), before, after))
    return found


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), size=st.integers(0, 80), edits=st.integers(1, 8))
def test_diff_trees_equals_git_diff_tree_over_random_nested_trees(wrepo: Path, seed: int, size: int, edits: int) -> None:
    """Two versions of a tree up to three folders deep, with executables, symlinks and
    submodules, names git finds hard to split, and edits that change ids and modes, remove
    files, and turn a file into a folder and back: the files that changed are git's."""
    rng = random.Random(seed)

    def fits(files: dict[str, tuple[str, str]], path: str) -> bool:  # not a file and a folder at once
        return not any(p.startswith(path + "/") or path.startswith(p + "/") for p in files if p != path)

    def random_path() -> str:
        return "/".join(rng.choice(FILE_NAMES) for _ in range(rng.choice((1, 1, 2, 3))))

    files: dict[str, tuple[str, str]] = {}
    for _ in range(size):
        path = random_path()
        if fits(files, path):
            files[path] = (rng.choice(ENTRY_MODES), random_sha(rng))
    old = index_tree(wrepo, files)
    for _ in range(edits):
        kind = rng.choice(("id", "mode", "remove", "add", "swap"))
        path = rng.choice(sorted(files)) if files and kind != "add" else random_path()
        if kind == "swap" and files:  # a file becomes a folder holding a file of its own
            del files[path]
            files[f"{path}/{rng.choice(FILE_NAMES)}"] = ("100644", random_sha(rng))
        elif kind == "remove" and files:
            del files[path]
        elif kind == "mode" and path in files:
            files[path] = (rng.choice(ENTRY_MODES), files[path][1])
        elif fits(files, path):
            files[path] = (files.get(path, ("100644", ""))[0], random_sha(rng))
        else:  # a folder becomes a file (or a file becomes a folder, above it)
            for other in [p for p in files if p.startswith(path + "/") or path.startswith(p + "/")]:
                del files[other]
            files[path] = ("100644", random_sha(rng))
    new = index_tree(wrepo, files)
    store = Repo(str(wrepo)).object_store
    in_order = list(trees.TreeBytes().diff(store, old, new))
    ours = {(c.path, c.old, c.new) for c in in_order}
    assert ours == git_file_changes(wrepo, old, new)
    assert {(p, n, o) for p, o, n in ours} == {(c.path, c.old, c.new) for c in trees.TreeBytes().diff(store, new, old)}
    # in path order, and resumable after any path (a page of the change feed): the rest, in order
    assert [c.path for c in in_order] == sorted({c.path for c in in_order})
    for after in [*rng.sample([c.path for c in in_order], min(3, len(in_order))), random_path(), ""]:
        assert list(trees.TreeBytes().diff(store, old, new, after)) == [c for c in in_order if c.path > after]
