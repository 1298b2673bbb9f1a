"""Trees as their raw bytes: diffs, path lookups and writes whose work follows the
change, not the folder (decisions 55, 58, 73).

A gitsheets folder is flat (at 500,000 records ``people/`` is one tree of 150,000
entries, 7.4 MB), and a one-record change changes one entry of it. Here a tree is its
raw bytes plus the offset of each entry: two versions are compared a chunk at a time
(memcmp), and only the entries between the first and the last differing byte are
parsed; a write splices the changed entries into the raw bytes in git's order; a
lookup is a binary search; the new version's offsets follow from the old one's.
dulwich's ``tree_changes`` parses both versions whole (a 15,000-entry folder: 64 ms
against 1.2). git is the oracle in ``tests/test_tree_bytes.py``.
"""

from __future__ import annotations

import stat
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dulwich.errors import ObjectFormatException
from dulwich.lru_cache import LRUSizeCache
from dulwich.objects import Blob, Tree, parse_tree

from hotreload.git.errors import GitError
from hotreload.git.objects import RawObject, get_raw, has_object, object_id, write_loose, write_loose_many

SHA_BYTES = 20
"""A SHA-1 object id in a tree entry: 20 raw bytes."""
EMPTY_TREE_ID = b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree, which git knows without storing it."""
_CHUNK = 1 << 16

Entry = tuple[int, bytes]
"""(mode, hex id) of a tree entry."""
TreeChange = tuple[bytes, Entry | None, Entry | None]
"""A name whose entry differs between two trees: (name, before, after), None where absent."""


@dataclass(frozen=True)
class BlobChange:
    """A regular file that differs between two trees (None: absent on that side)."""

    path: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class RawTree:
    raw: bytes
    offsets: array[int]
    """Where each entry starts in ``raw``, then ``len(raw)``."""

    @property
    def size(self) -> int:
        return len(self.raw) + self.offsets.itemsize * len(self.offsets)


_EMPTY = RawTree(b"", array("q", [0]))


class TreeBytes:
    """One repository's trees as raw bytes with entry offsets: the cache a reload's
    diff, a write and a path lookup share (a tree id is a content address, so a tree
    read from another store, like a local remote's, is the same tree here). Least
    recently used out (dulwich's ``LRUSizeCache``), bounded by bytes: 16 MiB plus four
    times the largest tree seen, enough for the current and the next version of the
    largest folders."""

    def __init__(self, base_bytes: int = 16 << 20) -> None:
        self._base = self._bound = base_bytes
        self._trees: LRUSizeCache[bytes, RawTree] = LRUSizeCache(base_bytes, base_bytes, lambda tree: tree.size)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._trees)

    @property
    def held_bytes(self) -> int:
        return sum(tree.size for tree in self._trees.items().values())

    def _get(self, sha: bytes) -> RawTree | None:
        with self._lock:
            return self._trees.get(sha)

    def _put(self, sha: bytes, tree: RawTree) -> None:
        with self._lock:
            if self._base + 4 * tree.size > self._bound:
                self._bound = self._base + 4 * tree.size
                self._trees.resize(self._bound, self._bound)
            self._trees.add(sha, tree)

    def raw(self, store: Any, sha: bytes) -> bytes:
        """The tree's raw content (from the cache when it is there)."""
        found = self.cached(sha)
        return found if found is not None else _read_tree(store, sha)

    def cached(self, sha: bytes) -> bytes | None:
        """The tree's raw content if it is in the cache, else None."""
        found = self._get(sha)
        return found.raw if found is not None else None

    def tree(self, store: Any, sha: bytes) -> RawTree:
        """A tree's raw bytes with its entry offsets (scanned once, then cached)."""
        found = self._get(sha)
        if found is None:
            raw = _read_tree(store, sha)
            found = RawTree(raw, array("q", _entry_offsets(raw, 0, len(raw))))
            self._put(sha, found)
        return found

    def changes(self, store: Any, old: bytes | None, new: bytes | None) -> list[TreeChange]:
        """The entries that differ between two trees (None: the empty tree), in no
        particular order. Remembers ``new`` with its offsets."""
        if old == new:
            return []
        before = self.tree(store, old) if old is not None else _EMPTY
        raw = self.raw(store, new) if new is not None else b""
        a, offsets = before.raw, before.offsets
        limit = min(len(a), len(raw))
        same_head = _common_prefix(a, raw, limit)
        same_tail = _common_suffix(a, raw, limit - same_head)
        # entries [i, j) of the old tree hold every differing byte; they start where
        # the new tree's differing entries start, and those end where the old ones do
        # (shifted by the change in length): unless an entry of the new tree runs on
        # into the common tail (a name with spaces can make the tail of one entry look
        # like a whole entry), when the rest of the new tree is parsed
        i = bisect_right(offsets, same_head) - 1
        j = max(bisect_left(offsets, len(a) - same_tail), i)
        start, shift = offsets[i], len(raw) - len(a)
        try:
            added = _entry_offsets(raw, start, offsets[j] + shift)
        except GitError:
            j = len(offsets) - 1
            added = _entry_offsets(raw, start, len(raw))
        gone = _parse_entries(a, start, offsets[j])
        came = _parse_entries(raw, start, offsets[j] + shift)
        if new is not None:
            self._put(new, RawTree(raw, offsets[:i] + array("q", added[:-1]) + _shifted(offsets[j:], shift)))
        return [(name, gone.get(name), came.get(name))
                for name in gone.keys() | came.keys() if gone.get(name) != came.get(name)]

    def diff(self, store: Any, old_tree: str, new_tree: str, after: str = "") -> Iterator[BlobChange]:
        """Regular files added, removed or changed between two trees, in path order (git's: a
        folder sorts as its name and a '/'), from the first path after ``after``. Subtrees with
        the same id are skipped whole, and so is a folder wholly before ``after``; each changed
        folder is compared by :meth:`changes`, so the work follows the change, not the corpus,
        and a page of a large diff costs the page and the folders on its path."""
        stack: list[tuple[str, str, bytes | None, bytes | None]] = [("/", "", old_tree.encode(), new_tree.encode())]
        while stack:  # (sort key, path, old, new): a folder's key ends with '/', a file's is its path
            key, path, old, new = stack.pop()
            if not key.endswith("/"):
                yield BlobChange(path, _text(old), _text(new))
                continue
            level: list[tuple[str, str, bytes | None, bytes | None]] = []
            for raw_name, before, now in self.changes(store, old, new):
                name = raw_name.decode(errors="surrogateescape")
                child = f"{path}/{name}" if path else name
                old_dir, new_dir = _id_if(before, stat.S_ISDIR), _id_if(now, stat.S_ISDIR)
                if (old_dir or new_dir) and (child + "/" > after or after.startswith(child + "/")):
                    level.append((child + "/", child, old_dir, new_dir))
                old_file, new_file = _id_if(before, stat.S_ISREG), _id_if(now, stat.S_ISREG)
                if old_file != new_file and child > after:
                    level.append((child, child, old_file, new_file))
            stack += sorted(level, reverse=True)  # the smallest on top: popped first

    def find(self, store: Any, tree_sha: str, path: str) -> Entry | None:
        """(mode, hex id) of what ``path`` names below the tree (a file or a folder),
        or None: a binary search in each folder on the way."""
        found: Entry | None = (stat.S_IFDIR, tree_sha.encode())
        for part in filter(None, path.split("/")):
            if found is None or not stat.S_ISDIR(found[0]):
                return None
            found = _find(self.tree(store, found[1]), part.encode("utf-8", "surrogateescape"))
        return found

    def write(self, store: Any, base_tree: str | None, changes: Mapping[str, bytes | None]) -> str:
        """A new tree: ``base_tree`` with each path set to new content (or removed when
        None); folders left empty disappear, as in git. Each folder on the way is its
        previous version's raw bytes with the changed entries spliced in (decision 58),
        written after the objects it names, and remembered with its offsets (decision 73)."""
        written: list[RawObject] = []
        made: list[tuple[bytes, RawTree]] = []
        tree = self._write(store, base_tree.encode() if base_tree is not None else None, changes, written, made)
        write_loose_many(store, written)
        for sha, raw_tree in made:
            self._put(sha, raw_tree)  # its offsets known: the next write scans nothing
        return tree.decode() if tree is not None else write_loose(store, Tree.type_num, b"")

    def _write(self, store: Any, base_tree: bytes | None, changes: Mapping[str, bytes | None],
               written: list[RawObject], made: list[tuple[bytes, RawTree]]) -> bytes | None:
        """The id of ``base_tree`` with the changes below it (None: nothing left); new
        objects go to ``written``, each after those it names, new trees to ``made``."""
        by_top: dict[str, dict[str, bytes | None]] = {}
        for path, content in changes.items():
            top, _, rest = path.partition("/")
            by_top.setdefault(top, {})[rest] = content
        base = self.tree(store, base_tree) if base_tree is not None else _EMPTY
        edits: dict[bytes, Entry | None] = {}
        for top, sub in by_top.items():
            name = top.encode("utf-8", "surrogateescape")
            below = {path: content for path, content in sub.items() if path}
            content = sub.get("")
            if not below or (content is not None and all(c is None for c in below.values())):
                # a file directly in this tree (where a folder was, the folder goes)
                edits[name] = None if content is None else (0o100644, _new_object(written, Blob.type_num, content))
                continue
            if content is not None:
                raise ValueError(f"{top!r} cannot be written as a file and as a folder at once")
            existing = _find(base, name)  # a folder to change, or a file that a folder replaces
            new_sub = self._write(store, existing[1] if existing and stat.S_ISDIR(existing[0]) else None,
                                  below, written, made)
            edits[name] = None if new_sub is None else (stat.S_IFDIR, new_sub)
        spliced = _splice(base, edits)
        if not spliced.raw:
            return None
        sha = _new_object(written, Tree.type_num, spliced.raw)
        made.append((sha, spliced))
        return sha


def _id_if(entry: Entry | None, kind: Callable[[int], bool]) -> bytes | None:
    return entry[1] if entry is not None and kind(entry[0]) else None


def _text(sha: bytes | None) -> str | None:
    return None if sha is None else sha.decode()


def _read_tree(store: Any, sha: bytes) -> bytes:
    if sha == EMPTY_TREE_ID and not has_object(store, sha):
        return b""  # git knows the empty tree without storing it
    type_num, raw = get_raw(store, sha)
    if type_num != Tree.type_num:
        raise GitError(f"{sha.decode()} is not a tree")
    return raw


def _entry_offsets(raw: bytes, start: int, end: int) -> list[int]:
    """Where each tree entry in ``raw[start:end]`` starts, then ``end``. An entry is
    ``<mode> <name>\\0<20-byte id>``, and neither mode nor name holds a NUL. Raises
    GitError when the entries do not end exactly at ``end``."""
    offsets: list[int] = []
    find, pos = raw.find, start
    while pos < end:
        offsets.append(pos)
        nul = find(b"\0", pos, end)
        if nul < 0:
            raise GitError("a tree entry has no NUL after its name")
        pos = nul + 1 + SHA_BYTES
    if pos != end:
        raise GitError("a tree entry runs past the end")
    offsets.append(end)
    return offsets


def _parse_entries(raw: bytes, start: int, end: int) -> dict[bytes, Entry]:
    try:
        return {name: (mode, sha) for name, mode, sha in parse_tree(raw[start:end], SHA_BYTES)}
    except (ObjectFormatException, ValueError) as exc:
        raise GitError(f"a tree is malformed: {exc}") from None


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    """How many leading bytes ``a`` and ``b`` share, up to ``limit``: compared a chunk
    at a time, then by halves inside the chunk that differs, each comparison one
    memcmp of ``a`` against a view of ``b`` (``startswith``: no copies)."""
    view, lo = memoryview(b), 0
    while lo + _CHUNK <= limit and a.startswith(view[lo:lo + _CHUNK], lo):
        lo += _CHUNK
    hi = min(lo + _CHUNK, limit)  # the first difference is in [lo, hi]; hi: none before
    while lo < hi:
        mid = (lo + hi) // 2
        if a.startswith(view[lo:mid + 1], lo):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """How many trailing bytes ``a`` and ``b`` share, up to ``limit``."""
    view, la, lb, k = memoryview(b), len(a), len(b), 0
    while k + _CHUNK <= limit and a.endswith(view[lb - k - _CHUNK:lb - k], 0, la - k):
        k += _CHUNK
    hi = min(k + _CHUNK, limit)
    while k < hi:
        mid = (k + hi) // 2
        if a.endswith(view[lb - mid - 1:lb - k], 0, la - k):
            k = mid + 1
        else:
            hi = mid
    return k


def _new_object(written: list[RawObject], type_num: int, raw: bytes) -> bytes:
    """Hash an object to be written, add it to ``written``; its hex id."""
    sha = object_id(type_num, raw)
    written.append((type_num, raw, sha))
    return sha


def _entry_at(tree: RawTree, k: int) -> tuple[bytes, int, bytes]:
    """Entry ``k`` of a tree: (name, mode, hex id)."""
    start = tree.offsets[k]
    space = tree.raw.index(b" ", start)
    nul = tree.raw.index(b"\0", space)
    return tree.raw[space + 1:nul], int(tree.raw[start:space], 8), tree.raw[nul + 1:nul + 1 + SHA_BYTES].hex().encode()


def _sort_key(name: bytes, mode: int) -> bytes:
    """git's order of tree entries: by name, a folder's name as if it ended in ``/``."""
    return name + b"/" if stat.S_ISDIR(mode) else name


def _position(tree: RawTree, key: bytes) -> int:
    """How many of the tree's entries sort before ``key`` (binary search)."""
    lo, hi = 0, len(tree.offsets) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        name, mode, _ = _entry_at(tree, mid)
        if _sort_key(name, mode) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _locate(tree: RawTree, name: bytes) -> int | None:
    """The index of the entry called ``name``, a file or a folder, or None."""
    for key in (name, name + b"/"):
        k = _position(tree, key)
        if k < len(tree.offsets) - 1 and _entry_at(tree, k)[0] == name:
            return k
    return None


def _find(tree: RawTree, name: bytes) -> Entry | None:
    """(mode, hex id) of the entry called ``name``, a file or a folder, or None."""
    k = _locate(tree, name)
    return None if k is None else _entry_at(tree, k)[1:]


def _splice(tree: RawTree, edits: Mapping[bytes, Entry | None]) -> RawTree:
    """The tree with each named entry replaced, added or (None) removed, the rest
    copied as it is; with its entry offsets, carried over from the old ones."""
    cuts: list[tuple[int, bytes, int, bytes]] = []  # (start, sort key, end, new bytes)
    for name, entry in edits.items():
        k = _locate(tree, name)  # the old entry of that name goes, a file or a folder
        if k is not None:
            cuts.append((tree.offsets[k], b"", tree.offsets[k + 1], b""))
        if entry is not None:
            mode, sha = entry
            key = _sort_key(name, mode)
            at = tree.offsets[_position(tree, key)]
            cuts.append((at, key, at, b"%o %s\0%s" % (mode, name, bytes.fromhex(sha.decode()))))
    cuts.sort()  # by place; new entries at one place in git's order
    old = tree.offsets
    pieces: list[bytes] = []
    offsets = array("q")
    at = size = 0  # where the old tree is copied from; the new tree's length so far
    for start, _key, end, data in cuts:
        if start > at:  # (a removal may have gone past start)
            pieces.append(tree.raw[at:start])
            offsets += _shifted(old[bisect_left(old, at):bisect_left(old, start)], size - at)
            size += start - at
        if data:
            pieces.append(data)
            offsets.append(size)
            size += len(data)
        at = max(at, end)
    pieces.append(tree.raw[at:])
    offsets += _shifted(old[bisect_left(old, at):], size - at)  # ends with the length
    return RawTree(b"".join(pieces), offsets)


def _shifted(offsets: array[int], shift: int) -> array[int]:
    """``offsets`` each plus ``shift`` (nothing to do when an entry changed in place)."""
    return array("q", map(shift.__add__, offsets)) if shift else offsets
