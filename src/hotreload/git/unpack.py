"""A small pack received from a network remote, unpacked into loose objects (what
git's ``unpack-objects`` does for a fetch of fewer than ``fetch.unpackLimit``
objects), instead of dulwich's ``add_thin_pack``, which parses every tree it resolves
and rewrites the pack (decision 65: a ``git://`` one-record reload 2.6x slower).

Each delta is applied to its base's bytes (dulwich's ``apply_delta``), the result
hashed as git hashes it, and the objects written loose by
:func:`~hotreload.git.objects.add_raw_objects`, each after everything it points to
that came in the same pack. Whatever the remote sends is bounded before it is
inflated (:class:`PackReader`, decision 89).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

from dulwich.objects import Blob, Commit, Tag, Tree, object_class
from dulwich.pack import (
    DELTA_TYPES,
    OFS_DELTA,
    REF_DELTA,
    UnpackedObject,
    apply_delta,
    read_zlib_chunks,
    take_msb_bytes,
)

from hotreload.git.errors import GitError
from hotreload.git.objects import RawObject, object_id

MAX_OBJECT_BYTES = 16 * 1024 * 1024
"""The default bound on one object a remote sends (``CFP_DATA_MAX_OBJECT_BYTES``): a
record is a few KB, so 16 MiB is far above any real one."""
TREE_FACTOR = 8
"""A tree may be this many times the bound (128 MiB by default: at ~50 bytes an entry,
a record file's mode, name and id, some 2.5 million records in one folder). A delta
whose base is not in the pack is held to this too, until its type is known."""
HOLD_FACTOR = 4
""":func:`unpack` holds at most this many bounds of inflated objects at once; a pack
that inflates to more goes to dulwich, which keeps it as a pack on disk."""


class ObjectTooLarge(GitError):
    """An object the remote sent is bigger than ``CFP_DATA_MAX_OBJECT_BYTES`` allows."""


class PackReader:
    """A received pack in a file, read entry by entry with every size checked
    before anything is inflated: dulwich's ``unpack_object`` with the check between
    the entry's header and its zlib stream (git's pack format: a type-and-size
    varint, then a delta's base as an offset varint or an id)."""

    def __init__(self, fh: BinaryIO, max_object_bytes: int = MAX_OBJECT_BYTES) -> None:
        self._fh, self.max_object_bytes = fh, max_object_bytes
        fh.seek(0)
        self.count = pack_object_count(fh.read(12))
        fh.seek(0)
        digest, tail, self._size = hashlib.sha1(), b"", 0
        while chunk := fh.read(1 << 20):
            self._size += len(chunk)
            tail += chunk
            digest.update(tail[:-20])
            tail = tail[-20:]
        if len(tail) < 20 or digest.digest() != tail:
            raise GitError("the pack the remote sent does not match its checksum")
        self._rest, self._offset = b"", 0

    def _read_all(self, size: int) -> bytes:
        data = self._read_some(size)
        while len(data) < size and (more := self._read_some(size - len(data))):
            data += more
        return data

    def _read_some(self, size: int) -> bytes:
        if self._rest:
            data, self._rest = self._rest[:size], self._rest[size:]
        else:
            data = self._fh.read(size)
        self._offset += len(data)
        return data

    def entries(self) -> Iterator[tuple[int, UnpackedObject, int]]:
        """``(offset, entry, size)`` for each object, inflated (deltas not applied;
        ``size`` is what a delta declares it makes). Raises :class:`ObjectTooLarge`
        before inflating one declared too big, GitError on a garbled pack."""
        self._fh.seek(12)
        self._rest, self._offset = b"", 12
        types: dict[int, int | None] = {}  # offset -> the object's type, for deltas on it
        for _ in range(self.count):
            at = self._offset
            try:
                header, _ = take_msb_bytes(self._read_all)
                type_num, size = (header[0] >> 4) & 7, header[0] & 0x0F
                for shift, byte in enumerate(header[1:]):
                    size |= (byte & 0x7F) << (4 + 7 * shift)
                base: int | bytes | None = None
                if type_num == OFS_DELTA:
                    raw, _ = take_msb_bytes(self._read_all)
                    distance = raw[0] & 0x7F
                    for byte in raw[1:]:
                        distance = ((distance + 1) << 7) | (byte & 0x7F)
                    base = distance
                elif type_num == REF_DELTA:
                    base = self._read_all(20)
                kind = types.get(at - base) if isinstance(base, int) else None if base else type_num
                self.check_size(size, kind, at, base)
                entry = UnpackedObject(type_num, delta_base=base, decomp_len=size, hash_func=hashlib.sha1)
                unused = read_zlib_chunks(self._read_some, entry)
            except (IndexError, ValueError, zlib.error) as exc:  # a truncated or garbled pack
                raise GitError(f"the pack the remote sent is corrupt: {exc}") from None
            self._rest, self._offset = unused + self._rest, self._offset - len(unused)
            if base is not None:
                size = _delta_result_size(b"".join(entry.decomp_chunks[:2])[:20])
                self.check_size(size, kind, at, base)
            types[at] = kind
            yield at, entry, size
        if self._offset != self._size - 20:
            raise GitError("the pack the remote sent has bytes after its last object")

    def check_size(self, size: int, type_num: int | None, at: int, base: int | bytes | None = None) -> None:
        """Raise :class:`ObjectTooLarge`, naming the object and the bound, if
        ``size`` is over the bound for ``type_num`` (None: not known yet)."""
        limit = self.max_object_bytes * (TREE_FACTOR if type_num in (None, Tree.type_num) else 1)
        if size <= limit:
            return
        kind = object_class(type_num) if type_num is not None else None
        what = f"a {kind.type_name.decode()}" if kind is not None else "an object"
        if base is not None:
            what = f"a delta (against {base.hex() if isinstance(base, bytes) else 'an earlier entry'}) making {what}"
        tree = f", x{TREE_FACTOR} for a tree or an object of unknown type" if limit != self.max_object_bytes else ""
        raise ObjectTooLarge(
            f"the remote sent {what} of {size:,} bytes at offset {at:,} of its pack, over the bound of "
            f"{limit:,} bytes (CFP_DATA_MAX_OBJECT_BYTES={self.max_object_bytes}{tree}); nothing was "
            "fetched: remove the object from the branch, or raise CFP_DATA_MAX_OBJECT_BYTES")


def _delta_result_size(head: bytes) -> int:
    """The second of the two varints a delta opens with (its base's size, its result's)."""
    sizes, value, shift = [], 0, 0
    for byte in head:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            sizes.append(value)
            value, shift = 0, 0
    if len(sizes) < 2:
        raise GitError("the pack the remote sent holds a delta with a truncated header")
    return sizes[1]


def pack_object_count(data: bytes) -> int:
    """The number of objects a pack says it holds (its 12-byte header, which is all
    ``data`` needs to hold); raises GitError on bytes that are not a version 2 or 3 pack."""
    if len(data) < 12 or data[:4] != b"PACK":
        raise GitError("the remote sent something that is not a pack")
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        raise GitError(f"the remote sent a pack of version {version}, which is not supported")
    return int(count)


def unpack(pack: bytes | PackReader, base_of: Callable[[bytes], tuple[int, bytes] | None],
           hold_bytes: int | None = None) -> list[RawObject] | None:
    """The objects of ``pack`` (whole, checksum included), deltas applied,
    as ``(type number, content, hex id)`` in an order safe to write one by one.
    ``base_of(binary id)`` gives ``(type number, content)`` of an object the pack
    is thin against (None when the receiver does not have it). None when the
    objects would hold more than ``hold_bytes`` (default: :data:`HOLD_FACTOR`
    bounds) at once. Raises GitError on a corrupt pack or a delta whose base is
    nowhere, :class:`ObjectTooLarge` on an object over the bound."""
    reader = pack if isinstance(pack, PackReader) else PackReader(io.BytesIO(pack))
    limit = hold_bytes if hold_bytes is not None else HOLD_FACTOR * reader.max_object_bytes
    entries, held = [], 0
    for at, unpacked, size in reader.entries():
        held += size
        if held > limit:
            return None
        entries.append((at, unpacked))

    by_offset: dict[int, tuple[int, bytes]] = {}
    by_id: dict[bytes, tuple[int, bytes]] = {}
    found: list[RawObject] = []
    waiting = entries
    while waiting:
        left = []
        for at, unpacked in waiting:
            if unpacked.pack_type_num not in DELTA_TYPES:
                type_num, raw = unpacked.pack_type_num, b"".join(unpacked.decomp_chunks)
            else:
                where = _base(at, unpacked)
                base = by_offset.get(where) if isinstance(where, int) else by_id.get(where) or base_of(where)
                if base is None:
                    left.append((at, unpacked))
                    continue
                type_num, raw = base[0], b"".join(apply_delta(base[1], unpacked.decomp_chunks))
                reader.check_size(len(raw), type_num, at, where)  # its type is known now
            if object_class(type_num) is None:
                raise GitError(f"the pack the remote sent holds an object of unknown type {type_num}")
            sha = object_id(type_num, raw)
            by_offset[at] = by_id[bytes.fromhex(sha.decode())] = (type_num, raw)
            found.append((type_num, raw, sha))
        if len(left) == len(waiting):
            missing = ", ".join(sorted({where.hex() if isinstance(where, bytes) else f"offset {where}"
                                        for where in (_base(at, u) for at, u in left)}))
            raise GitError(f"the pack the remote sent has deltas against objects this clone lacks: {missing}")
        waiting = left
    return write_order(found)


def _base(at: int, unpacked: UnpackedObject) -> int | bytes:
    """Where a delta's base is: an offset in the pack, or a binary object id."""
    if unpacked.pack_type_num == OFS_DELTA:
        assert isinstance(unpacked.delta_base, int)
        return at - unpacked.delta_base
    assert unpacked.pack_type_num == REF_DELTA and isinstance(unpacked.delta_base, bytes)
    return unpacked.delta_base


def write_order(objects: Iterable[RawObject]) -> list[RawObject]:
    """``objects`` so that each comes after every other one of them it points to:
    blobs, then trees (a folder's after the folders in it), then commits (parents
    first), then tags. A process killed between two writes then never leaves a
    tree or commit whose contents are not all stored, which a later local fetch
    would trust (it skips what the clone has). A tree's references are found by
    its raw bytes holding the other tree's binary id: never missed, and a
    coincidental match only orders two trees more strictly than needed."""
    by_kind: dict[int, list[RawObject]] = {}
    for obj in objects:
        by_kind.setdefault(obj[0], []).append(obj)
    trees = {bytes.fromhex(sha.decode()): obj for obj in by_kind.get(Tree.type_num, []) for _, _, sha in [obj]}
    commits = {sha: obj for obj in by_kind.get(Commit.type_num, []) for _, _, sha in [obj]}

    def tree_needs(obj: RawObject) -> list[bytes]:
        return [other for other in trees if other != bytes.fromhex(obj[2].decode()) and other in obj[1]]

    def commit_needs(obj: RawObject) -> list[bytes]:
        header = obj[1].split(b"\n\n", 1)[0]
        return [line[7:47] for line in header.split(b"\n") if line.startswith(b"parent ") and line[7:47] in commits]

    return [*by_kind.get(Blob.type_num, []),
            *_post_order(trees, tree_needs),
            *_post_order(commits, commit_needs),
            *by_kind.get(Tag.type_num, [])]


def _post_order(nodes: dict[bytes, RawObject], needs: Callable[[RawObject], list[bytes]]) -> list[RawObject]:
    """Each node after the nodes it needs (depth first; an edge back into the path
    being walked, which only a coincidental byte match can make, is ignored)."""
    order: list[RawObject] = []
    state: dict[bytes, bool] = {}  # False: on the path being walked; True: placed
    for root in nodes:
        stack: list[tuple[bytes, list[bytes] | None]] = [(root, None)]
        while stack:
            key, pending = stack.pop()
            if pending is None:
                if key in state:
                    continue
                state[key] = False
                pending = needs(nodes[key])
            while pending and pending[-1] in state:
                pending.pop()
            if pending:
                stack.append((key, pending))
                stack.append((pending.pop(), None))
            else:
                state[key] = True
                order.append(nodes[key])
    return order
