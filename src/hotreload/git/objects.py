"""Reading and writing git objects over a dulwich object store.

Small functions over an explicit ``store`` (a dulwich ``DiskObjectStore``). Reads go
loose first, then to the packs; many objects at once go through dulwich's delta-chain
iterator. Writes are git's loose objects, each durable before anything can name it.
Trees as raw bytes (diffs, lookups, writes) are :mod:`hotreload.git.trees`. Ids are
40-character hex ``str`` outside :mod:`hotreload.git`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dulwich.objects import Blob, Commit, ShaFile, Tree, object_class, parse_tree
from dulwich.pack import DELTA_TYPES, UnpackedObject, UnpackedObjectIterator, UnresolvedDeltas

from hotreload.git.errors import GitError

ZERO_SHA = b"0" * 40
HEX40 = re.compile(r"\A[0-9a-f]{40}\Z")
LOOSE_OBJECT_LIMIT = 100
"""Fewer new objects than this are written loose, more as a pack (git's unpack.limit)."""
RawObject = tuple[int, bytes, bytes]
"""(type number, raw content, hex id): an object copied without being parsed."""

STORE_UNCOMPRESSED_FROM = 16 << 10
"""Loose objects from this size (bytes) up are stored (zlib level 0), the rest deflated at
git's level 1: a big folder's tree is stored in a fraction of its deflate time (decision 64)."""
WRITE_CHUNK = 256 << 10
"""Bytes per write call, as git too writes a loose object in pieces (a 7.4 MB object, then
fsynced: 20.6 ms in one call, 6.4 in these; benchmarks/results/2026-12-06-ablation-git.md)."""
T = TypeVar("T", bound=ShaFile)
_TYPE_NUMS = {b"commit": Commit.type_num, b"tree": Tree.type_num, b"blob": Blob.type_num, b"tag": 4}


@dataclass(frozen=True)
class BlobEntry:
    path: str
    sha: str


@dataclass(frozen=True)
class Signature:
    """Who and when, as git stores it on a commit."""

    identity: bytes
    time: int
    timezone: int = 0


def readable(path: str) -> str:
    """A path for messages and JSON: bytes that are not UTF-8 shown as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# -- reading ------------------------------------------------------------------------


def get_raw(store: Any, sha: bytes) -> tuple[int, bytes]:
    """(type number, content) of an object, loose first (read raw, not parsed), then in the
    packs (decision 75). KeyError when the object is in neither."""
    hexsha, path = sha.decode(), getattr(store, "path", None)
    try:
        if path is None:  # not a store on disk
            raise FileNotFoundError
        with open(os.path.join(path, hexsha[:2], hexsha[2:]), "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        type_num, raw = store.get_raw(sha)
        return type_num, bytes(raw)
    try:
        header, body = loose_content(data)
    except zlib.error as exc:
        raise GitError(f"loose object {hexsha} is corrupt ({exc})") from None
    kind, _, size = header.partition(b" ")
    if kind not in _TYPE_NUMS or not size.isdigit() or int(size) != len(body):
        raise GitError(f"loose object {hexsha} is corrupt (header {header[:40]!r})")
    return _TYPE_NUMS[kind], body


def loose_content(data: bytes) -> tuple[bytes, bytes]:
    """A loose object file's ``<type> <size>`` header and content (zlib raises on a
    corrupt stream)."""
    header, _, body = zlib.decompress(data).partition(b"\0")
    return header, body


def read_object(store: Any, sha: bytes) -> ShaFile:
    """``store[sha]`` by :func:`get_raw`; KeyError when it is in neither place."""
    type_num, raw = get_raw(store, sha)
    return ShaFile.from_raw_string(type_num, raw, sha)  # its id known: no rehash of a 7.4 MB tree


def read_typed(store: Any, sha: str, kind: type[T]) -> T:
    """The object ``sha``, which must be a ``kind`` (a commit, a tree, a blob)."""
    obj = read_object(store, sha.encode())
    if not isinstance(obj, kind):
        raise GitError(f"{sha} is not a {kind.type_name.decode()}")
    return obj


def has_object(store: Any, sha: bytes) -> bool:
    """``sha in store`` without reading the object (dulwich's check of a loose object
    reads and parses it)."""
    hexsha = sha.decode()
    return os.path.exists(os.path.join(store.path, hexsha[:2], hexsha[2:])) or bool(store.contains_packed(sha))


def read_many(store: Any, shas: Iterable[str]) -> dict[str, bytes]:
    """The raw content of many objects at once. From each pack, the whole objects in the
    pack's order (decision 9), the deltas in one pass of dulwich's delta-chain iterator, so
    each object on a chain is inflated once (decision 39). The rest one by one."""
    wanted = [sha.encode() for sha in shas]
    found: dict[str, bytes] = {}
    for pack in store.packs:
        at: dict[int, bytes] = {}
        for sha in wanted:
            if sha.decode() not in found:
                with contextlib.suppress(KeyError):
                    at[pack.index.object_offset(sha)] = sha
        deltas = []
        for offset in sorted(at):
            unpacked = pack.data.get_unpacked_object_at(offset)
            if unpacked.pack_type_num in DELTA_TYPES:
                deltas.append(at[offset])
            else:
                found[at[offset].decode()] = b"".join(unpacked.decomp_chunks)
        walker = UnpackedObjectIterator.for_pack_subset(pack, deltas, allow_missing=True)
        with contextlib.suppress(UnresolvedDeltas):  # a base outside this pack: left to the lookups below
            for unpacked in walker:
                found[unpacked.sha().hex()] = b"".join(unpacked.obj_chunks)
    for sha in wanted:
        if sha.decode() not in found:
            found[sha.decode()] = get_raw(store, sha)[1]
    return found


def list_blobs(store: Any, tree_sha: str, prefix: str = "") -> list[BlobEntry]:
    """Every file below a tree, with its path from the tree's root: the trees of each
    level read in one :func:`read_many`."""
    blobs: list[BlobEntry] = []
    level: dict[str, list[str]] = {tree_sha: [prefix]}  # identical subtrees share an id: all their paths
    while level:
        raw = read_many(store, level)
        next_level: dict[str, list[str]] = {}
        for sha, bases in level.items():
            for name, mode, child in parse_tree(raw[sha], 20):
                for base in bases:
                    text = name.decode(errors="surrogateescape")
                    path = f"{base}/{text}" if base else text
                    if stat.S_ISDIR(mode):
                        next_level.setdefault(child.decode(), []).append(path)
                    elif stat.S_ISREG(mode):
                        blobs.append(BlobEntry(path, child.decode()))
        level = next_level
    return blobs


# -- writing ------------------------------------------------------------------------


def object_header(type_num: int, size: int) -> bytes:
    """git's ``<type> <size>\\0``: what an object's id hashes before its content, and
    what a loose object's file holds before it."""
    return object_class(type_num).type_name + b" " + str(size).encode() + b"\0"


def object_id(type_num: int, raw: bytes) -> bytes:
    """The id git gives the object (hex)."""
    digest = hashlib.sha1(object_header(type_num, len(raw)))
    digest.update(raw)
    return digest.hexdigest().encode()


def write_loose(store: Any, type_num: int, raw: bytes, sha: bytes | None = None) -> str:
    """Write one loose object as git does (:func:`write_loose_many`). ``sha`` names an
    object copied from a store that names it already; otherwise it is hashed."""
    hexsha = sha if sha is not None else object_id(type_num, raw)
    write_loose_many(store, [(type_num, raw, hexsha)])
    return hexsha.decode()


def write_loose_many(store: Any, objects: Sequence[RawObject]) -> None:
    """Write loose objects as git does (zlib of ``<type> <size>\\0`` and the content),
    each into a unique temporary file, fsynced, then renamed into place in the order
    given, each durable before the next is visible (a temporary file left by a killed
    process, unlike a lock file, blocks nothing). Every file is written before the first
    is renamed, so a failure while writing leaves none of them visible."""
    staged: list[tuple[str, str]] = []  # (temporary file, final path)
    placed = 0
    try:
        for type_num, raw, sha in objects:
            hexsha = sha.decode()
            folder = os.path.join(store.path, hexsha[:2])
            path = os.path.join(folder, hexsha[2:])
            if not os.path.exists(path):
                staged.append((_write_temporary(folder, object_header(type_num, len(raw)) + raw), path))
        for tmp, path in staged:
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)  # durable before visible: a ref naming it never finds it cut short
            _fsync_dir(os.path.dirname(path))
            placed += 1
    except BaseException:
        for tmp, _ in staged[placed:]:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def _write_temporary(folder: str, content: bytes) -> str:
    """``content`` zlib-compressed into a new temporary file in ``folder``, fsynced."""
    # the fan-out folder only: a store whose objects folder is gone (a local remote moved
    # away mid-push) fails here instead of being recreated at its old path
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    data = memoryview(zlib.compress(content, 1 if len(content) < STORE_UNCOMPRESSED_FROM else 0))
    fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            for start in range(0, len(data), WRITE_CHUNK):
                fh.write(data[start:start + WRITE_CHUNK])
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def as_unpacked(objects: Iterable[RawObject]) -> Iterator[UnpackedObject]:
    """Raw objects as dulwich's pack writers take them, without parsing them."""
    for type_num, raw, sha in objects:
        yield UnpackedObject(type_num, decomp_len=len(raw), decomp_chunks=[raw], sha=bytes.fromhex(sha.decode()))


def add_raw_objects(store: Any, objects: list[RawObject]) -> None:
    """Write objects as they are, in the order given: fewer than
    :data:`LOOSE_OBJECT_LIMIT` loose, more as one pack, which appears when complete."""
    if len(objects) < LOOSE_OBJECT_LIMIT:
        write_loose_many(store, objects)
    else:
        store.add_pack_data(len(objects), as_unpacked(objects))


def add_object(store: Any, obj: ShaFile) -> str:
    return write_loose(store, obj.type_num, obj.as_raw_string())


class LooseWritingStore:
    """An object store view whose ``add_object`` writes with :func:`write_loose`
    (for dulwich code that writes objects itself, like its tree merger)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getitem__(self, sha: bytes) -> Any:
        return read_object(self._store, sha)

    def __contains__(self, sha: bytes) -> bool:
        return sha in self._store

    def add_object(self, obj: ShaFile) -> None:
        add_object(self._store, obj)


def write_commit(store: Any, tree: str, parents: list[str], message: str, author: Signature,
                 committer: Signature | None = None) -> str:
    commit = Commit()
    commit.tree = tree.encode()
    commit.parents = [p.encode() for p in parents]
    committer = committer or author
    commit.author, commit.author_time, commit.author_timezone = author.identity, author.time, author.timezone
    commit.committer, commit.commit_time = committer.identity, committer.time
    commit.commit_timezone = committer.timezone
    commit.encoding = b"UTF-8"
    commit.message = message.encode()
    return add_object(store, commit)
