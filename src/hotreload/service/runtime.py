"""Boot: from Settings to a running set of use cases (no HTTP here).

Order: open the bare repository (cloning it from the remote if absent), resolve
the branch, build the snapshot of the branch in full, then reconcile once with
the remote through the reloader, so even the first fast-forward is validated
before the ref moves.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from hotreload.config import ConfigError, Settings
from hotreload.data.records import RecordError
from hotreload.data.snapshot import SnapshotHolder, build_full
from hotreload.git.push import PushDaemon
from hotreload.git.repo import GitError, GitRepo, NotABareRepository, clone_bare, origin_url, redact
from hotreload.git.upkeep import UpkeepDaemon
from hotreload.metrics import Metrics
from hotreload.service.lock import DataLock
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
    remote: str | None
    holder: SnapshotHolder
    lock: DataLock
    metrics: Metrics
    reloader: Reloader
    writer: Writer
    push_daemon: PushDaemon | None
    upkeep: UpkeepDaemon | None = None

    def close(self) -> None:
        if self.upkeep is not None:
            self.upkeep.stop()
        if self.push_daemon is not None:
            self.push_daemon.stop()
        self.repo.close()


def open_repository(settings: Settings) -> GitRepo:
    path = settings.repo_path
    if not os.path.exists(path):
        if settings.remote is None:
            raise ConfigError(
                f"CFP_DATA_REPO_PATH={path} does not exist and CFP_DATA_REMOTE is not set: "
                "create the repository (git clone --bare <remote> PATH) or set CFP_DATA_REMOTE "
                "so it is cloned at start"
            )
        log.info("cloning %s into %s", redact(settings.remote), path)
        try:
            return clone_bare(settings.remote, path, settings.branch)
        except GitError as exc:
            raise StartupError(f"CFP_DATA_REMOTE: {exc}") from None
    try:
        return GitRepo(path)
    except NotABareRepository as exc:
        raise ConfigError(f"CFP_DATA_REPO_PATH: {exc}; point it at a bare clone "
                          "(git clone --bare <remote> PATH)") from None


def boot(settings: Settings, reconcile_at_start: bool = True) -> Runtime:
    repo = open_repository(settings)
    repo.remove_stale_locks()  # a killed predecessor's; the service owns its clone alone
    remote = settings.remote or origin_url(repo)
    branch = settings.branch or repo.head_branch()
    if branch is None:
        raise ConfigError(f"CFP_DATA_BRANCH is not set and {repo.path} has no HEAD branch; set it")
    local = repo.branch_commit(branch)
    if local is None:
        known = ", ".join(sorted(n.removeprefix("refs/heads/") for n in repo.refs_under(b"refs/heads/")))
        raise ConfigError(f"CFP_DATA_BRANCH: branch {branch!r} does not exist in {repo.path} "
                          f"(branches: {known or 'none'})")
    try:
        snapshot = build_full(repo, local)
    except RecordError as exc:
        raise StartupError(f"the data on {branch} ({local[:12]}) is invalid: {exc}; fix the record "
                           "on the branch, or point CFP_DATA_BRANCH at valid data") from None
    log.info("loaded %s at %s in %.0f ms", branch, local[:12], snapshot.build_ms,
             extra={"commit": local, "records": snapshot.record_counts(),
                    "buildMs": round(snapshot.build_ms, 1)})
    holder = SnapshotHolder(snapshot)
    metrics = Metrics()
    metrics.watch_records(lambda: holder.current.record_counts())
    lock = DataLock(lambda hold: metrics.lock_hold.labels(hold.reason).observe(hold.held_ms / 1000))
    push_daemon = None
    if remote is not None:
        push_daemon = PushDaemon(repo, remote, branch, metrics, settings.push_backoff_seconds,
                                 settings.push_backoff_cap_seconds)
    reloader = Reloader(repo, holder, lock, branch, remote, metrics, push_daemon)
    writer = Writer(repo, holder, lock, branch, push_daemon)
    runtime = Runtime(settings, repo, branch, remote, holder, lock, metrics, reloader, writer,
                      push_daemon)
    if remote is not None and reconcile_at_start:
        try:
            result = reloader.reload()
            log.info("start-up reconcile: %s", result.outcome,
                     extra={"outcome": result.outcome, "oldCommit": result.old_commit,
                            "newCommit": result.new_commit})
        except FetchFailed as exc:
            log.warning("start-up reconcile: fetch failed; serving the local branch: %s", exc)
        except RebuildFailed as exc:
            log.error("start-up reconcile: the remote's data is invalid; serving the local "
                      "branch: %s", exc, extra={"commit": exc.commit, "path": exc.path})
    if push_daemon is not None:
        push_daemon.start()
    if settings.upkeep_seconds > 0:
        runtime.upkeep = UpkeepDaemon(repo, interval_s=settings.upkeep_seconds)
        runtime.upkeep.start()
    return runtime
