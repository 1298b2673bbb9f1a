"""A world for one scenario: an origin (bare) with a synthetic corpus, the
service's bare clone, a real ``hotreload serve`` on a loopback port, and the
levers the scenarios pull: outside authors committing to the origin, the remote
going away and coming back, the server killed and restarted.

The service is driven only through HTTP and its CLI. Worlds are written and read
with git's own plumbing (simulator/git.py) and the simulator's own corpus
(simulator/corpus.py): nothing here comes from the service it checks. The world
reads the clone's refs directly (read-only) to check the invariants.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from simulator import corpus
from simulator.git import Objects, Repo, clone_bare, git
from simulator.server import GitDaemon, ServerProcess, free_ports
from simulator.truth import to_toml

BRANCH = "published"
OUTSIDE_AUTHOR = "Outside Author <outside@example.org>"


@dataclass
class Replica:
    """One ``hotreload serve`` of the cluster and its own bare clone of the origin."""

    clone: str
    port: int = 0
    server: ServerProcess | None = None


class World:
    def __init__(self, records: int = 40, push_backoff_seconds: float = 0.2, seed: int = 11,
                 history: int = 0, transport: str = "local", clone: bool = True, replicas: int = 1,
                 poll_seconds: float = 0.0, peers: bool = True, network_timeout_seconds: float | None = None,
                 write_ack: str | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix="hotreload-sim-")
        self.origin = os.path.join(self.root, "origin.git")
        self.away = os.path.join(self.root, "origin-away.git")
        self.objects = Objects()
        """What the world's repositories were read to hold, by object id (shared: ids name content)."""
        made = corpus.make_records(records, seed)
        corpus.write(self.origin, corpus.files(made, seed), BRANCH, made["people"], history, seed, deltas=True)
        # the production transport: git daemon on loopback, dulwich's network client
        self.stall_flag = os.path.join(self.root, "remote-stalled")
        self.stall_log = os.path.join(self.root, "stall-held")
        """A line per request the stall held (:meth:`stalled_requests`)."""
        self.late_log = os.path.join(self.root, "late-pushes")
        """A line per ref update the remote held while slow to apply (:meth:`late_pushes`)."""
        self.daemon = GitDaemon(self.root, access_hook=self._stall_hook()) if transport == "git" else None
        self.remote = self.daemon.url("origin.git") if self.daemon else self.origin
        # a cluster's replicas know each other's ports before any starts (CFP_RELOAD_PEERS)
        ports = free_ports(replicas) if replicas > 1 else [0]
        self.replicas = [Replica(os.path.join(self.root, "clone.git" if i == 0 else f"clone-{i}.git"), port)
                         for i, port in enumerate(ports)]
        self.active = 0
        """The replica the steps and checks talk to (``server``, ``clone``)."""
        if clone:  # else the service clones at its first start
            for replica in self.replicas:
                clone_bare(self.remote, replica.clone, BRANCH)
        self.secret = secrets.token_urlsafe(36)
        self.write_token = secrets.token_urlsafe(24)
        self.push_backoff_seconds = push_backoff_seconds
        self.poll_seconds = poll_seconds
        self.network_timeout_seconds = network_timeout_seconds
        self.peers = peers and replicas > 1
        self.write_ack = write_ack

    @property
    def replica(self) -> Replica:
        return self.replicas[self.active]

    @property
    def clone(self) -> str:
        return self.replica.clone

    @property
    def server(self) -> ServerProcess | None:
        return self.replica.server

    @server.setter
    def server(self, value: ServerProcess | None) -> None:
        self.replica.server = value

    @contextmanager
    def on(self, index: int) -> Iterator[Replica]:
        """Steps and checks inside talk to replica ``index``."""
        if not 0 <= index < len(self.replicas):
            raise AssertionError(f"replica {index}: the world has {len(self.replicas)} (0-{len(self.replicas) - 1})")
        previous, self.active = self.active, index
        try:
            yield self.replicas[index]
        finally:
            self.active = previous

    # -- the service --------------------------------------------------------------

    def env(self, replica: Replica | None = None) -> dict[str, str]:
        """The environment of the active replica's ``serve`` (or ``replica``'s)."""
        env = {
            "CFP_DATA_REPO_PATH": (replica or self.replica).clone, "CFP_DATA_REMOTE": self.remote,
            "CFP_DATA_BRANCH": BRANCH, "CFP_DATA_RELOAD_SECRET": self.secret,
            "CFP_API_WRITE_TOKEN": self.write_token,
            "CFP_DATA_PUSH_BACKOFF_SECONDS": str(self.push_backoff_seconds),
            "CFP_DATA_PUSH_BACKOFF_CAP_SECONDS": str(max(self.push_backoff_seconds * 4, 1.0)),
            "CFP_DATA_POLL_SECONDS": str(self.poll_seconds),
        }
        if self.network_timeout_seconds is not None:
            env["CFP_DATA_NETWORK_TIMEOUT_SECONDS"] = str(self.network_timeout_seconds)
        if self.write_ack is not None:
            env["CFP_WRITE_ACK"] = self.write_ack
        if self.peers:
            env["CFP_RELOAD_PEERS"] = ",".join(f"127.0.0.1:{r.port}" for r in self.replicas)
        return env

    def start_server(self) -> ServerProcess:
        self.server = ServerProcess(self.env(), port=self.replica.port).start()
        return self.server

    def start_all(self) -> None:
        for i in range(len(self.replicas)):
            with self.on(i):
                self.start_server()

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.proc is not None and self.server.proc.poll() is None

    def kill_server(self) -> None:
        if self.server is not None:
            self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.server is not None:
                replica.server.stop()

    def close(self) -> None:
        self.stop_all()
        self.remote_up()  # requests held by a stall end
        if self.daemon is not None:
            self.daemon.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the remote -----------------------------------------------------------------

    @property
    def remote_is_down(self) -> bool:
        return os.path.exists(self.away)

    def remote_down(self) -> None:
        if not self.remote_is_down:
            os.rename(self.origin, self.away)

    def remote_up(self) -> None:
        if self.remote_is_down:
            os.rename(self.away, self.origin)
        with contextlib.suppress(FileNotFoundError):  # the stall ends
            os.remove(self.stall_flag)

    def remote_stalled(self) -> None:
        """The remote accepts connections and never answers them (git:// worlds): until
        :meth:`remote_up`, git daemon's access hook holds each request; then refuses the ones it
        held (their connections close, as a hung server's would when it restarts) and serves
        the rest. The daemon keeps its port throughout. (Stopping it, listening on its port from
        here, then starting it again there failed now and then: EADDRINUSE while a connection
        the stopped daemon had accepted was still open, or a restarted daemon that exited at
        once. The remote then stayed away for good, and every replica behind its tip.)"""
        assert self.daemon is not None, "remote-stalled needs world.transport = \"git\""
        with open(self.stall_flag, "w"):
            pass

    def _stall_hook(self) -> str:
        """git daemon's ``--access-hook``, holding requests while :attr:`stall_flag` exists."""
        hook = os.path.join(self.root, "stall-hook")
        flag = shlex.quote(self.stall_flag)
        with open(hook, "w") as fh:
            fh.write(f"#!/bin/sh\n[ -e {flag} ] || exit 0\necho held >> {shlex.quote(self.stall_log)}\n"
                     f"while [ -e {flag} ]; do sleep 0.05; done\nexit 1\n")
        os.chmod(hook, 0o755)
        return hook

    def remote_slow_to_apply(self, seconds: float) -> None:
        """The remote waits ``seconds`` before it applies each push (a pre-receive hook: the ref
        moves after the pusher may have given up); 0: it applies at once again. The hook first
        notes each ref update it holds, and the remote keeps a reflog from then on, which says
        which of them it applied (:meth:`late_pushes`)."""
        hook = os.path.join(self.origin, "hooks", "pre-receive")
        if not seconds:
            with contextlib.suppress(FileNotFoundError):
                os.remove(hook)
            return
        git("--git-dir", self.origin, "config", "core.logAllRefUpdates", "true")
        os.makedirs(os.path.dirname(hook), exist_ok=True)
        with open(hook, "w") as fh:
            fh.write(f"#!/bin/sh\ncat >> {shlex.quote(self.late_log)}\nsleep {seconds:g}\n")
        os.chmod(hook, 0o755)

    def stalled_requests(self) -> int:
        """How many requests :meth:`remote_stalled` has held so far."""
        try:
            with open(self.stall_log) as fh:
                return len(fh.read().split())
        except FileNotFoundError:
            return 0

    def late_pushes(self) -> tuple[int, list[str]]:
        """How many ref updates :meth:`remote_slow_to_apply` has held so far, and the new commit
        of each of them that the remote then applied (late), as its reflog tells."""
        try:
            with open(self.late_log) as fh:
                held = [tuple(line.split()) for line in fh if len(line.split()) == 3]
        except FileNotFoundError:
            return 0, []
        applied: set[tuple[str, ...]] = set()
        for ref in {h[2] for h in held}:
            with contextlib.suppress(FileNotFoundError), open(os.path.join(self.origin, "logs", ref)) as fh:
                applied.update((line.split()[0], line.split()[1], ref) for line in fh if len(line.split()) > 2)
        return len(held), [h[1] for h in held if h in applied]

    def _origin_path(self) -> str:
        # an outside author commits on the remote's own host, reachable or not
        return self.away if self.remote_is_down else self.origin

    def repo(self, path: str) -> Repo:
        """One of the world's repositories, read and written with git's plumbing."""
        return Repo(path, self.objects)

    def _head(self, path: str) -> str:
        head = self.repo(path).branch_commit(BRANCH)
        assert head is not None, f"{path} has no {BRANCH} branch"
        return head

    def origin_repo(self) -> Repo:
        return self.repo(self._origin_path())

    def origin_head(self) -> str:
        return self._head(self._origin_path())

    def origin_conflict_branches(self) -> list[str]:
        return sorted(ref for ref in self.origin_repo().refs_under("refs/heads/")
                      if ref.startswith(("refs/heads/conflicts/", "refs/heads/conflicts-")))

    def origin_is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.origin_repo().is_ancestor(ancestor, descendant)

    def upstream(self, changes: list[dict[str, Any]], message: str = "Upstream change",
                 author: str = OUTSIDE_AUTHOR) -> str:
        """Commit ``changes`` to the origin's branch as an outside author. When the branch
        moves meanwhile (the service's push daemon pushed), they commit again on the new
        tip, as someone whose push was rejected pulls and pushes again."""
        for attempt in range(50):
            repo = self.origin_repo()
            parent = repo.branch_commit(BRANCH)
            assert parent is not None
            files: dict[str, bytes | None] = {}
            for change in changes:
                files.update(self._files_for(repo, parent, change, files))
            tree = repo.write_tree(repo.commit(parent).tree, files)
            commit = repo.commit_tree(tree, [parent], message + "\n", author, int(time.time()))
            if repo.set_ref(f"refs/heads/{BRANCH}", commit, parent):  # else moved, or a push holds its lock
                return commit
            time.sleep(0.01 * (attempt + 1))
        raise RuntimeError("the origin kept moving while the outside author committed (50 attempts)")

    def _files_for(self, repo: Repo, parent: str, change: dict[str, Any],
                   pending: dict[str, bytes | None]) -> dict[str, bytes | None]:
        op = change["op"]
        if op == "raw":
            path = change["path"]
            if change.get("escaped"):  # \xNN in the path: bytes that need not be UTF-8
                path = path.encode("latin-1").decode("unicode_escape").encode("latin-1").decode(
                    "utf-8", "surrogateescape")
            return {path: None if change.get("remove") else change["content"].encode()}
        sheet, slug = change["sheet"], change["slug"]
        path = f"{sheet}/{slug}.toml"
        extra = dict(change.get("fields", {}))
        if op == "add":
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            name = {"title": slug.replace("-", " ").title()} if sheet == "projects" else \
                   {"fullName": slug.replace("-", " ").title()}
            fields = {"id": str(uuid.uuid4()), "slug": slug, **name, "createdAt": stamp,
                      "updatedAt": stamp, **extra}
            return {path: to_toml(fields)}
        current = pending.get(path) or repo.read_path(parent, path)
        if current is None:
            raise RuntimeError(f"upstream {op}: {path} does not exist on the origin")
        if op == "delete":
            return {path: None}
        fields = tomllib.loads(current.decode())
        if op == "modify":
            fields.update(extra)
            return {path: to_toml(fields)}
        # rename: the record moves to its new slug's path
        fields.update(extra)
        old_slug, fields["slug"] = fields["slug"], change["to"]
        moved: dict[str, bytes | None] = {path: None, f"{sheet}/{change['to']}.toml": to_toml(fields)}
        if change.get("history"):  # as the seed's writer does: the old slug redirects for 90 days
            now = dt.datetime.now(dt.UTC)
            kind = "project" if sheet == "projects" else "person"
            moved[f"slug-history/{kind}/{old_slug}.toml"] = to_toml({
                "id": str(uuid.uuid4()), "entityType": kind, "oldSlug": old_slug, "newSlug": change["to"],
                "entityId": fields["id"], "changedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "expiresAt": (now + dt.timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")})
        return moved

    def rewind_origin(self) -> tuple[str, str]:
        """An operator's force-push of the branch back one commit (old, new tip)."""
        repo = self.origin_repo()
        old = self._head(repo.path)
        parents = repo.commit(old).parents
        assert parents, "nothing to rewind: the origin's branch is a root commit"
        repo.set_ref(f"refs/heads/{BRANCH}", parents[0])
        return old, parents[0]

    def reimport_origin(self) -> tuple[str, str]:
        """The branch replaced by an unrelated history: one root commit holding the
        same tree, as a fresh re-import would (old, new tip)."""
        repo = self.origin_repo()
        old = self._head(repo.path)
        new = repo.commit_tree(repo.commit(old).tree, [], "Re-import\n", OUTSIDE_AUTHOR, int(time.time()))
        repo.set_ref(f"refs/heads/{BRANCH}", new)
        return old, new

    def block_conflicts_namespace(self) -> None:
        """A branch named ``conflicts`` on the origin and in the clone (as a clone
        made after someone created it would have)."""
        for path in (self._origin_path(), self.clone):
            self.repo(path).set_ref("refs/heads/conflicts", self._head(path))

    def second_instance(self) -> tuple[int, str]:
        """Start another ``hotreload serve`` on the same clone: (exit code, stderr)."""
        proc = subprocess.run([sys.executable, "-m", "hotreload.cli", "serve", "--port", "0"],
                              env={**os.environ, **self.env()}, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stderr

    def try_start_server(self) -> tuple[bool, str]:
        """Start the service, which may refuse to (True if it serves; its log)."""
        server = ServerProcess(self.env(), port=self.replica.port)
        try:
            self.server = server.start()
            return True, server.log()
        except RuntimeError as exc:
            return False, str(exc)

    # -- the clone (read-only) -------------------------------------------------------

    def local_repo(self) -> Repo:
        return self.repo(self.clone)

    def local_head(self) -> str:
        return self._head(self.clone)
