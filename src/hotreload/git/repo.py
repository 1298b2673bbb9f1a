"""``GitRepo``: the one facade the rest of the service uses for git.

Commits and trees are 40-character hex strings (``str``) outside :mod:`hotreload.git`.
The work lives in one module per concern, as in dulwich (objects, trees, history,
transport); this module ties them to one repository: the refs, and a dulwich ``Repo``
per thread, since its pack readers are not made for concurrent use (objects written
through one are visible to the others: loose objects are files, and a pack store
rescans its directory when an object is missing).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import stat
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

from dulwich.errors import NotGitRepository
from dulwich.merge import Merger
from dulwich.object_store import BaseObjectStore
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from hotreload.git import objects, transport
from hotreload.git.errors import BranchMoved, GitError, NotABareRepository, PushRejected, TransportError
from hotreload.git.history import Comparison, History
from hotreload.git.objects import HEX40, ZERO_SHA, BlobEntry, LooseWritingStore, Signature, readable
from hotreload.git.remotes import Remote, as_remote, redact, without_credentials
from hotreload.git.trees import BlobChange, TreeBytes

__all__ = [
    "API_IDENTITY", "BlobChange", "BranchMoved", "GitError", "GitRepo", "NotABareRepository", "PushRejected",
    "Remote", "Signature", "TransportError", "branch_ref", "clone_bare", "init_bare", "origin_url", "readable",
    "redact", "rewrite_ref", "tracking_ref",
]

log = logging.getLogger(__name__)

API_IDENTITY = b"Code for Philly API <api@users.noreply.codeforphilly.org>"
"""The pseudonymous author/committer of every commit the service makes itself."""

_LIVE: weakref.WeakSet[GitRepo] = weakref.WeakSet()

PACK_CACHE_BYTES = 4 * 1024 * 1024
"""dulwich's cache of resolved objects, per pack and per ``Repo``, capped (decision 17)."""


@atexit.register
def _close_all() -> None:
    # dulwich's pack objects complain if the interpreter tears them down unclosed
    for repo in list(_LIVE):
        repo.close()


def branch_ref(branch: str) -> bytes:
    return b"refs/heads/" + branch.encode()


def tracking_ref(branch: str) -> bytes:
    return b"refs/remotes/origin/" + branch.encode()


def rewrite_ref(branch: str) -> bytes:
    """The remote tip a fetch found rewritten away and no reconcile has handled yet (decision 150)."""
    return b"refs/hotreload/rewritten-from/" + branch.encode()


class GitRepo:
    """A bare repository, safe to use from many threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: list[tuple[threading.Thread, Repo]] = []
        """Each thread's ``Repo`` (its own pack files and maps), with the thread that has it."""
        self._opened_lock = threading.Lock()
        # our own threads write refs too (the reloader, the writer, the push daemon's
        # tracking ref); dulwich's ref lock files would make one of them fail
        self._ref_lock = threading.Lock()
        self.history = History(os.path.join(path, "objects"))
        self.trees = TreeBytes()
        """The trees a reload's diff, a write and a path lookup share (trees.py)."""
        repo = self._open_new()  # fail early, in the caller's thread
        if not repo.bare:
            repo.close()
            raise NotABareRepository(f"{path} is a git work tree, not a bare repository")
        self._local.repo = repo
        _LIVE.add(self)

    def _open(self) -> Repo:
        """A ``Repo`` for this thread: one a finished thread left, or a new one (threads
        come and go; each opening the packs again ran a server out of descriptors, decision 66)."""
        me = threading.current_thread()
        with self._opened_lock:
            for at, (thread, repo) in enumerate(self._opened):
                if not thread.is_alive():
                    self._opened[at] = (me, repo)
                    return repo
        return self._open_new()

    def _open_new(self) -> Repo:
        try:
            repo = Repo(self.path)
        except NotGitRepository:
            raise NotABareRepository(f"{self.path} is not a git repository") from None
        repo.object_store.delta_base_cache_limit = PACK_CACHE_BYTES  # before any pack is opened
        repo.object_store.fsync_object_files = True  # packs too: durable before any ref names them
        with self._opened_lock:
            self._opened.append((threading.current_thread(), repo))
        return repo

    def remove_stale_locks(self) -> None:
        """Remove ``*.lock`` files under ``refs/`` (and ``packed-refs.lock``), which a
        killed process leaves behind and which would block every later update of
        that ref. Only for a repository this process owns alone: call at start."""
        candidates = [os.path.join(self.path, "packed-refs.lock")]
        for folder, _dirs, files in os.walk(os.path.join(self.path, "refs")):
            candidates += [os.path.join(folder, f) for f in files if f.endswith(".lock")]
        for path in candidates:
            if os.path.exists(path):
                os.remove(path)
                log.warning("removed a stale lock file left by a stopped process: %s", path)

    def close(self) -> None:
        """Close every thread's ``Repo`` (pack files and their maps)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for _thread, repo in opened:
            repo.close()
        self._local = threading.local()

    @property
    def repo(self) -> Repo:
        repo: Repo | None = getattr(self._local, "repo", None)
        if repo is None:
            repo = self._open()
            self._local.repo = repo
        return repo

    @property
    def store(self) -> Any:
        """This thread's object store."""
        return self.repo.object_store

    # -- refs ---------------------------------------------------------------

    def head_branch(self) -> str | None:
        """The branch HEAD points at (the default branch of a bare clone)."""
        try:
            chain, _ = self.repo.refs.follow(Ref(b"HEAD"))
        except (KeyError, ValueError):
            return None
        target = chain[-1]
        if target.startswith(b"refs/heads/"):
            return target[len(b"refs/heads/") :].decode()
        return None

    def resolve(self, ref: bytes) -> str | None:
        try:
            return self.repo.refs[Ref(ref)].decode()
        except KeyError:
            return None

    def branch_commit(self, branch: str) -> str | None:
        return self.resolve(branch_ref(branch))

    def refs_under(self, prefix: bytes) -> dict[str, str]:
        refs = self.repo.refs.as_dict(Ref(prefix))
        return {(prefix + name).decode(): sha.decode() for name, sha in refs.items()}

    def cas_ref(self, ref: bytes, old: str | None, new: str | None, message: str = "") -> bool:
        """Point ``ref`` at ``new`` (None: delete it) only if it is still at ``old`` (None:
        must not exist)."""
        refs = self.repo.refs
        with self._ref_lock:
            if new is None:
                return old is not None and bool(refs.remove_if_equals(Ref(ref), ObjectID(old.encode())))
            if old is None:
                return bool(refs.add_if_new(Ref(ref), ObjectID(new.encode()), message=message.encode() or None))
            return bool(
                refs.set_if_equals(Ref(ref), ObjectID(old.encode()), ObjectID(new.encode()),
                                  message=message.encode() or None)
            )

    def set_ref(self, ref: bytes, new: str) -> None:
        with self._ref_lock:
            self.repo.refs[Ref(ref)] = ObjectID(new.encode())

    # -- objects (hotreload.git.objects) ------------------------------------

    def has_object(self, sha: str) -> bool:
        return bool(HEX40.match(sha)) and objects.has_object(self.store, sha.encode())

    def commit(self, sha: str) -> Commit:
        return objects.read_typed(self.store, sha, Commit)

    def tree_of(self, commit_sha: str) -> str:
        return str(self.commit(commit_sha).tree.decode())

    def read_blob(self, sha: str) -> bytes:
        return bytes(objects.read_typed(self.store, sha, Blob).data)

    def blob_at(self, tree_sha: str, path: str) -> str | None:
        """The id of the file at ``path`` in the tree, or None."""
        found = self.trees.find(self.store, tree_sha, path)
        return found[1].decode() if found is not None and not stat.S_ISDIR(found[0]) else None

    def read_file(self, tree_sha: str, path: str) -> bytes | None:
        """The file at ``path`` in the tree, or None."""
        sha = self.blob_at(tree_sha, path)
        return None if sha is None else self.read_blob(sha)

    def subtree(self, tree_sha: str, path: str) -> str | None:
        """The id of the folder at ``path`` in the tree, or None."""
        found = self.trees.find(self.store, tree_sha, path)
        return found[1].decode() if found is not None and stat.S_ISDIR(found[0]) else None

    def diff_trees(self, old_tree: str, new_tree: str, after: str = "") -> Iterator[BlobChange]:
        """The files that differ, in path order, from the first path after ``after``."""
        return self.trees.diff(self.store, old_tree, new_tree, after)

    def read_many(self, shas: Iterable[str]) -> dict[str, bytes]:
        return objects.read_many(self.store, shas)

    def list_blobs(self, tree_sha: str, prefix: str = "") -> list[BlobEntry]:
        """Every file below a tree, with its path from the tree's root."""
        return objects.list_blobs(self.store, tree_sha, prefix)

    def add_object(self, obj: ShaFile) -> str:
        return objects.add_object(self.store, obj)

    def write_tree_changes(self, base_tree: str | None, changes: Mapping[str, bytes | None]) -> str:
        """``base_tree`` with each path set to new content (None: removed), written."""
        return self.trees.write(self.store, base_tree, changes)

    def write_commit(self, tree: str, parents: list[str], message: str, author: Signature,
                     committer: Signature | None = None) -> str:
        return objects.write_commit(self.store, tree, parents, message, author, committer)

    def merge_trees(self, base: str | None, ours: str, theirs: str) -> tuple[str, tuple[str, ...]]:
        """Three-way merge of trees (dulwich's merger): the merged tree's id and the
        conflicting paths, sorted. Without conflicts the merged tree is in the store."""
        # the merger writes the subtrees and blobs it makes through this view: loose, durable
        merger = Merger(cast(BaseObjectStore, LooseWritingStore(self.store)))
        base_tree = None if base is None else objects.read_typed(self.store, base, Tree)
        merged, conflicts = merger.merge_trees(base_tree, objects.read_typed(self.store, ours, Tree),
                                               objects.read_typed(self.store, theirs, Tree))
        tree = merged.id.decode()
        if not conflicts and not self.has_object(tree):
            self.add_object(merged)
        return tree, tuple(sorted(p.decode(errors="replace") for p in conflicts))

    # -- history (hotreload.git.history) ------------------------------------

    def resolve_commit_prefix(self, prefix: str) -> str | None:
        """The one object whose id starts with ``prefix`` (hex, 4-40 chars), or None
        when no object or more than one does: an ambiguous prefix names nothing."""
        prefix = prefix.lower()
        if len(prefix) == 40:
            return prefix if self.has_object(prefix) else None
        found = [sha.decode() for sha in itertools.islice(self.store.iter_prefix(prefix.encode()), 2)]
        return found[0] if len(found) == 1 else None

    def is_ancestor(self, ancestor: str, descendant: str, confirmed: bool = False) -> bool:
        """True if the commit ``ancestor`` (a full id) is reachable from
        ``descendant`` or equal to it; costs the commits between them.
        ``confirmed``: a True is a path of the commits' own parents (for a push)."""
        if not self.has_object(ancestor):
            return False  # never fetched here: cannot be in our history
        try:
            self.history.node(self.store, ancestor.encode())
        except GitError:
            return False  # not a commit
        return self.history.is_ancestor(self.store, ancestor, descendant, confirmed)

    def compare(self, left: str, right: str, confirmed: bool = False) -> Comparison:
        """The commits each side has that the other lacks, and their merge bases,
        in one walk bounded by the difference. ``confirmed``: borne out by the
        commit objects, for an answer that can drop a commit (history.py)."""
        if confirmed:
            return self.history.compare_confirmed(self.store, left, right)
        return self.history.compare(self.store, left, right)

    def count_commits(self, tip: str, limit: int = 10_000) -> int:
        """Commits reachable from ``tip``, counting stops at ``limit``."""
        return sum(1 for _ in zip(range(limit), self.walk(tip), strict=False))

    def walk(self, *starts: str) -> Iterator[str]:
        """Every commit reachable from ``starts``, newest generation first."""
        return self.history.walk(self.store, *starts)

    # -- remotes (hotreload.git.transport) ----------------------------------

    def fetch_branch(self, remote: str | Remote, branch: str) -> str | None:
        """Fetch one branch into ``refs/remotes/origin/<branch>``. Returns the
        remote tip, or None when the remote has no such branch."""
        seen = self.resolve(tracking_ref(branch))  # the tip before this fetch
        ours = [sha for sha in (self.branch_commit(branch), seen) if sha]
        tip = transport.fetch_branch(self.repo, self.trees, remote, branch, self.walk(*ours) if ours else None)
        if tip is not None:
            if seen is not None and self.resolve(rewrite_ref(branch)) is None and not self._contains(tip, seen):
                # kept on disk until a reconcile handles it: a failed reload or a kill before the
                # swap must not turn the rewrite into "local commits" to replay and push back
                self.set_ref(rewrite_ref(branch), seen)
            self.set_ref(tracking_ref(branch), tip)
        return tip

    def _contains(self, tip: str, commit: str) -> bool:
        try:
            return self.is_ancestor(commit, tip, confirmed=True)
        except GitError:
            return True  # cannot tell: no marker; the reconcile compares again

    def last_seen(self, branch: str) -> str | None:
        """The remote tip this clone last reconciled with, for telling a rewrite: an unhandled
        rewrite's old tip, else the tracking ref."""
        return self.resolve(rewrite_ref(branch)) or self.resolve(tracking_ref(branch))

    def forget_rewrite(self, branch: str, last_seen: str | None) -> None:
        """A reconcile planned with ``last_seen`` was applied: its rewrite, if any, is handled.
        (Under the data lock: one ref read, ~9 us, when there is no rewrite to forget.)"""
        if last_seen is not None and self.resolve(rewrite_ref(branch)) == last_seen:
            self.cas_ref(rewrite_ref(branch), last_seen, None)

    def remote_tip(self, remote: str | Remote, branch: str) -> str | None:
        """The remote's tip of ``branch`` without fetching anything (ls-remote)."""
        return transport.remote_tip(remote, branch)

    def push_ref(self, remote: str | Remote, local_sha: str, remote_ref: bytes, expect: str | None = None) -> None:
        """Update ``remote_ref`` on the remote to ``local_sha``, only as a
        fast-forward (or a new ref), and with ``expect``, only from that commit.
        Never forces."""
        transport.push_ref(self.repo, self.trees, remote, local_sha, remote_ref,
                           lambda ancestor, tip: self.is_ancestor(ancestor, tip, confirmed=True), self.new_commits,
                           expect)

    def new_commits(self, haves: list[str], tip: str) -> list[str]:
        """Commits reachable from ``tip`` and from none of ``haves``, parents first."""
        if not haves:
            return list(reversed(list(self.walk(tip))))
        # the fewest against any single have: a superset of the exact answer at worst,
        # which only sends objects the receiver already has
        best: tuple[str, ...] | None = None
        for have in haves[:8]:
            ahead = self.compare(have, tip).right_only
            if best is None or len(ahead) < len(best):
                best = ahead
        return list(best or ())


def init_bare(path: str, branch: str = "published") -> GitRepo:
    repo = Repo.init_bare(path, mkdir=True)
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(branch_ref(branch)))
    repo.close()
    return GitRepo(path)


def clone_bare(remote: str | Remote, path: str, branch: str | None = None) -> GitRepo:
    """A bare clone of ``remote`` at ``path``: all of its branches as local branches
    (like ``git clone --bare``), HEAD at ``branch`` or the remote's HEAD branch. The
    URL recorded as ``origin`` carries no credentials (they are used, never stored)."""
    remote = as_remote(remote)
    refs, symrefs = transport.fetch_all_into(remote, path)
    target = Repo(path)
    for ref, sha in refs.items():
        if ref.startswith(b"refs/heads/") and sha and sha != ZERO_SHA:
            target.refs[Ref(ref)] = ObjectID(sha)
            # what the remote had when we cloned: nothing is pending a push yet
            target.refs[Ref(b"refs/remotes/origin/" + ref[len(b"refs/heads/"):])] = ObjectID(sha)
    head = branch_ref(branch) if branch else symrefs.get(b"HEAD")
    if head is None:
        heads = [r for r in refs if r.startswith(b"refs/heads/")]
        head = heads[0] if heads else branch_ref("published")
    target.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(head))
    config = target.get_config()
    config.set((b"remote", b"origin"), b"url", without_credentials(remote.url).encode())
    config.write_to_path()
    target.close()
    return GitRepo(path)


def origin_url(repo: GitRepo) -> str | None:
    try:
        return repo.repo.get_config().get((b"remote", b"origin"), b"url").decode()
    except KeyError:
        return None
