"""A small pack received from a network remote, unpacked into loose objects (what
git's ``unpack-objects`` does for a fetch of fewer than ``fetch.unpackLimit``
objects), instead of dulwich's ``add_thin_pack`` (decision 65).

A one-record fetch over the network is a *thin* pack of a handful of objects: the
commit, the root tree, the changed folder's tree as a delta against its previous
version (which the receiver has), the record's blob. dulwich completes such a pack
by parsing every tree it resolves into a ``Tree`` (to hash it), appending each
delta base to the pack deflated at zlib's default level, and indexing the result:
at 50,000 records 69 of a 128 ms reload, and it grows with the folder (a folder
tree is 7.4 MB at 500,000). Here each delta is applied to its base's bytes
(dulwich's own ``apply_delta``), the result hashed as git hashes it, and the
objects are written loose by :func:`~hotreload.git.objects.add_raw_objects`, as
the local-path fetch writes them: a big tree stored, not deflated, each object
fsynced before any ref can name it, and in an order where an object comes only
after everything it points to that came in the same pack.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable

from dulwich.objects import Blob, Commit, Tag, Tree, object_class
from dulwich.pack import DELTA_TYPES, OFS_DELTA, REF_DELTA, UnpackedObject, apply_delta, unpack_object_at

from hotreload.git.errors import GitError
from hotreload.git.objects import RawObject, object_id


def pack_object_count(data: bytes) -> int:
    """The number of objects a pack says it holds (its 12-byte header, which is all
    ``data`` needs to hold); raises GitError on bytes that are not a version 2 or 3 pack."""
    if len(data) < 12 or data[:4] != b"PACK":
        raise GitError("the remote sent something that is not a pack")
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3):
        raise GitError(f"the remote sent a pack of version {version}, which is not supported")
    return int(count)


def unpack(data: bytes, base_of: Callable[[bytes], tuple[int, bytes] | None]) -> list[RawObject]:
    """The objects of the pack ``data`` (whole, checksum included), deltas applied,
    as ``(type number, content, hex id)`` in an order safe to write one by one.
    ``base_of(binary id)`` gives ``(type number, content)`` of an object the pack
    is thin against (None when the receiver does not have it). Raises GitError on a
    corrupt pack or a delta whose base is nowhere."""
    count = pack_object_count(data)
    if len(data) < 32 or hashlib.sha1(data[:-20]).digest() != data[-20:]:
        raise GitError("the pack the remote sent does not match its checksum")
    entries = []
    offset = 12
    try:
        for _ in range(count):
            unpacked, end = unpack_object_at(data, offset, hashlib.sha1)
            entries.append((offset, unpacked))
            offset = end
    except Exception as exc:  # dulwich raises several kinds on a truncated or garbled pack
        raise GitError(f"the pack the remote sent is corrupt: {exc}") from None
    if offset != len(data) - 20:
        raise GitError("the pack the remote sent has bytes after its last object")

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
