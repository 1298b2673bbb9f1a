"""``POST /api/_internal/reload-data``: the hot-reload webhook, its steps in the order of
specs/hot-reload.md, each answered before the next runs: size, credentials present, secret
configured, credentials valid (the hooks of api/auth.py); the body, or a git host's event;
the reload (pre-check, single-flight, reconcile, build, swap) and its table of results."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import falcon

from hotreload.api import auth, githosts
from hotreload.api.errors import ApiError, bad_request, parse_json
from hotreload.api.ratelimit import FailureLimiter, client_address
from hotreload.git import reconcile
from hotreload.service.peers import FORWARDED_HEADER, PASSED_HEADERS
from hotreload.service.reloader import FetchFailed, RebuildFailed, ReloadResult
from hotreload.service.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
COMMIT_HASH = re.compile(r"\A[0-9a-fA-F]{4,40}\Z")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
Responder = Callable[["ReloadResource", falcon.Request, falcon.Response], None]


def _observed(on_post: Responder) -> Responder:
    """Around the call, hooks included: ``X-Data-Commit`` on every answer, rejections counted, one log line."""

    @functools.wraps(on_post)
    def observed(self: ReloadResource, req: falcon.Request, resp: falcon.Response) -> None:
        started = time.perf_counter()
        status, outcome, data = 200, None, {}
        resp.set_header("X-Data-Commit", self.runtime.holder.current.commit)  # errors carry it too
        try:
            on_post(self, req, resp)
            status, data = resp.status_code, resp.media["data"]
            outcome = data.get("outcome")
        except ApiError as exc:
            status, outcome = exc.status, (exc.details or {}).get("outcome")
            if status in (400, 401, 413, 429, 503):
                self.runtime.metrics.webhook_rejected.labels(str(status)).inc()
            raise
        except Exception:  # becomes handle_error's 500
            status = 500
            raise
        finally:
            self._log(req, status, outcome, data, started)

    return observed


class ReloadResource:
    def __init__(self, runtime: Runtime, limiter: FailureLimiter) -> None:
        self.runtime, self.limiter = runtime, limiter

    @_observed
    @falcon.before(auth.limit_body, MAX_BODY)  # 1. 413
    @falcon.before(auth.authenticate, lambda settings: settings.reload_secrets, "hot-reload not configured")  # 2-4
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raw: bytes = req.context.body
        announced = self._announced(req, raw)  # 5. 400, or a git host's event answered here
        if announced.reply is not None:
            self._respond(resp, announced.status, announced.reply)
            return
        forwarded_by = req.get_header(FORWARDED_HEADER)
        peers: list[str] | None = None
        if forwarded_by is None and self.runtime.peers is not None:
            # before our own reload, so the peers reload alongside us
            peers = self.runtime.peers.forward(raw, {name: req.get_header(name) or "" for name in PASSED_HEADERS},
                                               req.context.get("trace_id"))
        data = render(self._reload(announced, "webhook" if forwarded_by is None else "peer"))  # 6-7
        if peers is not None:
            data["peers"] = peers
        self._respond(resp, 200, data)

    def _announced(self, req: falcon.Request, raw: bytes) -> githosts.Decision:
        github, gitlab = req.get_header("X-GitHub-Event"), req.get_header("X-Gitlab-Event")
        if github is not None:
            return githosts.github(github, raw, req.content_type, self.runtime.branch)
        if gitlab is not None:
            return githosts.gitlab(gitlab, raw, self.runtime.branch)
        # a bearer call, or a generic X-Hub-Signature-256 sender
        return githosts.Decision(commit_hash=parse_reload_body(raw, self.runtime.branch))

    def _reload(self, announced: githosts.Decision, trigger: str) -> ReloadResult:
        """The pre-check (skipped for a force-push: it cannot tell a rewind), then the reconcile."""
        try:
            return self.runtime.reloader.reload(announced.commit_hash, precheck=not announced.forced, trigger=trigger)
        except FetchFailed as exc:
            details = {"outcome": "fetch-failed", "head": exc.head}
            if exc.timed_out:
                raise ApiError(504, "fetch_timeout", str(exc),
                               {**details, "timeoutS": self.runtime.settings.network_timeout_s}) from None
            raise ApiError(502, "fetch_failed", str(exc), details) from None
        except RebuildFailed as exc:
            raise ApiError(422, "invalid_data", f"the new data does not validate: {exc}",
                           {"outcome": "rebuild-failed", "commit": exc.commit,
                            "path": exc.path, "error": exc.error}) from None

    def _respond(self, resp: falcon.Response, status: int, data: dict[str, Any]) -> None:
        resp.status = status
        resp.media = {"success": True, "data": data}
        resp.set_header("X-Data-Commit", self.runtime.holder.current.commit)

    def _log(self, req: falcon.Request, status: int, outcome: str | None, data: dict[str, Any],
             started: float) -> None:
        """One line per call, in the runbook's vocabulary: ``hot-reload``, the branch,
        the outcome, the old and new commit (a pre-check answer in the seed's words:
        ``hot-reload short-circuit: commit already served``). ERROR when the data was
        refused or the remote rewritten, WARNING when the remote was unreachable."""
        served = self.runtime.holder.current.commit
        old, new = data.get("oldCommit", data.get("head", served)), data.get("newCommit", served)
        level = logging.WARNING if status in (502, 504) else logging.INFO
        if outcome in ("rebuild-failed", "remote-rewritten") or (status >= 500 and status not in (502, 504)):
            level = logging.ERROR
        message = "hot-reload short-circuit: commit already served (%s on %s: %s -> %s, %d)" if data.get(
            "precheck") else "hot-reload: %s on %s: %s -> %s (%d)"
        log.log(level, message, outcome or "rejected", self.runtime.branch,
                str(old)[:12], str(new)[:12], status, extra={
                    "traceId": req.context.get("trace_id"), "status": status, "outcome": outcome,
                    "branch": self.runtime.branch, "oldCommit": old, "newCommit": new,
                    "event": req.get_header("X-GitHub-Event") or req.get_header("X-Gitlab-Event"),
                    "precheck": bool(data.get("precheck")), "servedCommit": served,
                    "forwardedBy": req.get_header(FORWARDED_HEADER),
                    "client": client_address(req.remote_addr or "unknown", req.get_header("Forwarded"),
                                             req.get_header("X-Forwarded-For"), self.runtime.settings.trusted_proxies),
                    "durationMs": round((time.perf_counter() - started) * 1000, 3)})


def parse_reload_body(raw: bytes, served_branch: str) -> str | None:
    """The ``commitHash`` of a valid body (empty, or ``{branch?, commitHash?}``)."""
    if not raw.strip():
        return None
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise bad_request("body", "must be a JSON object like {\"commitHash\": \"<sha>\"}")
    unknown = sorted(set(body) - {"branch", "commitHash"})
    if unknown:
        raise bad_request(unknown[0], "unknown field (allowed: branch, commitHash)")
    commit_hash = body.get("commitHash")
    if commit_hash is not None and (not isinstance(commit_hash, str) or not COMMIT_HASH.match(commit_hash)):
        raise bad_request("commitHash", "must be 4-40 hexadecimal characters")
    branch = body.get("branch")
    if branch is not None:
        if not isinstance(branch, str):
            raise bad_request("branch", "must be a string")
        problem = branch_name_problem(branch)
        if problem:
            raise bad_request("branch", f"is not a valid branch name: {problem}")
        if branch != served_branch:
            raise bad_request("branch", f"{branch!r} is not the served branch {served_branch!r}")
    return commit_hash


def render(result: ReloadResult) -> dict[str, Any]:
    duration = round(result.duration_ms, 3)
    if result.prechecked:
        return {"noChanges": True, "outcome": result.outcome, "precheck": True, "head": result.new_commit,
                "durationMs": duration}
    data: dict[str, Any] = {
        "noChanges": result.no_changes, "rebuilt": result.rebuilt, "outcome": result.outcome,
        "oldCommit": result.old_commit, "newCommit": result.new_commit,
    }
    if result.no_changes:
        return {**data, "durationMs": duration}
    optional = {"conflictBranch": result.conflict_branch, "rewrittenFrom": result.rewritten_from,
                "ahead": result.ahead, "behind": result.behind}
    data.update((name, value) for name, value in optional.items() if value)
    if result.rebuilt:
        data["changes"] = result.changes.as_dict()
        data["warmed"] = {"queries": result.warmed, "carried": result.carried, "ms": round(result.warm_ms, 3)}
    data["lockHeldMs"] = round(result.lock_held_ms, 3)
    data["durationMs"] = duration
    return data


def branch_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid branch name (git check-ref-format rules), or None."""
    if not 1 <= len(name) <= 200:
        return "must be 1-200 characters"
    if _BAD_REF_CHARS.search(name):
        return "must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    if name.startswith("-"):
        return "must not start with '-'"
    if name == "@" or "@{" in name or ".." in name or "//" in name:
        return "must not be '@' or contain '@{', '..' or '//'"
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return "must not start or end with '/' or end with '.'"
    if any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        return "no part may start with '.' or end with '.lock'"
    return None


class DiversionsResource:
    """``DELETE /api/_internal/diversions?branch=<conflict branch>`` (the webhook's secret): an
    operator has seen to a diverted write; health stops naming its branch, which stays."""

    def __init__(self, runtime: Runtime, limiter: FailureLimiter) -> None:
        self.runtime, self.limiter = runtime, limiter

    @falcon.before(auth.authenticate, lambda settings: settings.reload_secrets, "hot-reload not configured")
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        branch, repo = req.get_param("branch") or "", self.runtime.repo
        if not branch:
            raise bad_request("branch", "name the conflict branch to clear (health's diverted list: "
                              f"{', '.join(reconcile.diverted_branches(repo)) or 'none'})")
        if not reconcile.clear_diverted(repo, branch):
            raise ApiError(404, "not_found", f"branch: {branch!r} is not a diversion health names here "
                           f"(it names: {', '.join(reconcile.diverted_branches(repo)) or 'none'})")
        log.warning("diversion to %s cleared by an operator", branch, extra={"conflictBranch": branch})
        resp.media = {"success": True, "data": {"cleared": branch, "diverted": reconcile.diverted_branches(repo)}}
