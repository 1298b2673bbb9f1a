"""Boot: from Settings to a running set of use cases (no HTTP here), in the steps of :func:`boot`.

Start-up never crash-loops on data: if the branch head does not build, the service serves the
newest first-parent ancestor that does (refusing writes and saying why in health and the log)
until a reload serves a head that builds; a reconcile that fails at start is logged and the
local branch served.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from hotreload.config import ConfigError, Settings
from hotreload.data.cache import SnapshotCache, remove_leftovers
from hotreload.data.records import RecordError
from hotreload.data.snapshot import Snapshot, SnapshotHolder, build_full
from hotreload.git.push import PushDaemon
from hotreload.git.remotes import Remote, without_credentials
from hotreload.git.repo import GitError, GitRepo, NotABareRepository, clone_bare, origin_url
from hotreload.git.upkeep import UpkeepDaemon
from hotreload.metrics import Metrics
from hotreload.service.events import EventHub
from hotreload.service.lock import DataLock
from hotreload.service.notify import Notifier
from hotreload.service.peers import PeerNotifier
from hotreload.service.poll import Poller
from hotreload.service.reloader import FetchFailed, RebuildFailed, Reloader
from hotreload.service.writer import Writer

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The service cannot start; the message says what to fix."""


@dataclass
class Runtime:
    settings: Settings
    repo: GitRepo
    branch: str
    remote: Remote | None
    holder: SnapshotHolder
    lock: DataLock
    metrics: Metrics
    reloader: Reloader
    writer: Writer
    push_daemon: PushDaemon | None
    events: EventHub
    upkeep: UpkeepDaemon | None = None
    instance_lock: IO[str] | None = None
    poller: Poller | None = None
    peers: PeerNotifier | None = None
    snapshot_cache: SnapshotCache | None = None
    notifier: Notifier | None = None

    def close(self) -> None:
        self.events.close()
        for sender in (self.notifier, self.peers):
            if sender is not None:
                sender.close()
        for daemon in (self.poller, self.upkeep, self.push_daemon):
            if daemon is not None:
                daemon.stop()
        if self.snapshot_cache is not None and self.instance_lock is not None:
            _save_cache(self.snapshot_cache, self.holder, "stop")
        self.repo.close()
        if self.instance_lock is not None:
            self.instance_lock.close()  # releases the lock
            self.instance_lock = None


INSTANCE_LOCK = "hotreload.pid.lock"


def take_instance_lock(repo_path: str) -> IO[str]:
    """An exclusive OS lock on a file inside the clone, held for the life of the
    process: a second process on the same clone (a rolling deploy on a shared
    volume) stops at once instead of racing this one for refs."""
    path = os.path.join(repo_path, INSTANCE_LOCK)
    handle = open(path, "a+")  # noqa: SIM115 - held until Runtime.close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StartupError(
            f"CFP_DATA_REPO_PATH: another hotreload process (pid {holder}) is serving {repo_path}; "
            "each process needs its own clone (stop that one, or give this one another path)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _newest_that_builds(repo: GitRepo, branch: str, head: str, error: Exception,
                        attempts: int = 10) -> Snapshot:
    """The snapshot of the newest first-parent ancestor of ``head`` that builds:
    after a record error, go back to just before the failing file last changed;
    after any other error, one commit back."""
    commit = head
    for _ in range(attempts):
        if isinstance(error, RecordError):
            older = _before_change(repo, commit, error.tree_path)
        else:
            parents = repo.commit(commit).parents
            older = parents[0].decode() if parents else None
        if older is None:
            break
        try:
            return build_full(repo, older)
        except Exception as exc:  # whatever stops this commit, try an older one
            commit, error = older, exc
    raise StartupError(f"the data on {branch} ({head[:12]}) does not build: {error}, and no earlier "
                       "commit builds either; fix the record on the branch, or point CFP_DATA_BRANCH "
                       "at valid data")


def _before_change(repo: GitRepo, commit: str, path: str) -> str | None:
    """The newest first-parent ancestor of ``commit`` whose ``path`` differs."""
    wanted = repo.blob_at(repo.tree_of(commit), path)
    current = repo.commit(commit)
    while current.parents:
        parent = current.parents[0].decode()
        if repo.blob_at(repo.tree_of(parent), path) != wanted:
            return parent
        current = repo.commit(parent)
    return None


def _save_cache(cache: SnapshotCache, holder: SnapshotHolder, when: str) -> None:
    """Write the served snapshot as the cache, unless this process read or wrote the
    cache at that commit already, or it is not the branch head (degraded). A failure
    is logged: the cache only ever saves time."""
    if holder.degraded is not None or cache.holds == holder.current.commit:
        return
    try:
        cache.save(holder.current, when)
    except Exception:  # the next start builds in full
        log.exception("could not write the snapshot cache %s", cache.path)


def remote_of(settings: Settings, url: str) -> Remote:
    """``url`` with the network settings that reach it (timeout, credentials from files,
    the bound on what it sends)."""
    return Remote(url, settings.network_timeout_s, settings.username, settings.password_file,
                  settings.ssh_key_file, settings.ssh_known_hosts_file, settings.ssh_command, settings.ca_file,
                  settings.max_object_bytes)


def open_repository(settings: Settings) -> GitRepo:
    path = settings.repo_path
    remote = remote_of(settings, settings.remote) if settings.remote else None
    if not os.path.exists(path):
        if remote is None:
            raise ConfigError(
                f"CFP_DATA_REPO_PATH={path} does not exist and CFP_DATA_REMOTE is not set: "
                "create the repository (git clone --bare <remote> PATH) or set CFP_DATA_REMOTE "
                "so it is cloned at start"
            )
        return _clone(remote, path, settings.branch)
    if _is_empty_repository(path) and remote is not None:
        # an earlier version's failed first clone: nothing in it to lose
        log.warning("%s is an empty repository left by a failed clone; cloning again", path)
        shutil.rmtree(path)
        return _clone(remote, path, settings.branch)
    try:
        return GitRepo(path)
    except NotABareRepository as exc:
        raise ConfigError(f"CFP_DATA_REPO_PATH: {exc}; point it at a bare clone "
                          "(git clone --bare <remote> PATH)") from None


def _clone(remote: Remote, path: str, branch: str | None) -> GitRepo:
    """Clone into a temporary sibling, renamed into place when complete: a clone
    that fails (or is killed) leaves nothing at ``path``, and the next start tries
    again."""
    log.info("cloning %s into %s", remote, path)
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".hotreload-clone-", dir=parent)
    target = os.path.join(tmp, "clone.git")
    try:
        clone_bare(remote, target, branch).close()
        os.rename(target, path)
    except GitError as exc:
        raise StartupError(f"CFP_DATA_REMOTE: {exc}; nothing was left at {path}; the next start "
                           "clones again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return GitRepo(path)


def _is_empty_repository(path: str) -> bool:
    refs = os.path.join(path, "refs", "heads")
    objects = os.path.join(path, "objects", "pack")
    return (os.path.isdir(refs) and not any(os.scandir(refs))
            and not os.path.exists(os.path.join(path, "packed-refs"))
            and os.path.isdir(objects) and not any(os.scandir(objects)))


def _forget_stored_credentials(repo: GitRepo, settings: Settings) -> None:
    """An earlier version stored CFP_DATA_REMOTE's credentials in the clone's config;
    with the remote set, the stored URL is never used: keep it without them."""
    stored = origin_url(repo)
    if not stored or without_credentials(stored) == stored:
        return
    if settings.remote is None:
        log.warning("%s stores credentials in remote.origin.url; set CFP_DATA_REMOTE (and "
                    "CFP_DATA_PASSWORD_FILE) and they are removed from the disk at the next start", repo.path)
        return
    config = repo.repo.get_config()
    config.set((b"remote", b"origin"), b"url", without_credentials(stored).encode())
    config.write_to_path()
    log.warning("removed the credentials stored in %s (remote.origin.url): they come from CFP_DATA_REMOTE "
                "or CFP_DATA_PASSWORD_FILE, and are never written to disk", repo.path)


def boot(settings: Settings, reconcile_at_start: bool = True, listen_port: int | None = None,
         phase: Callable[[str], object] = lambda step: None) -> Runtime:
    """The running service; ``phase`` hears each step of the start as it begins."""
    phase("opening the repository" if os.path.exists(settings.repo_path) else "cloning the remote")
    repo = open_repository(settings)
    instance_lock: IO[str] | None = None
    try:
        instance_lock = take_instance_lock(repo.path)
        repo.remove_stale_locks()  # a killed predecessor's: safe now that we hold the instance lock
        remove_leftovers(repo.path)
        _forget_stored_credentials(repo, settings)
        url = settings.remote or origin_url(repo)
        remote = remote_of(settings, url) if url else None
        if settings.write_ack == "remote" and remote is None:
            raise ConfigError("CFP_WRITE_ACK=remote needs a remote to acknowledge writes: set CFP_DATA_REMOTE "
                              "(or give the clone an origin), or use CFP_WRITE_ACK=local")
        branch, local = _served_branch(repo, settings)
        phase(f"loading {branch} at {local[:12]}")
        cache = SnapshotCache(repo.path) if settings.snapshot_cache else None
        runtime = _assemble(settings, repo, branch, remote, _load(repo, branch, local, cache), listen_port)
        runtime.instance_lock, runtime.snapshot_cache = instance_lock, cache
        if remote is not None and reconcile_at_start:
            phase(f"reconciling with {remote} (CFP_DATA_NETWORK_TIMEOUT_SECONDS={settings.network_timeout_s:g})")
            _reconcile_at_start(runtime.reloader)
        if runtime.push_daemon is not None:
            runtime.push_daemon.start()
        if settings.upkeep_seconds > 0:
            runtime.upkeep = UpkeepDaemon(repo, interval_s=settings.upkeep_seconds)
            runtime.upkeep.start()
        if remote is not None and settings.poll_seconds > 0:
            runtime.poller = Poller(runtime.reloader, repo, remote, branch, settings.poll_seconds, runtime.metrics)
            runtime.poller.start()
        return runtime
    except BaseException:
        repo.close()
        if instance_lock is not None:
            instance_lock.close()
        raise


def _served_branch(repo: GitRepo, settings: Settings) -> tuple[str, str]:
    """The branch to serve and its commit here."""
    branch = settings.branch or repo.head_branch()
    if branch is None:
        raise ConfigError(f"CFP_DATA_BRANCH is not set and {repo.path} has no HEAD branch; set it")
    local = repo.branch_commit(branch)
    if local is None:
        known = ", ".join(sorted(n.removeprefix("refs/heads/") for n in repo.refs_under(b"refs/heads/")))
        raise ConfigError(f"CFP_DATA_BRANCH: branch {branch!r} does not exist in {repo.path} "
                          f"(branches: {known or 'none'})")
    return branch, local


def _load(repo: GitRepo, branch: str, local: str, cache: SnapshotCache | None) -> SnapshotHolder:
    """The snapshot of ``local``, from the cache, else built in full (and cached before serving:
    a crash from here on restarts in O(change)), else the newest commit before it that builds."""
    snapshot = cache.load(repo, local) if cache is not None else None
    if snapshot is not None:
        return SnapshotHolder(snapshot, None)
    degraded = None
    try:
        snapshot = build_full(repo, local)
    except Exception as exc:  # a record, a missing object, anything: never a crash loop
        snapshot = _newest_that_builds(repo, branch, local, exc)
        degraded = (f"the data at {branch} ({local[:12]}) does not build: {exc}; serving "
                    f"{snapshot.commit[:12]}, the newest commit before it that does, and refusing "
                    "writes; fix the record on the branch and reload")
        log.error("hot-reload: %s", degraded, extra={"outcome": "degraded", "branch": branch, "headCommit": local,
                                                     "servedCommit": snapshot.commit,
                                                     "path": getattr(exc, "path", None)})
    log.info("loaded %s at %s in %.0f ms", branch, snapshot.commit[:12], snapshot.build_ms,
             extra={"commit": snapshot.commit, "records": snapshot.record_counts(),
                    "buildMs": round(snapshot.build_ms, 1), "from": "full build"})
    holder = SnapshotHolder(snapshot, degraded)
    if cache is not None:
        _save_cache(cache, holder, "start")
    return holder


def _assemble(settings: Settings, repo: GitRepo, branch: str, remote: Remote | None, holder: SnapshotHolder,
              listen_port: int | None) -> Runtime:
    """The use cases around ``holder``, and the metrics that watch them (nothing runs yet)."""
    metrics = Metrics()
    metrics.watch_records(lambda: holder.current.record_counts())
    lock = DataLock(lambda hold: metrics.lock_hold.labels(hold.reason).observe(hold.held_ms / 1000))
    push_daemon = None
    if remote is not None:
        push_daemon = PushDaemon(repo, remote, branch, metrics, settings.push_backoff_seconds,
                                 settings.push_backoff_cap_seconds)
        metrics.watch("hotreload_push_pending", "Local commits the remote is not known to have",
                      lambda: push_daemon.status().pending)
    events = EventHub(metrics, settings.events_max_subscribers)
    holder.on_swap = events.publish
    reloader = Reloader(repo, holder, lock, branch, remote, metrics, push_daemon)
    metrics.watch("hotreload_reload_in_flight_seconds", "How long the reload running now has run (0: none runs)",
                  lambda: time.time() - flight.since if (flight := reloader.in_flight()) else 0.0)
    writer = Writer(repo, holder, lock, branch, push_daemon, ack=settings.write_ack, remote=remote,
                    reconcile=lambda: reloader.reload(trigger="push-rejected"),
                    ack_timeout_s=settings.network_timeout_s)
    runtime = Runtime(settings, repo, branch, remote, holder, lock, metrics, reloader, writer, push_daemon, events)
    if settings.notify_urls and settings.notify_secret:
        runtime.notifier = Notifier(settings.notify_urls, settings.notify_secret, settings.network_timeout_s, metrics)
        events.listeners.append(runtime.notifier.put)
    if push_daemon is not None:
        # another replica (or author) moved the branch: rebase our writes onto it now
        push_daemon.on_rejected = lambda: reloader.reload(trigger="push-rejected")
    if settings.reload_peers:
        runtime.peers = PeerNotifier(settings.reload_peers, settings.reload_secret, metrics, listen_port)
    return runtime


def _reconcile_at_start(reloader: Reloader) -> None:
    """One reconcile before serving, through the reloader, so even the first fast-forward is
    validated before the ref moves; whatever goes wrong, the local branch is served."""
    try:
        result = reloader.reload(trigger="startup")
        log.info("start-up reconcile: %s", result.outcome,
                 extra={"outcome": result.outcome, "oldCommit": result.old_commit,
                        "newCommit": result.new_commit, "ahead": result.ahead, "behind": result.behind})
    except FetchFailed as exc:
        log.warning("start-up reconcile: fetch failed; serving the local branch: %s", exc)
    except RebuildFailed as exc:
        log.error("start-up reconcile: the remote's data is invalid; serving the local "
                  "branch: %s", exc, extra={"commit": exc.commit, "path": exc.path})
    except Exception:  # whatever it was, serve what we have; health says degraded
        log.exception("start-up reconcile failed; serving the local branch")
