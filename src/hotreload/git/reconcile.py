"""The reconcile state machine: bring the local branch L in line with the remote R.

=================  =====================  ==========================================
condition          outcome                what moves
=================  =====================  ==========================================
fetch raised       ``fetch-failed``       nothing
L == R             ``in-sync``            nothing
L ancestor of R    ``fast-forwarded``     L := R (CAS)
R ancestor of L    ``pushed-ahead``       R := L on the remote (failure not fatal)
diverged, clean    ``rebased``            L := L' (local commits replayed onto R, CAS);
                                          R := L' on the remote
diverged, conflict ``conflict-escaped``   ``conflicts/<UTC time>`` := old L (local and
                                          pushed); L := R (CAS)
R lacks the last  ``remote-rewritten``    L := R plus the local commits the remote never
remote tip seen                           had, replayed (CAS), pushed; on a conflict old
                                          L goes to ``conflicts/<UTC time>``, L := R
=================  =====================  ==========================================

**Remote rewrites.** ``refs/remotes/origin/<b>`` is the last remote tip this clone
saw. If the remote's new tip does not contain it, someone rewrote the remote (a
force-push rewind to remove data, a re-import with an unrelated root). The remote
wins: commits it once had are never pushed back (they are not "ahead", they were
removed); only local commits it never had are replayed onto the new tip.

The work is split so the caller can keep the slow part outside its data lock: the
fetch (:meth:`GitRepo.fetch_branch`), :func:`plan` (pure decision; a rebase writes its
replayed commits to the object store but moves no ref), :func:`apply` (the ref moves,
a CAS against the observed L, raising :class:`BranchMoved` if L moved meanwhile),
and :func:`push_result` (network again). :func:`reconcile` runs all four.
No history on the remote is ever rewritten: every push is a fast-forward.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from hotreload.git.repo import (
    API_IDENTITY,
    BranchMoved,
    GitError,
    GitRepo,
    Remote,
    Signature,
    branch_ref,
    tracking_ref,
)

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Outcome(StrEnum):
    IN_SYNC = "in-sync"
    FAST_FORWARDED = "fast-forwarded"
    PUSHED_AHEAD = "pushed-ahead"
    REBASED = "rebased"
    CONFLICT_ESCAPED = "conflict-escaped"
    FETCH_FAILED = "fetch-failed"
    REMOTE_REWRITTEN = "remote-rewritten"


@dataclass(frozen=True)
class Plan:
    outcome: Outcome
    local: str
    """The local commit observed when planning: the CAS expectation."""
    remote: str | None
    new_commit: str
    """Where the local branch points after :func:`apply`."""
    ahead: int = 0
    behind: int = 0
    conflict_paths: tuple[str, ...] = ()
    rewritten_from: str | None = None
    """The remote tip seen before, which the remote no longer contains."""
    keeps_conflict_branch: bool = False
    """Old L goes to a ``conflicts/...`` branch (a conflict, or a rewrite that could
    not keep every local commit)."""
    last_seen: str | None = None
    """The remote tip the plan compared with (:meth:`GitRepo.last_seen`): applied, a rewrite
    it names is handled (decision 150)."""

    @property
    def moves_branch(self) -> bool:
        return self.new_commit != self.local

    def escape(self, reason: str) -> Plan:
        """The conflict escape hatch for this divergence: keep L on a conflict
        branch and take R (used when a rebase merged cleanly but the merged data
        does not validate)."""
        assert self.remote is not None
        outcome = Outcome.REMOTE_REWRITTEN if self.rewritten_from else Outcome.CONFLICT_ESCAPED
        return replace(self, outcome=outcome, new_commit=self.remote, conflict_paths=(reason,),
                       keeps_conflict_branch=True)


@dataclass(frozen=True)
class ReconcileResult:
    outcome: Outcome
    old_commit: str
    new_commit: str
    ahead: int = 0
    behind: int = 0
    conflict_branch: str | None = None
    push_error: str | None = None
    rewritten_from: str | None = None
    conflict_paths: tuple[str, ...] = ()


def plan(repo: GitRepo, local: str, remote: str | None, now: Clock = utc_now,
         last_seen: str | None = None) -> Plan:
    """Decide the outcome for L=``local`` and R=``remote`` (None: the remote has no
    such branch yet, so pushing creates it); ``last_seen`` is the remote tip this
    clone last reconciled with (:meth:`GitRepo.last_seen`). One walk over the commits
    that differ answers every ancestry question (:meth:`GitRepo.compare`), confirmed from
    the commit objects (never from the commit-graph alone: the answer may drop or replay
    commits)."""
    return replace(_decide(repo, local, remote, now, last_seen), last_seen=last_seen)


def _decide(repo: GitRepo, local: str, remote: str | None, now: Clock, last_seen: str | None) -> Plan:
    if remote is not None and last_seen is not None and last_seen != remote \
            and repo.has_object(last_seen) and not repo.is_ancestor(last_seen, remote, confirmed=True):
        return _plan_rewritten(repo, local, remote, last_seen, now)
    if remote is None:
        return Plan(Outcome.PUSHED_AHEAD, local, None, local, ahead=repo.count_commits(local))
    if local == remote:
        return Plan(Outcome.IN_SYNC, local, remote, local)
    diff = repo.compare(local, remote, confirmed=True)  # it may drop or replay commits
    if diff.left_is_ancestor:
        return Plan(Outcome.FAST_FORWARDED, local, remote, remote, behind=len(diff.right_only))
    if diff.right_is_ancestor:
        return Plan(Outcome.PUSHED_AHEAD, local, remote, local, ahead=len(diff.left_only))
    return _plan_rebase(repo, local, remote, diff.left_only, len(diff.right_only), now)


def _plan_rewritten(repo: GitRepo, local: str, remote: str, last_seen: str, now: Clock) -> Plan:
    """The remote no longer contains ``last_seen``: serve the remote's tip, with
    the local commits it never had (not in ``last_seen``'s history, nor in the new
    one) replayed onto it."""
    never_pushed = set(repo.compare(last_seen, local, confirmed=True).right_only)
    mine = [sha for sha in repo.compare(local, remote, confirmed=True).left_only if sha in never_pushed]
    replay = _plan_rebase(repo, local, remote, mine, 0, now)  # a conflict keeps old L on its branch
    return replace(replay, outcome=Outcome.REMOTE_REWRITTEN, rewritten_from=last_seen)


def _plan_rebase(repo: GitRepo, local: str, remote: str, mine: Sequence[str], behind: int,
                 now: Clock) -> Plan:
    """Replay each local-only commit (``mine``, oldest first) onto R with a
    three-way tree merge (base = the commit's parent). Authors, dates and messages
    are kept; the committer is the API."""
    committer = Signature(API_IDENTITY, int(now().timestamp()), 0)
    tip = remote
    for sha in mine:
        commit = repo.commit(sha)
        tip_tree = repo.tree_of(tip)
        merged, conflicts = repo.merge_trees(
            repo.tree_of(commit.parents[0].decode()) if commit.parents else None, tip_tree, commit.tree.decode())
        if conflicts:
            return Plan(Outcome.CONFLICT_ESCAPED, local, remote, remote,
                        ahead=len(mine), behind=behind, conflict_paths=conflicts, keeps_conflict_branch=True)
        if merged == tip_tree:
            continue  # the remote already made this change: drop the commit, as git does
        tip = repo.write_commit(
            merged, [tip], commit.message.decode("utf-8", errors="replace"),
            author=Signature(commit.author, commit.author_time, commit.author_timezone),
            committer=committer,
        )
    return Plan(Outcome.REBASED, local, remote, tip, ahead=len(mine), behind=behind)


DIVERTED = b"refs/hotreload/diverted/"
"""``<this prefix><conflict branch>``: a diversion made here that no operator has cleared yet
(never pushed, so a clone made from the remote does not inherit another replica's)."""


def diverted_branches(repo: GitRepo) -> list[str]:
    """The conflict branches this clone diverted local commits to, not cleared yet."""
    return sorted(ref.removeprefix(DIVERTED.decode()) for ref in repo.refs_under(DIVERTED))


def clear_diverted(repo: GitRepo, branch: str) -> bool:
    """An operator has seen to ``branch``: stop reporting it (the branch itself stays)."""
    sha = repo.resolve(DIVERTED + branch.encode())
    return sha is not None and repo.cas_ref(DIVERTED + branch.encode(), sha, None)


def conflict_branch_name(when: dt.datetime) -> str:
    return "conflicts/" + when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H-%M-%SZ")


def apply(repo: GitRepo, plan: Plan, branch: str, now: Clock = utc_now) -> ReconcileResult:
    """Move the refs the plan calls for. Call under the data lock. Raises
    :class:`BranchMoved` (nothing changed) if L is no longer ``plan.local``."""
    conflict_branch = None
    if plan.keeps_conflict_branch:
        if repo.branch_commit(branch) != plan.local:
            raise BranchMoved(f"{branch} moved away from {plan.local[:12]}")
        conflict_branch = _create_conflict_branch(repo, plan.local, now())
        repo.set_ref(DIVERTED + conflict_branch.encode(), plan.local)  # health says so until cleared
    if plan.moves_branch and not repo.cas_ref(
        branch_ref(branch), plan.local, plan.new_commit, message=f"hotreload: {plan.outcome}"
    ):
        if conflict_branch:  # undo: the escape did not happen
            repo.cas_ref(DIVERTED + conflict_branch.encode(), plan.local, None)
            repo.cas_ref(branch_ref(conflict_branch), plan.local, None)
        raise BranchMoved(f"{branch} moved away from {plan.local[:12]}")
    repo.forget_rewrite(branch, plan.last_seen)
    return ReconcileResult(plan.outcome, plan.local, plan.new_commit, plan.ahead, plan.behind,
                           conflict_branch, rewritten_from=plan.rewritten_from, conflict_paths=plan.conflict_paths)


def _create_conflict_branch(repo: GitRepo, commit: str, when: dt.datetime) -> str:
    """``conflicts/<UTC time>`` (``-1``, ``-2``, ... when taken). A branch named
    ``conflicts`` blocks that namespace (a ref cannot be both a file and a
    folder): then ``conflicts-<UTC time>``, and the log says so."""
    base = conflict_branch_name(when)
    if repo.resolve(branch_ref("conflicts")) is not None:
        fallback = base.replace("conflicts/", "conflicts-", 1)
        log.warning("a branch named 'conflicts' blocks the conflicts/ namespace; keeping the "
                    "local commits on %s instead", fallback, extra={"conflictBranch": fallback})
        base = fallback
    for attempt in range(1000):
        name = base if attempt == 0 else f"{base}-{attempt}"
        try:
            created = repo.cas_ref(branch_ref(name), None, commit, message="hotreload: conflict escape")
        except OSError as exc:  # e.g. a folder where the ref file should go
            raise GitError(f"could not create the conflict branch {name}: {exc}") from None
        if created:
            return name
    raise GitError(f"could not create a unique branch name from {base}")


def log_diversion(result: ReconcileResult, branch: str) -> None:
    """Local commits diverted from the branch (a rewrite, a conflict): an ERROR an operator must see."""
    if result.outcome is Outcome.REMOTE_REWRITTEN:
        log.error(
            "hot-reload: the remote rewrote %s: %s is no longer in its history; serving its tip "
            "%s (%d local commit(s) it never had replayed%s); nothing it removed is pushed back",
            branch, result.rewritten_from, result.new_commit, result.ahead,
            f", old branch kept on {result.conflict_branch}" if result.conflict_branch else "",
            extra={"outcome": str(result.outcome), "branch": branch, "rewrittenFrom": result.rewritten_from,
                   "oldCommit": result.old_commit, "newCommit": result.new_commit,
                   "conflictBranch": result.conflict_branch},
        )
    elif result.outcome is Outcome.CONFLICT_ESCAPED:
        log.error("conflict: local commits kept on %s; %s reset to the remote (%s)", result.conflict_branch,
                  branch, ", ".join(result.conflict_paths),
                  extra={"outcome": str(result.outcome), "conflictBranch": result.conflict_branch,
                         "oldCommit": result.old_commit, "newCommit": result.new_commit})


def push_result(repo: GitRepo, remote: str | Remote, branch: str, result: ReconcileResult) -> ReconcileResult:
    """Push what the outcome calls for. A failure is logged and recorded, never raised."""
    pushes: list[tuple[str, bytes]] = []
    if result.outcome in (Outcome.PUSHED_AHEAD, Outcome.REBASED) or (
            result.outcome is Outcome.REMOTE_REWRITTEN and result.ahead):
        # a rewrite pushes only local commits replayed on top of the remote's new tip
        pushes.append((result.new_commit, branch_ref(branch)))
    if result.conflict_branch:
        pushes.append((result.old_commit, branch_ref(result.conflict_branch)))
    errors = []
    for sha, ref in pushes:
        try:
            repo.push_ref(remote, sha, ref)
            if ref == branch_ref(branch):
                repo.set_ref(tracking_ref(branch), sha)  # the remote has it now: nothing pending
        except GitError as exc:
            log.warning("push after %s failed: %s", result.outcome, exc,
                        extra={"outcome": str(result.outcome), "ref": ref.decode()})
            errors.append(str(exc))
    return replace(result, push_error="; ".join(errors) or None)


def reconcile(repo: GitRepo, remote: str | Remote, branch: str, now: Clock = utc_now) -> ReconcileResult:
    """Fetch, plan, apply and push in one go (no data lock, no snapshot): for
    tools and tests. The service uses the steps separately (service/reloader.py)."""
    local = repo.branch_commit(branch)
    if local is None:
        raise GitError(f"branch {branch!r} does not exist in {repo.path}")
    last_seen = repo.last_seen(branch)
    try:
        remote_tip = repo.fetch_branch(remote, branch)
    except GitError as exc:
        log.warning("fetch failed: %s", exc, extra={"outcome": "fetch-failed"})
        return ReconcileResult(Outcome.FETCH_FAILED, local, local)
    the_plan = plan(repo, local, remote_tip, now, last_seen)
    result = apply(repo, the_plan, branch, now)
    log_diversion(result, branch)
    return push_result(repo, remote, branch, result)
