"""Talking to remotes: fetch one branch, push one ref, clone.

A remote is a URL dulwich's clients speak (``git://``, ``https://``, ``ssh://``,
``file://``) or a local path. Local paths take a change-sized copy of their own
(:func:`copy_missing_objects`): dulwich's local client enumerates the whole tree
of the common commit, O(corpus) for a one-line change. Network remotes go
through dulwich's clients. Nothing here ever forces a push.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dulwich.client import get_transport_and_path
from dulwich.errors import NotGitRepository
from dulwich.file import FileLocked
from dulwich.repo import Repo

from hotreload.git.errors import PushRejected, TransportError
from hotreload.git.objects import TREES, ZERO_SHA, RawObject, add_raw_objects, has_object


def redact(location: str) -> str:
    """A remote location fit for logs and errors: user info and passwords removed."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return "<remote>"
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, "***@" + host, parts.path, parts.query, ""))
    return location


def fetch_branch(repo: Repo, remote: str, branch: str) -> str | None:
    """Fetch one branch's objects (the explicit refspec
    ``+refs/heads/<b>:refs/remotes/origin/<b>``, which a ``git clone --bare``
    clone's default refspec never fills). Returns the remote tip, or None when
    the remote has no such branch; the caller moves the tracking ref."""
    ref = b"refs/heads/" + branch.encode()
    local_path = local_remote_path(remote)
    if local_path is not None:
        with _open_remote(local_path, remote) as source:
            tip = source.refs.as_dict(b"refs/heads/").get(ref[len(b"refs/heads/"):])
            if tip is None:
                return None
            copy_missing_objects(source, repo, tip)
        return tip.decode()
    store = repo.object_store

    def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
        sha = refs.get(ref)
        return [sha] if sha and sha != ZERO_SHA and sha not in store else []

    try:
        client, path = get_transport_and_path(remote)
        result = client.fetch(path, repo, determine_wants=determine_wants)
    except Exception as exc:
        raise TransportError(f"fetch from {redact(remote)} failed: {_reason(exc, remote)}") from None
    tip = result.refs.get(ref)
    if not tip or tip == ZERO_SHA:
        return None
    return tip.decode()


def push_ref(repo: Repo, remote: str, local_sha: str, remote_ref: bytes,
             is_ancestor: Callable[[str, str], bool]) -> None:
    """Update ``remote_ref`` on the remote to ``local_sha``, only as a
    fast-forward (or a new ref). Never forces. ``is_ancestor`` answers the
    fast-forward question in the local history."""
    new = local_sha.encode()

    def non_fast_forward(current: bytes) -> PushRejected:
        return PushRejected(
            f"push to {redact(remote)} rejected: {remote_ref.decode()} is at "
            f"{current.decode()[:12]}, which is not an ancestor of {local_sha[:12]} "
            "(non-fast-forward)")

    local_path = local_remote_path(remote)
    if local_path is not None:
        with _open_remote(local_path, remote) as target:
            current = target.refs.as_dict(b"").get(remote_ref)
            if current == new:
                return
            if current is not None and not is_ancestor(current.decode(), local_sha):
                raise non_fast_forward(current)
            copy_missing_objects(repo, target, new)
            try:
                moved = (target.refs.add_if_new(remote_ref, new) if current is None
                         else target.refs.set_if_equals(remote_ref, current, new))
            except FileLocked:
                raise TransportError(f"push to {redact(remote)} failed: {remote_ref.decode()} "
                                     "is locked by another push; retry") from None
            if not moved:
                raise PushRejected(f"push to {redact(remote)} rejected: {remote_ref.decode()} "
                                   "moved during the push (fetch first)")
        return

    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        current = refs.get(remote_ref)
        if current is None or current in (ZERO_SHA, new):
            return {remote_ref: new}
        if not is_ancestor(current.decode(), local_sha):
            raise non_fast_forward(current)
        return {remote_ref: new}

    def generate_pack_data(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
        return repo.generate_pack_data(set(have), set(want), progress=progress, ofs_delta=ofs_delta)

    try:
        client, path = get_transport_and_path(remote)
        result = client.send_pack(path.encode() if isinstance(path, str) else path,
                                  update_refs, generate_pack_data)
    except PushRejected:
        raise
    except Exception as exc:
        raise TransportError(f"push to {redact(remote)} failed: {_reason(exc, remote)}") from None
    error = (result.ref_status or {}).get(remote_ref)
    if error:
        if "fast-forward" in error or "fetch first" in error or "unable to set" in error:
            raise PushRejected(f"push to {redact(remote)} rejected: {error}")
        raise TransportError(f"push to {redact(remote)} failed: {error}")


def local_remote_path(remote: str) -> str | None:
    """The filesystem path of a local remote (a path or ``file://`` URL), else None."""
    if remote.startswith("file://"):
        return urlsplit(remote).path
    if "://" in remote or re.match(r"^[^/]+@[^/:]+:", remote):  # a URL, or scp-like ssh
        return None
    return remote


class _open_remote:
    def __init__(self, path: str, remote: str) -> None:
        try:
            self.repo = Repo(path)
        except (NotGitRepository, OSError) as exc:
            raise TransportError(f"{redact(remote)} is not reachable: {exc}") from None

    def __enter__(self) -> Repo:
        return self.repo

    def __exit__(self, *exc: object) -> None:
        self.repo.close()


def copy_missing_objects(source: Repo, target: Repo, tip: bytes) -> int:
    """Copy every object reachable from ``tip`` that ``target`` lacks, as one pack.

    Finds the new commits (back to ones ``target`` has) and, parents first,
    walks each one's tree against its first parent's, skipping every entry
    identical to the parent's (same name, same id), so the work follows the size
    of the change, not of the corpus. (dulwich's local fetch enumerates the whole tree of the common
    commit and scans the whole source pack: O(corpus) for a one-line change.)"""
    src, dst = source.object_store, target.object_store
    missing: list[RawObject] = []

    def take(sha: bytes) -> None:
        type_num, raw = src.get_raw(sha)
        missing.append((type_num, bytes(raw), sha))
    seen: set[bytes] = set()

    def add_tree(tree_id: bytes, parent_id: bytes | None) -> None:
        if tree_id == parent_id or tree_id in seen or has_object(dst, tree_id):
            return
        seen.add(tree_id)
        take(tree_id)
        entries = TREES.entries(src, tree_id)
        parent = TREES.entries(src, parent_id) if parent_id is not None and parent_id in src else {}
        for name, (mode, sha) in entries.items():
            before = parent.get(name)
            if before == (mode, sha):
                continue  # unchanged from the parent: the target has it
            if stat.S_ISDIR(mode):
                add_tree(sha, before[1] if before and stat.S_ISDIR(before[0]) else None)
            elif (mode & 0o170000) != 0o160000 and sha not in seen and not has_object(dst, sha):
                seen.add(sha)  # a blob (submodule commits are not ours to copy)
                take(sha)

    # Parents strictly before children (a post-order walk). Then, when a tree is
    # walked, its first parent's commit is complete in the target or already in
    # ``missing``, so skipping entries equal to the parent's is sound, and a tree
    # seen before is complete too. (Newest first is not: after "add X, add Y,
    # delete Y" the tip's tree *is* an older commit's tree, first met relative to
    # the wrong parent, and X's blob would never be copied.)
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
    # Written so that an object lands only after everything it points to: a
    # commit's blobs and trees children-first, then the commit, commits
    # parents-first. A process killed mid-copy then never leaves a tree or commit
    # whose closure is incomplete, which the `in dst` checks above rely on.
    ordered: list[RawObject] = []
    for sha in order:
        commit = src[sha]
        first_parent = commit.parents[0] if commit.parents else None
        start = len(missing)
        add_tree(commit.tree, src[first_parent].tree if first_parent is not None else None)
        ordered += reversed(missing[start:])
        take(sha)
        ordered.append(missing[-1])
    missing = ordered
    add_raw_objects(dst, missing)
    return len(missing)


def _reason(exc: BaseException, remote: str) -> str:
    text = str(exc) or type(exc).__name__
    # a URL inside the exception text may carry credentials
    return text.replace(remote, redact(remote))


def fetch_all_into(remote: str, path: str) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """A new bare repository at ``path`` holding every object of ``remote``'s
    refs: returns the remote's refs and symrefs (the caller sets local refs)."""
    try:
        client, remote_path = get_transport_and_path(remote)
        target = Repo.init_bare(path, mkdir=True)
        try:
            result = client.fetch(remote_path, target)
        finally:
            target.close()
    except Exception as exc:
        raise TransportError(f"clone from {redact(remote)} failed: {_reason(exc, remote)}") from None
    return dict(result.refs), dict(result.symrefs or {})
