"""Git plumbing on dulwich: the only module that talks to repositories.

Commits and trees are named by 40-character hex strings (``str``) everywhere
outside this module. dulwich's ``Repo`` and its pack readers share file handles
and caches and are not made for concurrent use, so :class:`GitRepo` hands every
thread its own ``Repo`` object (opening one is cheap: it reads a few files).
Objects written through one ``Repo`` are visible to the others: loose objects
are files, and a pack store rescans its directory when an object is missing.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
import stat
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dulwich.client import get_transport_and_path
from dulwich.errors import NotGitRepository
from dulwich.file import FileLocked
from dulwich.objects import Blob, Commit, ShaFile, Tree, object_class, parse_tree
from dulwich.pack import UnpackedObject
from dulwich.repo import Repo

log = logging.getLogger(__name__)

ZERO_SHA = b"0" * 40
HEX40 = re.compile(r"^[0-9a-f]{40}$")

API_IDENTITY = b"Code for Philly API <api@users.noreply.codeforphilly.org>"
"""The pseudonymous author/committer of every commit the service makes itself."""


class GitError(Exception):
    """A repository operation failed."""


class NotABareRepository(GitError):
    pass


class TransportError(GitError):
    """The remote could not be reached or answered with an error (transient)."""


class PushRejected(GitError):
    """The remote refused the update because it is not a fast-forward (terminal)."""


_LIVE: weakref.WeakSet[GitRepo] = weakref.WeakSet()

PACK_CACHE_BYTES = 4 * 1024 * 1024
"""dulwich keeps, per pack and per ``Repo``, an LRU of resolved objects of up to
96 MiB (git's core.deltaBaseCacheLimit). With a ``Repo`` per thread that became
hundreds of MB of retained memory after a few reloads; our own tree cache and
bulk reads make a small one enough."""

LOOSE_OBJECT_LIMIT = 100
"""Fewer new objects than this are written loose, more as a pack (git's unpack.limit)."""


Entries = dict[bytes, tuple[int, bytes]]
"""A tree's entries: name -> (mode, hex id)."""


class TreeCache:
    """Parsed tree entries by tree id, shared by every repository in the process:
    a tree is content-addressed, so the same id means the same entries anywhere.
    A reload then parses the big flat folders (``projects/``: one entry per
    record) once instead of once per use. Bounded by the total number of entries
    held (least recently used out), so a few big trees cannot pile up. Callers
    must not modify a returned dict."""

    def __init__(self, max_entries: int = 64_000) -> None:
        self._max = max_entries
        self._trees: dict[bytes, Entries] = {}
        self._held = 0
        self._lock = threading.Lock()

    def entries(self, store: Any, sha: bytes) -> Entries:
        with self._lock:
            found = self._trees.pop(sha, None)
            if found is not None:
                self._trees[sha] = found  # most recently used last
                return found
        type_num, raw = store.get_raw(sha)
        if type_num != Tree.type_num:
            raise GitError(f"{sha.decode()} is not a tree")
        parsed = {name: (mode, child) for name, mode, child in parse_tree(raw, 20)}  # SHA-1: 20 bytes
        with self._lock:
            if sha not in self._trees:
                self._trees[sha] = parsed
                self._held += len(parsed)
            while self._held > self._max and len(self._trees) > 1:
                self._held -= len(self._trees.pop(next(iter(self._trees))))
        return parsed


TREES = TreeCache()


@dataclass(frozen=True)
class BlobChange:
    """A regular file that differs between two trees (None: absent on that side)."""

    path: str
    old: str | None
    new: str | None


RawObject = tuple[int, bytes, bytes]
"""(type number, raw content, hex id): an object copied without being parsed."""


def write_loose(store: Any, type_num: int, raw: bytes) -> str:
    """Write one loose object the way git does: zlib of ``<type> <size>\\0`` and the
    content, into a unique temporary file, then renamed into place. Unlike a lock
    file, a temporary file left by a killed process never blocks a later write."""
    header = object_class(type_num).type_name + b" " + str(len(raw)).encode() + b"\0"
    hexsha = hashlib.sha1(header + raw).hexdigest()
    folder = os.path.join(store.path, hexsha[:2])
    path = os.path.join(folder, hexsha[2:])
    if os.path.exists(path):
        return hexsha
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f"tmp_obj_{os.getpid()}_{threading.get_ident()}_{hexsha[2:10]}")
    with open(tmp, "wb") as fh:
        fh.write(zlib.compress(header + raw, 1))  # git's core.looseCompression default
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)
    return hexsha


def has_object(store: Any, sha: bytes) -> bool:
    """``sha in store`` without reading the object (dulwich's check of a loose
    object loads and parses it: 30 ms for a tree of 17,000 entries)."""
    hexsha = sha.decode()
    return os.path.exists(os.path.join(store.path, hexsha[:2], hexsha[2:])) or bool(store.contains_packed(sha))


def add_raw_objects(store: Any, objects: list[RawObject]) -> None:
    """Write objects as they are, without parsing them (a tree of 17,000 entries
    costs dulwich ~10 ms to parse and nothing to copy), in the order given. Fewer
    than :data:`LOOSE_OBJECT_LIMIT` go loose; more go into one pack, which appears
    at once when complete."""
    if len(objects) >= LOOSE_OBJECT_LIMIT:
        store.add_pack_data(len(objects), (
            UnpackedObject(type_num, decomp_len=len(raw), decomp_chunks=[raw], sha=bytes.fromhex(sha.decode()))
            for type_num, raw, sha in objects))
        return
    for type_num, raw, _sha in objects:
        write_loose(store, type_num, raw)


class LooseWritingStore:
    """An object store view whose ``add_object`` writes with :func:`write_loose`
    (for dulwich code that writes objects itself, like its tree merger)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getitem__(self, sha: bytes) -> Any:
        return self._store[sha]

    def __contains__(self, sha: bytes) -> bool:
        return sha in self._store

    def add_object(self, obj: ShaFile) -> None:
        write_loose(self._store, obj.type_num, obj.as_raw_string())


@atexit.register
def _close_all() -> None:
    # dulwich's pack objects complain if the interpreter tears them down unclosed
    for repo in list(_LIVE):
        repo.close()


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


def branch_ref(branch: str) -> bytes:
    return b"refs/heads/" + branch.encode()


def tracking_ref(branch: str) -> bytes:
    return b"refs/remotes/origin/" + branch.encode()


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


class GitRepo:
    """A bare repository, safe to use from many threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: list[Repo] = []
        self._opened_lock = threading.Lock()
        # our own threads write refs too (the reloader, the writer, the push daemon's
        # tracking ref); dulwich's ref lock files would make one of them fail
        self._ref_lock = threading.Lock()
        repo = self._open()  # fail early, in the caller's thread
        if not repo.bare:
            repo.close()
            raise NotABareRepository(f"{path} is a git work tree, not a bare repository")
        self._local.repo = repo
        _LIVE.add(self)

    def _open(self) -> Repo:
        try:
            repo = Repo(self.path)
        except NotGitRepository:
            raise NotABareRepository(f"{self.path} is not a git repository") from None
        repo.object_store.delta_base_cache_limit = PACK_CACHE_BYTES  # before any pack is opened
        with self._opened_lock:
            self._opened.append(repo)
        return repo

    def remove_stale_locks(self) -> list[str]:
        """Remove ``*.lock`` files under ``refs/`` (and ``packed-refs.lock``), which a
        killed process leaves behind and which would block every later update of
        that ref. Only for a repository this process owns alone: call at start."""
        removed = []
        candidates = [os.path.join(self.path, "packed-refs.lock")]
        for folder, _dirs, files in os.walk(os.path.join(self.path, "refs")):
            candidates += [os.path.join(folder, f) for f in files if f.endswith(".lock")]
        for path in candidates:
            if os.path.exists(path):
                os.remove(path)
                removed.append(os.path.relpath(path, self.path))
                log.warning("removed a stale lock file left by a stopped process: %s", path)
        return removed

    def close(self) -> None:
        """Close every thread's ``Repo`` (pack files and their maps)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for repo in opened:
            repo.close()
        self._local = threading.local()

    @property
    def repo(self) -> Repo:
        repo: Repo | None = getattr(self._local, "repo", None)
        if repo is None:
            repo = self._open()
            self._local.repo = repo
        return repo

    # -- refs ---------------------------------------------------------------

    def head_branch(self) -> str | None:
        """The branch HEAD points at (the default branch of a bare clone)."""
        try:
            chain, _ = self.repo.refs.follow(b"HEAD")
        except (KeyError, ValueError):
            return None
        target = chain[-1]
        if target.startswith(b"refs/heads/"):
            return target[len(b"refs/heads/") :].decode()
        return None

    def resolve(self, ref: bytes) -> str | None:
        try:
            return self.repo.refs[ref].decode()
        except KeyError:
            return None

    def branch_commit(self, branch: str) -> str | None:
        return self.resolve(branch_ref(branch))

    def refs_under(self, prefix: bytes) -> dict[str, str]:
        refs = self.repo.refs.as_dict(prefix)
        return {(prefix + name).decode(): sha.decode() for name, sha in refs.items()}

    def cas_ref(self, ref: bytes, old: str | None, new: str, message: str = "") -> bool:
        """Point ``ref`` at ``new`` only if it is still at ``old`` (None: must not exist)."""
        refs = self.repo.refs
        with self._ref_lock:
            if old is None:
                return bool(refs.add_if_new(ref, new.encode(), message=message.encode() or None))
            return bool(
                refs.set_if_equals(ref, old.encode(), new.encode(), message=message.encode() or None)
            )

    def set_ref(self, ref: bytes, new: str) -> None:
        with self._ref_lock:
            self.repo.refs[ref] = new.encode()

    # -- objects ------------------------------------------------------------

    def has_object(self, sha: str) -> bool:
        return bool(HEX40.match(sha)) and has_object(self.repo.object_store, sha.encode())

    def commit(self, sha: str) -> Commit:
        obj = self.repo.object_store[sha.encode()]
        if not isinstance(obj, Commit):
            raise GitError(f"{sha} is not a commit")
        return obj

    def tree_of(self, commit_sha: str) -> str:
        return self.commit(commit_sha).tree.decode()

    def read_blob(self, sha: str) -> bytes:
        obj = self.repo.object_store[sha.encode()]
        if not isinstance(obj, Blob):
            raise GitError(f"{sha} is not a blob")
        return bytes(obj.data)

    def tree_entries(self, tree_sha: str) -> Entries:
        """name -> (mode, id) of a tree (shared: do not modify)."""
        return TREES.entries(self.repo.object_store, tree_sha.encode())

    def read_path(self, tree_sha: str, path: str) -> bytes | None:
        """The blob at ``path`` in the tree, or None."""
        *folders, name = path.split("/")
        parent = self.subtree(tree_sha, "/".join(folders))
        found = self.tree_entries(parent).get(name.encode()) if parent else None
        if found is None or stat.S_ISDIR(found[0]):
            return None
        return self.read_blob(found[1].decode())

    def subtree(self, tree_sha: str, path: str) -> str | None:
        sha = tree_sha
        for part in filter(None, path.split("/")):
            found = self.tree_entries(sha).get(part.encode())
            if found is None or not stat.S_ISDIR(found[0]):
                return None
            sha = found[1].decode()
        return sha

    def iter_blobs(self, tree_sha: str, prefix: str = "") -> Iterator[BlobEntry]:
        """Every blob below a tree, depth first, with its path from the tree's root."""
        stack = [(prefix, tree_sha)]
        while stack:
            base, sha = stack.pop()
            for raw_name, (mode, child) in self.tree_entries(sha).items():
                name = raw_name.decode()
                path = f"{base}/{name}" if base else name
                if stat.S_ISDIR(mode):
                    stack.append((path, child.decode()))
                elif stat.S_ISREG(mode):
                    yield BlobEntry(path, child.decode())

    def diff_trees(self, old_tree: str, new_tree: str) -> list[BlobChange]:
        """Regular files added, removed or changed between two trees. Subtrees with
        the same id are skipped whole, so the work follows the change (like
        ``dulwich.diff_tree.tree_changes``, but over cached entry dicts: no sorted
        per-entry objects for folders of tens of thousands of records)."""
        changes: list[BlobChange] = []
        stack: list[tuple[str, str | None, str | None]] = [("", old_tree, new_tree)]
        while stack:
            base, old_sha, new_sha = stack.pop()
            if old_sha == new_sha:
                continue
            old = self.tree_entries(old_sha) if old_sha else {}
            new = self.tree_entries(new_sha) if new_sha else {}
            for raw_name in old.keys() | new.keys():
                before, after = old.get(raw_name), new.get(raw_name)
                if before == after:
                    continue
                name = raw_name.decode()
                path = f"{base}/{name}" if base else name
                old_dir = before[1].decode() if before and stat.S_ISDIR(before[0]) else None
                new_dir = after[1].decode() if after and stat.S_ISDIR(after[0]) else None
                if old_dir or new_dir:
                    stack.append((path, old_dir, new_dir))
                old_file = before[1].decode() if before and stat.S_ISREG(before[0]) else None
                new_file = after[1].decode() if after and stat.S_ISREG(after[0]) else None
                if old_file != new_file:
                    changes.append(BlobChange(path, old_file, new_file))
        return changes

    def read_many(self, shas: Iterable[str]) -> dict[str, bytes]:
        """The raw content of many objects at once, read in pack order: every
        wanted object is located in the pack indices, then read sorted by (pack,
        offset) in one sequential pass, without building dulwich objects. Deltas
        and loose objects fall back to a lookup each."""
        store = self.repo.object_store
        wanted = {sha.encode() for sha in shas}
        located: list[tuple[int, int, bytes, Any]] = []
        for n, pack in enumerate(store.packs):
            index = pack.index
            for sha in wanted:
                try:
                    located.append((n, index.object_offset(sha), sha, pack))
                except KeyError:
                    continue
        found: dict[str, bytes] = {}
        for _, offset, sha, pack in sorted(located, key=lambda x: (x[0], x[1])):
            if sha.decode() in found:
                continue
            unpacked = pack.data.get_unpacked_object_at(offset)
            if unpacked.pack_type_num in (1, 2, 3, 4):  # stored whole, not as a delta
                found[sha.decode()] = b"".join(unpacked.decomp_chunks)
        for sha in wanted:
            key = sha.decode()
            if key not in found:
                found[key] = bytes(store.get_raw(sha)[1])
        return found

    def list_blobs(self, tree_sha: str, prefix: str = "") -> list[BlobEntry]:
        """Every blob below a tree (like :meth:`iter_blobs`), reading the trees of
        each level in one :meth:`read_many` pass: far faster for large trees."""
        blobs: list[BlobEntry] = []
        # identical subtrees share one sha, so a level maps a sha to all its paths
        level: dict[str, list[str]] = {tree_sha: [prefix]}
        while level:
            raw = self.read_many(level)
            next_level: dict[str, list[str]] = {}
            for sha, bases in level.items():
                for name, mode, child in parse_tree(raw[sha], 20):  # SHA-1 ids: 20 bytes
                    for base in bases:
                        path = f"{base}/{name.decode()}" if base else name.decode()
                        if stat.S_ISDIR(mode):
                            next_level.setdefault(child.decode(), []).append(path)
                        elif stat.S_ISREG(mode):
                            blobs.append(BlobEntry(path, child.decode()))
            level = next_level
        return blobs

    # -- history ------------------------------------------------------------

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True if ``ancestor`` (a full sha or a unique-enough prefix) is reachable
        from ``descendant``, including equality."""
        ancestor = ancestor.lower()
        if len(ancestor) == 40 and not self.has_object(ancestor):
            return False  # never fetched here: cannot be in our history
        return any(sha.startswith(ancestor) for sha in self.walk(descendant))

    def walk(self, start: str, stop: Callable[[str], bool] | None = None) -> Iterator[str]:
        """Commits reachable from ``start`` (breadth first); ``stop`` prunes a commit
        and everything behind it."""
        seen = {start}
        queue = deque([start])
        store = self.repo.object_store
        while queue:
            sha = queue.popleft()
            if stop is not None and stop(sha):
                continue
            yield sha
            commit = store[sha.encode()]
            assert isinstance(commit, Commit)
            for parent in commit.parents:
                p = parent.decode()
                if p not in seen:
                    seen.add(p)
                    queue.append(p)

    def commits_between(self, base: str, tip: str) -> list[str]:
        """Commits reachable from ``tip`` but not from ``base``, oldest first."""
        behind_base = set(self.walk(base))
        ahead = list(self.walk(tip, stop=behind_base.__contains__))
        return ahead[::-1]

    def count_between(self, base: str | None, tip: str, limit: int = 10_000) -> int:
        if base is None:
            return sum(1 for _ in zip(range(limit), self.walk(tip), strict=False))
        if base == tip:
            return 0
        return len(self.commits_between(base, tip))

    # -- writing ------------------------------------------------------------

    def write_pack(self, objects: list[Any]) -> None:
        """Write many objects as one pack (far faster than loose objects)."""
        self.repo.object_store.add_objects([(obj, None) for obj in objects])

    def add_object(self, obj: ShaFile) -> str:
        return write_loose(self.repo.object_store, obj.type_num, obj.as_raw_string())

    def write_blob(self, data: bytes) -> str:
        return write_loose(self.repo.object_store, Blob.type_num, data)

    def write_tree_changes(self, base_tree: str | None, changes: Mapping[str, bytes | None]) -> str:
        """A new tree: ``base_tree`` with each path set to new content (or removed
        when None). Folders left empty disappear, as in git."""
        tree = self._write_tree(base_tree, changes)
        if tree is None:  # everything removed: the empty tree
            tree = Tree()
            self.add_object(tree)
        return tree.id.decode()

    def _write_tree(self, base_tree: str | None, changes: Mapping[str, bytes | None]) -> Tree | None:
        by_top: dict[str, dict[str, bytes | None]] = {}
        for path, content in changes.items():
            top, _, rest = path.partition("/")
            by_top.setdefault(top, {})[rest] = content
        entries = dict(self.tree_entries(base_tree)) if base_tree is not None else {}
        for top, sub in by_top.items():
            name = top.encode()
            existing = entries.get(name)
            if "" in sub:  # a file directly in this tree
                content = sub[""]
                if content is None:
                    entries.pop(name, None)
                else:
                    entries[name] = (0o100644, self.write_blob(content).encode())
                continue
            base_sub = existing[1].decode() if existing and stat.S_ISDIR(existing[0]) else None
            new_sub = self._write_tree(base_sub, sub)
            if new_sub is None:
                entries.pop(name, None)
            else:
                entries[name] = (stat.S_IFDIR, new_sub.id)
        if not entries:
            return None
        tree = Tree()
        for name, (mode, sha) in entries.items():
            tree.add(name, mode, sha)
        self.add_object(tree)
        return tree

    def write_commit(
        self,
        tree: str,
        parents: list[str],
        message: str,
        author: Signature,
        committer: Signature | None = None,
    ) -> str:
        commit = Commit()
        commit.tree = tree.encode()
        commit.parents = [p.encode() for p in parents]
        commit.author = author.identity
        commit.author_time = author.time
        commit.author_timezone = author.timezone
        committer = committer or author
        commit.committer = committer.identity
        commit.commit_time = committer.time
        commit.commit_timezone = committer.timezone
        commit.encoding = b"UTF-8"
        commit.message = message.encode()
        self.add_object(commit)
        return commit.id.decode()

    # -- remotes ------------------------------------------------------------

    def fetch_branch(self, remote: str, branch: str) -> str | None:
        """Fetch one branch into ``refs/remotes/origin/<branch>`` (the explicit
        refspec ``+refs/heads/<b>:refs/remotes/origin/<b>``, which a ``git clone
        --bare`` clone's default refspec never fills). Returns the remote tip, or
        None when the remote has no such branch."""
        ref = branch_ref(branch)
        local_path = local_remote_path(remote)
        if local_path is not None:
            with _open_remote(local_path, remote) as source:
                tip = source.refs.as_dict(b"refs/heads/").get(ref[len(b"refs/heads/"):])
                if tip is None:
                    return None
                copy_missing_objects(source, self.repo, tip)
            self.set_ref(tracking_ref(branch), tip.decode())
            return tip.decode()
        store = self.repo.object_store

        def determine_wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
            sha = refs.get(ref)
            return [sha] if sha and sha != ZERO_SHA and sha not in store else []

        try:
            client, path = get_transport_and_path(remote)
            result = client.fetch(path, self.repo, determine_wants=determine_wants)
        except Exception as exc:
            raise TransportError(f"fetch from {redact(remote)} failed: {_reason(exc, remote)}") from None
        tip = result.refs.get(ref)
        if not tip or tip == ZERO_SHA:
            return None
        self.set_ref(tracking_ref(branch), tip.decode())
        return tip.decode()

    def push_ref(self, remote: str, local_sha: str, remote_ref: bytes) -> None:
        """Update ``remote_ref`` on the remote to ``local_sha``, only as a
        fast-forward (or a new ref). Never forces."""
        repo = self.repo
        new = local_sha.encode()
        local_path = local_remote_path(remote)
        if local_path is not None:
            with _open_remote(local_path, remote) as target:
                current = target.refs.as_dict(b"").get(remote_ref)
                if current == new:
                    return
                if current is not None and not self.is_ancestor(current.decode(), local_sha):
                    raise PushRejected(
                        f"push to {redact(remote)} rejected: {remote_ref.decode()} is at "
                        f"{current.decode()[:12]}, which is not an ancestor of {local_sha[:12]} "
                        "(non-fast-forward)")
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
            if not self.is_ancestor(current.decode(), local_sha):
                raise PushRejected(
                    f"push to {redact(remote)} rejected: {remote_ref.decode()} is at "
                    f"{current.decode()[:12]}, which is not an ancestor of {local_sha[:12]} "
                    "(non-fast-forward)"
                )
            return {remote_ref: new}

        def generate_pack_data(
            have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None
        ) -> Any:
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


def init_bare(path: str, branch: str = "published") -> GitRepo:
    repo = Repo.init_bare(path, mkdir=True)
    repo.refs.set_symbolic_ref(b"HEAD", branch_ref(branch))
    repo.close()
    return GitRepo(path)


def clone_bare(remote: str, path: str, branch: str | None = None) -> GitRepo:
    """A bare clone of ``remote`` at ``path``: all of its branches as local branches
    (like ``git clone --bare``), HEAD at ``branch`` or the remote's HEAD branch."""
    try:
        client, remote_path = get_transport_and_path(remote)
        target = Repo.init_bare(path, mkdir=True)
        result = client.fetch(remote_path, target)
    except Exception as exc:
        raise TransportError(f"clone from {redact(remote)} failed: {_reason(exc, remote)}") from None
    for ref, sha in result.refs.items():
        if ref.startswith(b"refs/heads/") and sha and sha != ZERO_SHA:
            target.refs[ref] = sha
    head = branch_ref(branch) if branch else None
    if head is None:
        symref = (result.symrefs or {}).get(b"HEAD")
        head = symref if symref else None
    if head is None:
        heads = [r for r in result.refs if r.startswith(b"refs/heads/")]
        head = heads[0] if heads else branch_ref("published")
    target.refs.set_symbolic_ref(b"HEAD", head)
    config = target.get_config()
    config.set((b"remote", b"origin"), b"url", remote.encode())
    config.write_to_path()
    target.close()
    return GitRepo(path)


def origin_url(repo: GitRepo) -> str | None:
    try:
        return repo.repo.get_config().get((b"remote", b"origin"), b"url").decode()
    except KeyError:
        return None



def tree_objects(files: Mapping[str, bytes]) -> tuple[str, list[Blob | Tree]]:
    """Blobs and trees for a whole file set, without writing anything: returns the
    root tree id and every object, ready for :meth:`GitRepo.write_pack`."""
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
            if isinstance(child, dict):
                sub = make(child)
                tree.add(name.encode(), stat.S_IFDIR, sub.id)
            else:
                tree.add(name.encode(), 0o100644, child.id)
        objects.append(tree)
        return tree

    root = make(nested)
    return root.id.decode(), objects
