"""git's own plumbing, run as a subprocess: how the simulator writes its worlds and
reads back what they hold. The service reads and writes git with dulwich and its
own tree code; nothing here shares a line with it, so a bug in the service's object
reader or tree splicer cannot agree with itself here (specs/simulator.md).

Objects are content-addressed: what a commit, tree or blob id names never changes,
so what was read once is kept (:class:`Objects`, shared by every repository of a
world), and a step's checks cost a git call per new commit, not per look.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

ZERO = "0" * 40
_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
"""No user or system configuration: every world is made the same way on every machine."""


class GitError(RuntimeError):
    """A git command failed; the message holds the command and what git said."""


Env = dict[str, str] | None


def run(*args: str, input: bytes | None = None, env: Env = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], input=input, capture_output=True,
                          env={**os.environ, **_ENV, **(env or {})})


def git(*args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    """``git args``'s output; a failure raises :class:`GitError` with what git said."""
    proc = run(*args, input=input, env=env)
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)[:200]}: exit {proc.returncode}: "
                       f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def identity_env(who: str, when: int) -> dict[str, str]:
    """``who`` (``Name <email>``) as author and committer at ``when`` (Unix seconds, UTC)."""
    name, _, email = who.partition(" <")
    date = f"{when} +0000"
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">"), "GIT_COMMITTER_DATE": date}


@dataclass(frozen=True)
class Commit:
    tree: str
    parents: tuple[str, ...]
    author: bytes
    """``Name <email>``, as stored."""
    author_time: int
    message: bytes

    @property
    def identity(self) -> tuple[bytes, int, bytes]:
        """What a rebase keeps of a commit (author, author date, message), as ``git cherry``
        matches commits across one."""
        return self.author, self.author_time, self.message

    @property
    def subject(self) -> str:
        return self.message.decode(errors="replace").partition("\n")[0]

    @classmethod
    def parse(cls, raw: bytes) -> Commit:
        head, _, message = raw.partition(b"\n\n")
        tree, parents, author, when = "", [], b"", 0
        for line in head.split(b"\n"):
            key, _, value = line.partition(b" ")
            if key == b"tree":
                tree = value.decode()
            elif key == b"parent":
                parents.append(value.decode())
            elif key == b"author":
                author, stamp, _zone = value.rsplit(b" ", 2)
                when = int(stamp)
        return cls(tree, tuple(parents), author, when, message)


@dataclass
class Objects:
    """What was read by id: trees as ``path -> blob id`` (every blob below them), blobs,
    parsed commits."""

    files: dict[str, dict[str, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class Repo:
    """A (bare) repository, through git's plumbing."""

    def __init__(self, path: str, objects: Objects | None = None) -> None:
        self.path = path
        self.objects = objects if objects is not None else Objects()

    def run(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
        return git("--git-dir", self.path, *args, input=input, env=env)

    def status(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """A command whose exit status is the answer."""
        return run("--git-dir", self.path, *args)

    # -- refs ------------------------------------------------------------------------------

    def branch_commit(self, branch: str) -> str | None:
        found = self.status("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
        return found.stdout.decode().strip() or None

    def refs_under(self, prefix: str) -> dict[str, str]:
        out = self.run("for-each-ref", "--format=%(refname) %(objectname)", prefix).decode()
        return dict(line.rsplit(" ", 1) for line in out.splitlines())

    def set_ref(self, ref: str, new: str, old: str | None = None) -> bool:
        """Point ``ref`` at ``new``; with ``old``, only if it is still there (a compare-and-swap:
        False when someone moved or locked the ref meanwhile)."""
        proc = self.status("update-ref", ref, new, *([old] if old else []))
        if proc.returncode != 0 and old is None:
            raise GitError(f"git update-ref {ref} {new}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.returncode == 0

    def reflog(self, ref: str) -> list[str]:
        """Where ``ref`` pointed after each logged move, oldest first (none without a reflog)."""
        found = self.status("log", "--walk-reflogs", "--format=%H", ref, "--")
        return found.stdout.decode().split()[::-1] if found.returncode == 0 else []

    # -- history ---------------------------------------------------------------------------

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = self.status("merge-base", "--is-ancestor", ancestor, descendant)
        if proc.returncode > 1:
            raise GitError(f"git merge-base --is-ancestor {ancestor} {descendant}: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
        return proc.returncode == 0

    def has_object(self, sha: str) -> bool:
        return self.status("cat-file", "-e", sha).returncode == 0

    def walk(self, *tips: str) -> list[str]:
        """Every commit reachable from ``tips``."""
        return self.run("rev-list", *tips, "--").decode().split() if tips else []

    def commit(self, sha: str) -> Commit:
        return self.commits([sha])[sha]

    def commits(self, shas: Iterable[str]) -> dict[str, Commit]:
        known, wanted = self.objects.commits, list(dict.fromkeys(shas))
        for sha, raw in self._read([sha for sha in wanted if sha not in known]).items():
            known[sha] = Commit.parse(raw)
        return {sha: known[sha] for sha in wanted}

    # -- trees and blobs -------------------------------------------------------------------

    def files(self, commit: str) -> dict[str, str]:
        """Every file of ``commit``'s tree: path -> blob id (``ls-tree -r``). Paths that are
        not UTF-8 keep their bytes as surrogates."""
        listing = self.objects.files.get(commit)
        if listing is None:
            listing = {}
            for entry in self.run("ls-tree", "-r", "-z", "--full-tree", commit).split(b"\0"):
                if entry:
                    meta, _, path = entry.partition(b"\t")
                    _mode, kind, sha = meta.split(b" ")
                    if kind == b"blob":
                        listing[path.decode("utf-8", "surrogateescape")] = sha.decode()
            self.objects.files[commit] = listing
        return listing

    def read_files(self, commit: str, folder: str) -> dict[str, tuple[str, bytes]]:
        """The files below ``folder`` in ``commit``'s tree: path -> (blob id, content)."""
        chosen = {path: sha for path, sha in self.files(commit).items() if path.startswith(folder + "/")}
        blobs = self.blobs(chosen.values())
        return {path: (sha, blobs[sha]) for path, sha in chosen.items()}

    def read_path(self, commit: str, path: str) -> bytes | None:
        sha = self.files(commit).get(path)
        return None if sha is None else self.blobs([sha])[sha]

    def blobs(self, shas: Iterable[str]) -> dict[str, bytes]:
        known = self.objects.blobs
        wanted = list(dict.fromkeys(shas))
        known.update(self._read([sha for sha in wanted if sha not in known]))
        return {sha: known[sha] for sha in wanted}

    def _read(self, shas: list[str]) -> dict[str, bytes]:
        """Objects by id, in one ``cat-file --batch``."""
        if not shas:
            return {}
        out = self.run("cat-file", "--batch", input="".join(sha + "\n" for sha in shas).encode())
        found, at = {}, 0
        for sha in shas:
            end = out.index(b"\n", at)
            header = out[at:end].split(b" ")
            if header[-1] == b"missing":
                raise GitError(f"{self.path}: object {sha} is missing")
            size = int(header[2])
            found[sha] = out[end + 1:end + 1 + size]
            at = end + 1 + size + 1
        return found

    # -- writing ---------------------------------------------------------------------------

    def write_tree(self, base_tree: str, files: dict[str, bytes | None]) -> str:
        """``base_tree`` with ``files`` written (None: removed), through a scratch index:
        ``hash-object``, ``read-tree``, ``update-index``, ``write-tree``."""
        lines = []
        for path, data in files.items():
            raw = path.encode("utf-8", "surrogateescape")
            if data is None:
                lines.append(b"0 %s\t%s\0" % (ZERO.encode(), raw))
            else:
                sha = self.run("hash-object", "-w", "--stdin", input=data).strip()
                lines.append(b"100644 %s\t%s\0" % (sha, raw))
        with tempfile.TemporaryDirectory(prefix="sim-index-") as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
            self.run("read-tree", base_tree, env=env)
            self.run("update-index", "-z", "--index-info", input=b"".join(lines), env=env)
            return self.run("write-tree", env=env).decode().strip()

    def commit_tree(self, tree: str, parents: list[str], message: str, who: str, when: int) -> str:
        args = [arg for parent in parents for arg in ("-p", parent)]
        made = self.run("commit-tree", tree, *args, input=message.encode(), env=identity_env(who, when))
        return made.decode().strip()

    def fast_import(self, commits: Iterable[bytes], *options: str) -> None:
        """``git fast-import`` of ``commits`` (their commands, without ``done``), fed as they
        come, stored as one pack however few its objects."""
        command = ["git", "--git-dir", self.path, "-c", "fastimport.unpackLimit=0", "fast-import", "--quiet", "--done"]
        proc = subprocess.Popen([*command, *options], stdin=subprocess.PIPE, env={**os.environ, **_ENV})
        assert proc.stdin is not None
        with proc.stdin:
            for commit in commits:
                proc.stdin.write(commit)
            proc.stdin.write(b"done\n")
        if proc.wait() != 0:
            raise GitError(f"git fast-import: exit {proc.returncode}")


def init_bare(path: str, branch: str) -> Repo:
    git("init", "--quiet", "--bare", "--template=", f"--initial-branch={branch}", path)  # no sample hooks
    return Repo(path)


def clone_bare(remote: str, path: str, branch: str) -> Repo:
    """``git clone --bare`` (of a local path, git's own way: objects hard-linked), with
    ``refs/remotes/origin/<branch>`` at the branch: the remote tip the clone has seen,
    as a non-bare clone records it."""
    git("clone", "--quiet", "--bare", "--template=", remote, path)
    repo = Repo(path)
    repo.run("update-ref", f"refs/remotes/origin/{branch}", f"refs/heads/{branch}")
    return repo
