"""Talking to remotes: fetch one branch, push one ref, clone.

A remote is a URL dulwich's clients speak (``git://``, ``https://``, ``ssh://``,
``file://``) or a local path. Local paths take a change-sized copy of their own
(:func:`copy_missing_objects`): dulwich's local client enumerates the whole tree
of the common commit, O(corpus) for a one-line change. Network remotes go
through dulwich's clients, each operation under a deadline and with the
credentials read from their files (:mod:`hotreload.git.remotes`). Nothing here
ever forces a push.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from tempfile import SpooledTemporaryFile
from typing import Any
from urllib.parse import urlsplit

from dulwich.errors import NotGitRepository
from dulwich.file import FileLocked
from dulwich.objects import Tree
from dulwich.pack import PACK_SPOOL_FILE_MAX_SIZE
from dulwich.repo import Repo

from hotreload.git import unpack
from hotreload.git.errors import PushOutcomeUnknown, PushRejected, TransportError
from hotreload.git.objects import (
    LOOSE_OBJECT_LIMIT,
    ZERO_SHA,
    RawObject,
    add_raw_objects,
    as_unpacked,
    get_raw,
    has_object,
)
from hotreload.git.remotes import CLONE_DEADLINE_FACTOR, Remote, as_remote, connected
from hotreload.git.trees import TreeBytes


def fetch_branch(repo: Repo, trees: TreeBytes, remote: str | Remote, branch: str,
                 haves: Iterator[str] | None = None) -> str | None:
    """Fetch one branch's objects. Returns the remote tip, or None when the remote has
    no such branch; the caller moves the tracking ref. ``trees`` is the clone's tree
    cache; ``haves`` (our commits, newest first) bounds the negotiation of a network
    fetch; no object bigger than the remote's ``max_object_bytes`` is taken (unpack.py)."""
    remote = as_remote(remote)
    ref = b"refs/heads/" + branch.encode()
    local_path = local_remote_path(remote.url)
    if local_path is not None:
        with _open_remote(local_path, remote) as source:
            tip = source.refs.as_dict(b"refs/heads/").get(branch.encode())
            if tip is not None:
                copy_missing_objects(source, repo, trees, tip)
        return None if tip is None else tip.decode()
    store = repo.object_store

    def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
        sha = refs.get(ref)
        return [sha] if sha and sha != ZERO_SHA and sha not in store else []

    with connected(remote, "fetch from") as (client, path):
        target: Any = _Receiving(repo, trees, None if haves is None else BoundedHaves(haves), remote.max_object_bytes)
        result = client.fetch(path, target, determine_wants=determine_wants)
    tip = result.refs.get(ref)
    if not tip or tip == ZERO_SHA:
        return None
    return tip.decode()


def remote_tip(remote: str | Remote, branch: str) -> str | None:
    """The remote's tip of ``branch`` (refs only: no pack is negotiated or sent),
    or None when the remote has no such branch. What the poll asks every interval."""
    remote = as_remote(remote)
    ref = b"refs/heads/" + branch.encode()
    local_path = local_remote_path(remote.url)
    if local_path is not None:
        with _open_remote(local_path, remote) as source:
            tip = source.refs.as_dict(b"refs/heads/").get(branch.encode())
        return tip.decode() if tip else None
    with connected(remote, "listing refs of") as (client, path):
        tip = client.get_refs(path.encode() if isinstance(path, str) else path, ref_prefix=[ref]).refs.get(ref)
    return tip.decode() if tip and tip != ZERO_SHA else None


def push_ref(repo: Repo, trees: TreeBytes, remote: str | Remote, local_sha: str, remote_ref: bytes,
             is_ancestor: Callable[[str, str], bool],
             new_commits: Callable[[list[str], str], Sequence[str]], expect: str | None = None) -> None:
    """Update ``remote_ref`` on the remote to ``local_sha``, only as a fast-forward (or
    a new ref), and with ``expect``, only from that commit (a compare-and-swap: the
    receiving git checks the old value we send). Never forces. ``is_ancestor`` answers
    the fast-forward question here; ``new_commits(haves, tip)`` lists the commits to
    send, parents first, so the pack follows the change (decision 21)."""
    remote = as_remote(remote)
    new = local_sha.encode()

    def check(current: bytes | None) -> None:
        if current is not None and not is_ancestor(current.decode(), local_sha):
            raise PushRejected(f"push to {remote} rejected: {remote_ref.decode()} is at {current.decode()[:12]}, "
                               f"which is not an ancestor of {local_sha[:12]} (non-fast-forward)")
        if expect is not None and current != expect.encode():  # a fast-forward, but not from where we were
            at = current.decode()[:12] if current is not None else "nothing"
            raise PushRejected(f"push to {remote} rejected: {remote_ref.decode()} is at {at}, "
                               f"no longer at {expect[:12]} (fetch first)")

    local_path = local_remote_path(remote.url)
    if local_path is not None:
        try:
            with _open_remote(local_path, remote) as target:
                current = target.refs.as_dict(b"").get(remote_ref)
                if current == new:
                    return
                check(current)
                copy_missing_objects(repo, target, trees, new)
                give_up = time.monotonic() + REF_LOCK_TIMEOUT_S
                while True:  # another pusher's ref lock: wait for it as git does
                    try:
                        moved = (target.refs.add_if_new(remote_ref, new) if current is None
                                 else target.refs.set_if_equals(remote_ref, current, new))
                        break
                    except FileLocked:
                        if time.monotonic() >= give_up:
                            lock_file = os.path.join(local_path, remote_ref.decode() + ".lock")
                            raise TransportError(
                                f"push to {remote} failed: {lock_file} exists: another push is under way, or one "
                                "was killed and left it behind; if no push is running, delete that file "
                                "(see docs/runbook.md, 'A lock file on the remote')") from None
                        time.sleep(0.005)
                if not moved:
                    raise PushRejected(f"push to {remote} rejected: {remote_ref.decode()} "
                                       "moved during the push (fetch first)")
        except OSError as exc:  # the remote's disk (full, read-only): a transport failure, named
            raise TransportError(f"push to {remote} failed: {exc}") from None
        return

    seen_on_remote: list[bytes] = []
    sent: list[bool] = []  # the pack went out: a failure from here on may have moved the ref

    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        current = refs.get(remote_ref)
        if current is not None and current != ZERO_SHA:
            seen_on_remote.append(current)
        if current != new:
            check(None if current in (None, ZERO_SHA) else current)
        return {remote_ref: new}

    store = repo.object_store

    def generate_pack_data(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
        candidates = seen_on_remote + sorted(set(have) - set(seen_on_remote))  # the ref's own tip first
        known = [h.decode() for h in candidates if h != ZERO_SHA and has_object(store, h)]
        commits = [c.encode() for tip in want for c in new_commits(known, tip.decode())]
        objects = objects_for_commits(store, trees, commits, lambda sha: False)
        sent.append(True)
        return len(objects), as_unpacked(objects)

    try:
        with connected(remote, "push to") as (client, path):
            result = client.send_pack(path.encode() if isinstance(path, str) else path,
                                      update_refs, generate_pack_data)
    except TransportError as exc:
        if sent:
            raise PushOutcomeUnknown(f"{exc} (after the pack was sent: the remote may have taken it)") from None
        raise
    error = (result.ref_status or {}).get(remote_ref)
    if error:
        # "failed to update ref" / "failed to lock": the ref was not where the command said (moved meanwhile)
        if any(word in error for word in ("fast-forward", "fetch first", "unable to set", "failed to update ref",
                                          "failed to lock")):
            raise PushRejected(f"push to {remote} rejected: {error}")
        raise TransportError(f"push to {remote} failed: {error}")


REF_LOCK_TIMEOUT_S = 0.1
"""How long a push to a local path waits for another pusher's ref lock: git's own
``core.filesRefLockTimeout`` (100 ms)."""


def local_remote_path(remote: str) -> str | None:
    """The filesystem path of a local remote (a path or ``file://`` URL), else None."""
    if remote.startswith("file://"):
        return urlsplit(remote).path
    if "://" in remote or re.match(r"^[^/]+@[^/:]+:", remote):  # a URL, or scp-like ssh
        return None
    return remote


@contextmanager
def _open_remote(path: str, remote: Remote) -> Iterator[Repo]:
    try:
        repo = Repo(path)
    except (NotGitRepository, OSError) as exc:
        raise TransportError(f"{remote} is not reachable: {exc}") from None
    try:
        yield repo
    finally:
        repo.close()


def copy_missing_objects(source: Repo, target: Repo, trees: TreeBytes, tip: bytes) -> int:
    """Copy every object reachable from ``tip`` that ``target`` lacks, as one pack
    (or loose, when few): the commits back to ones the target has, their objects by
    :func:`objects_for_commits` (dulwich's local fetch is O(corpus); decision 11)."""
    src, dst = source.object_store, target.object_store
    # Parents strictly before children (a post-order walk): see objects_for_commits.
    order: list[bytes] = []
    visited: set[bytes] = set()
    stack: list[tuple[bytes, bool]] = [(tip, False)]
    while stack:
        sha, expanded = stack.pop()
        if expanded:
            order.append(sha)
            continue
        if sha in visited or has_object(dst, sha):
            continue
        visited.add(sha)
        stack.append((sha, True))
        stack.extend((parent, False) for parent in src[sha].parents)
    missing = objects_for_commits(src, trees, order, lambda sha: has_object(dst, sha))
    add_raw_objects(dst, missing)
    return len(missing)


def objects_for_commits(src: Any, trees: TreeBytes, commits: Sequence[bytes],
                        receiver_has: Callable[[bytes], bool]) -> list[RawObject]:
    """The objects a receiver needs for ``commits`` (parents before children),
    given that it has every commit they build on: each commit's tree is walked
    against its first parent's, skipping every entry identical to the parent's
    (same name, same id), so the work follows the size of the change, not of the
    corpus. ``receiver_has`` may say more (a local target's store) or nothing.

    Parents first matters: then, when a tree is walked, its first parent's commit
    is complete on the receiver or already in the list, so skipping entries equal
    to the parent's is sound, and a tree seen before is complete too. (Newest
    first is not: after "add X, add Y, delete Y" the tip's tree *is* an older
    commit's tree, first met relative to the wrong parent, and X's blob would
    never be sent.) The list is ordered so an object comes only after everything
    it points to (blobs and trees children-first, then the commit): a process
    killed mid-copy never leaves a tree or commit whose closure is incomplete."""
    missing: list[RawObject] = []
    seen: set[bytes] = set()

    def take(sha: bytes) -> None:
        type_num, raw = get_raw(src, sha)
        missing.append((type_num, raw, sha))

    def add_tree(tree_id: bytes, parent_id: bytes | None) -> None:
        if tree_id == parent_id or tree_id in seen or receiver_has(tree_id):
            return
        seen.add(tree_id)
        if parent_id is not None and not has_object(src, parent_id):
            parent_id = None
        # entries unchanged from the parent are skipped (the receiver has them), the
        # changed ones found from the raw bytes of both versions (decision 55); found
        # first, so the new tree's bytes are cached when taken just below
        changes = trees.changes(src, parent_id, tree_id)
        missing.append((Tree.type_num, trees.raw(src, tree_id), tree_id))
        for _name, before, after in changes:
            if after is None:
                continue  # removed: nothing to send
            mode, sha = after
            if stat.S_ISDIR(mode):
                add_tree(sha, before[1] if before and stat.S_ISDIR(before[0]) else None)
            elif (mode & 0o170000) != 0o160000 and sha not in seen and not receiver_has(sha):
                seen.add(sha)  # a blob (submodule commits are not ours to copy)
                take(sha)

    ordered: list[RawObject] = []
    for sha in commits:
        commit = src[sha]
        first_parent = commit.parents[0] if commit.parents else None
        start = len(missing)
        add_tree(commit.tree, src[first_parent].tree if first_parent is not None else None)
        ordered += reversed(missing[start:])
        take(sha)
        ordered.append(missing[-1])
    return ordered


class BoundedHaves:
    """The ``have`` lines of a fetch negotiation: our tips first (the server nearly
    always has the last remote tip we saw), then ancestors at exponentially growing
    distances (git's "skipping" negotiator), at most ``limit`` in all; dulwich's own
    walker offers every commit of the history (decision 21). Offering fewer can only
    make the server send objects we already have."""

    def __init__(self, ancestors: Iterator[str], limit: int = 8, tips: int = 2) -> None:
        self._ancestors = ancestors
        self._left = limit
        self._position = 0
        self._next_offered = 0
        self._tips = tips

    def __next__(self) -> bytes | None:
        if self._left <= 0:
            return None
        for sha in self._ancestors:
            position = self._position
            self._position += 1
            if position < self._tips or position >= self._next_offered:
                self._next_offered = max(self._tips, 2 * max(position, 1))
                self._left -= 1
                return sha.encode()
        return None

    next = __next__

    def ack(self, sha: bytes) -> None:
        """The haves are fixed in advance: a server's ACK (or NAK) changes nothing."""

    def nak(self) -> None:
        pass


class _Receiving:
    """A repository as dulwich's ``fetch`` sees it: negotiating with our haves (when
    given), and unpacking a small received pack into loose objects itself."""

    def __init__(self, repo: Repo, trees: TreeBytes | None, haves: BoundedHaves | None, max_object_bytes: int) -> None:
        self._repo = repo
        self._haves = haves
        self.object_store = _ReceivingStore(repo.object_store, trees, max_object_bytes)

    def get_graph_walker(self, heads: Any = None) -> Any:
        return self._haves if self._haves is not None else self._repo.get_graph_walker(heads)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)


class _ReceivingStore:
    """The clone's object store, except that a received pack is spooled to disk and
    every object's size checked before it is inflated (decision 89); then a pack of
    fewer than :data:`~hotreload.git.objects.LOOSE_OBJECT_LIMIT` objects is unpacked
    into loose objects here (decision 65), a bigger one goes to dulwich as a pack."""

    def __init__(self, store: Any, trees: TreeBytes | None, max_object_bytes: int) -> None:
        self._store, self._trees, self._max_object_bytes = store, trees, max_object_bytes

    def add_thin_pack(self, read_all: Callable[..., bytes], read_some: Any, progress: Any = None) -> Any:
        fh, commit, abort = self.add_pack(progress)
        try:
            while chunk := read_all(1 << 20):
                fh.write(chunk)
        except BaseException:
            abort()
            raise
        return commit()

    def add_pack(self, progress: Any = None) -> tuple[Any, Callable[[], Any], Callable[[], None]]:
        """Where dulwich's fetch writes a pack when the client takes no thin packs, and
        where ``add_thin_pack`` writes it: the checks hold whichever way dulwich comes."""
        fh = SpooledTemporaryFile(PACK_SPOOL_FILE_MAX_SIZE, dir=self._store.path, prefix="incoming-")  # noqa: SIM115

        def commit() -> Any:
            with fh:
                if not fh.tell():
                    return None
                reader = unpack.PackReader(fh, self._max_object_bytes)  # type: ignore[arg-type]
                objects = unpack.unpack(reader, self._base) if reader.count < LOOSE_OBJECT_LIMIT else None
                if objects is not None:
                    add_raw_objects(self._store, objects)
                    return None
                for _ in reader.entries():  # every size checked before dulwich inflates anything
                    pass
                fh.seek(0)
                return self._store.add_thin_pack(fh.read, None, progress=progress)

        return fh, commit, fh.close

    def _base(self, binary: bytes) -> tuple[int, bytes] | None:
        sha = binary.hex().encode()
        # a folder's previous version, as the last reload read it
        cached = self._trees.cached(sha) if self._trees is not None else None
        if cached is not None:
            return Tree.type_num, cached
        try:
            return get_raw(self._store, sha)
        except KeyError:
            return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _copy_object_files(source: str, target: str) -> None:
    """Copy a local repository's objects as files, as ``git clone --local`` does
    (decision 22): packs (``.pack`` before its ``.idx``, so a pack is never visible
    incomplete) and loose objects."""
    pack_dir = os.path.join(source, "pack")
    names = sorted(os.listdir(pack_dir)) if os.path.isdir(pack_dir) else []
    for name in [n for n in names if n.endswith(".pack")] + [n for n in names if n.endswith(".idx")]:
        shutil.copyfile(os.path.join(pack_dir, name), os.path.join(target, "pack", name))
    for fan in os.listdir(source):
        if len(fan) == 2 and os.path.isdir(os.path.join(source, fan)):
            shutil.copytree(os.path.join(source, fan), os.path.join(target, fan), dirs_exist_ok=True)


def fetch_all_into(remote: str | Remote, path: str) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """A new bare repository at ``path`` holding every object of ``remote``'s
    refs: returns the remote's refs and symrefs (the caller sets local refs)."""
    remote = as_remote(remote)
    local_path = local_remote_path(remote.url)
    if local_path is not None:
        with _open_remote(local_path, remote) as source:
            refs = {r: s for r, s in source.refs.as_dict().items() if r.startswith(b"refs/")}
            head = source.refs.get_symrefs().get(b"HEAD")
            Repo.init_bare(path, mkdir=True).close()
            _copy_object_files(source.object_store.path, os.path.join(path, "objects"))
        return refs, ({b"HEAD": head} if head else {})
    with connected(remote, "clone from", CLONE_DEADLINE_FACTOR) as (client, remote_path):
        target = Repo.init_bare(path, mkdir=True)
        try:
            result = client.fetch(remote_path, _Receiving(target, None, None, remote.max_object_bytes))
        finally:
            target.close()
    return dict(result.refs), dict(result.symrefs or {})
