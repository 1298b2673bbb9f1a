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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
git's default level 1: a big flat folder's tree, 0.8 MB at 50k records and 7.4 MB at
500k, deflates in 8 and 82 ms, is stored in 1.2 and 3.8 (decision 64; git reads both)."""
WRITE_CHUNK = 256 << 10
"""Bytes per write call, as git too writes a loose object in pieces: on this machine's
ext4 a 7.4 MB object written in one call, then fsynced, took 20.6 ms, in 256 KiB calls
6.4 (benchmarks/results/2026-12-06-ablation-git.md)."""
FSYNC = True
"""fsync objects before any ref can name them (git's ``core.fsync=objects``).
Tests of crash-safety keep it; nothing turns it off in production."""
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
    """(type number, content) of an object, looked up loose first, then in the packs.
    dulwich looks in the packs first: an object upkeep packs and prunes between its two
    looks is found in neither (decision 75). A loose object is read raw (dulwich would
    parse it whole to hand back its bytes). KeyError when the object is in neither."""
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


def read_commit(store: Any, sha: str) -> Commit:
    obj = read_object(store, sha.encode())
    if not isinstance(obj, Commit):
        raise GitError(f"{sha} is not a commit")
    return obj


def read_blob(store: Any, sha: str) -> bytes:
    obj = read_object(store, sha.encode())
    if not isinstance(obj, Blob):
        raise GitError(f"{sha} is not a blob")
    return bytes(obj.data)


def has_object(store: Any, sha: bytes) -> bool:
    """``sha in store`` without reading the object (dulwich's check of a loose object
    reads and parses it)."""
    hexsha = sha.decode()
    return os.path.exists(os.path.join(store.path, hexsha[:2], hexsha[2:])) or bool(store.contains_packed(sha))


def read_many(store: Any, shas: Iterable[str]) -> dict[str, bytes]:
    """The raw content of many objects at once. From each pack, the whole objects are
    read in the pack's order, and the deltas in one pass of dulwich's delta-chain
    iterator (decision 39), so every object on a delta chain is inflated once and a pack
    of long chains (``git gc``, ``git fast-import``) costs its chains' length, not the
    sum of every object's depth (50k records in chains up to 50 deep: 1.4 s, against
    8.9 s one object at a time). (The iterator inflates each object it is given twice:
    once to learn its type, once on its chain.) The rest (loose objects, a base outside
    the pack) one by one."""
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
    """Write one loose object as git does: zlib of ``<type> <size>\\0`` and the
    content, into a unique temporary file, fsynced, then renamed into place (a
    temporary file left by a killed process, unlike a lock file, blocks nothing).
    ``sha`` names an object copied from a store that names it already (git's local
    clone trusts the store it copies from too); otherwise it is hashed."""
    hexsha = sha if sha is not None else object_id(type_num, raw)
    write_loose_many(store, [(type_num, raw, hexsha)])
    return hexsha.decode()


def write_loose_many(store: Any, objects: Sequence[RawObject]) -> None:
    """:func:`write_loose` for several objects, made visible in the order given, each
    durable before the next is visible; every file is written before the first is
    renamed into place, so a failure while writing leaves none of them visible."""
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
            if FSYNC:
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
            if FSYNC:
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


def add_raw_objects(store: Any, objects: list[RawObject]) -> None:
    """Write objects as they are, without parsing them, in the order given: fewer than
    :data:`LOOSE_OBJECT_LIMIT` loose, more as one pack, which appears when complete."""
    if len(objects) < LOOSE_OBJECT_LIMIT:
        write_loose_many(store, objects)
        return
    store.add_pack_data(len(objects), (
        UnpackedObject(type_num, decomp_len=len(raw), decomp_chunks=[raw], sha=bytes.fromhex(sha.decode()))
        for type_num, raw, sha in objects))


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


def write_pack(store: Any, objects: list[Any]) -> None:
    """Write many objects as one pack (far faster than loose objects)."""
    store.add_objects([(obj, None) for obj in objects])


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


def tree_objects(files: Mapping[str, bytes]) -> tuple[str, list[Blob | Tree]]:
    """Blobs and trees for a whole file set, without writing anything: returns the
    root tree id and every object, ready for :func:`write_pack`."""
    objects: list[Blob | Tree] = []
    nested: dict[str, Any] = {}
    for path, content in files.items():
        node = nested
        *dirs, name = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        blob = Blob.from_string(content)
        objects.append(blob)
        node[name] = blob

    def make(node: dict[str, Any]) -> Tree:
        tree = Tree()
        for name, child in node.items():
            sub = make(child) if isinstance(child, dict) else child
            tree.add(name.encode(), stat.S_IFDIR if isinstance(child, dict) else 0o100644, sub.id)
        objects.append(tree)
        return tree

    return make(nested).id.decode(), objects
