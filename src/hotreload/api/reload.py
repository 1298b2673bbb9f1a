"""``POST /api/_internal/reload-data``: the hot-reload webhook (specs/hot-reload.md).

The checks run in the contract's order, each answered before the next runs:
size, credentials present, secret configured, credentials valid, body, then the
reload itself (pre-check, single-flight, reconcile, build, swap).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import falcon

from hotreload.api import auth, hooks
from hotreload.api.errors import ApiError, bad_request, parse_json
from hotreload.api.ratelimit import client_address
from hotreload.service.peers import FORWARDED_HEADER, PASSED_HEADERS
from hotreload.service.reloader import FetchFailed, RebuildFailed, ReloadResult
from hotreload.service.runtime import Runtime

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
COMMIT_HASH = re.compile(r"\A[0-9a-fA-F]{4,40}\Z")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


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


def read_body(req: falcon.Request) -> bytes:
    if (req.content_length or 0) > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"request body is larger than {MAX_BODY} bytes")
    body: bytes = req.bounded_stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ApiError(413, "payload_too_large", f"request body is larger than {MAX_BODY} bytes")
    return body


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
        data["durationMs"] = duration
        return data
    if result.conflict_branch:
        data["conflictBranch"] = result.conflict_branch
    if result.rewritten_from:
        data["rewrittenFrom"] = result.rewritten_from
    if result.ahead:
        data["ahead"] = result.ahead
    if result.behind:
        data["behind"] = result.behind
    if result.rebuilt:
        data["changes"] = result.changes.as_dict()
        data["warmed"] = {"queries": result.warmed, "carried": result.carried, "ms": round(result.warm_ms, 3)}
    data["lockHeldMs"] = round(result.lock_held_ms, 3)
    data["durationMs"] = duration
    return data


class ReloadResource:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        started = time.perf_counter()
        status, outcome, data = 200, None, None
        resp.set_header("X-Data-Commit", self.runtime.holder.current.commit)  # errors carry it too
        try:
            data, status = self._handle(req)
            outcome = data.get("outcome")
            resp.status = status
            resp.media = {"success": True, "data": data}
            resp.set_header("X-Data-Commit", self.runtime.holder.current.commit)
        except ApiError as exc:
            status = exc.status
            outcome = (exc.details or {}).get("outcome")
            if status in (400, 401, 413, 429, 503):
                self.runtime.metrics.webhook_rejected.labels(str(status)).inc()
            raise
        finally:
            self._log(req, status, outcome, data or {}, started)

    def _log(self, req: falcon.Request, status: int, outcome: str | None, data: dict[str, Any],
             started: float) -> None:
        """One line per call, in the runbook's vocabulary: ``hot-reload``, the branch,
        the outcome, the old and new commit (a pre-check answer in the seed's words:
        ``hot-reload short-circuit: commit already served``). ERROR when the data was
        refused or the remote rewritten, WARNING when the remote was unreachable."""
        served = self.runtime.holder.current.commit
        old, new = data.get("oldCommit", data.get("head", served)), data.get("newCommit", served)
        if outcome in ("rebuild-failed", "remote-rewritten") or (status >= 500 and status not in (502, 504)):
            level = logging.ERROR
        else:
            level = logging.WARNING if status in (502, 504) else logging.INFO
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

    def _handle(self, req: falcon.Request) -> tuple[dict[str, Any], int]:
        raw = read_body(req)
        creds = auth.credentials(req)
        if creds is None:
            raise ApiError(401, "unauthorized", "Authentication required")
        secret = self.runtime.settings.reload_secret
        if not secret:
            raise ApiError(503, "service_unavailable", "hot-reload not configured")
        if not auth.verify(creds, self.runtime.settings.reload_secrets, raw):
            raise ApiError(401, "unauthorized", "Authentication required")

        github, gitlab = req.get_header("X-GitHub-Event"), req.get_header("X-Gitlab-Event")
        if github is not None or gitlab is not None:
            decision = hooks.github(github, raw, req.content_type, self.runtime.branch) if github is not None \
                else hooks.gitlab(str(gitlab), raw, self.runtime.branch)
            if decision.reply is not None:
                return decision.reply, decision.status
            commit_hash, precheck = decision.commit_hash, not decision.forced
        else:  # a bearer call, or a generic X-Hub-Signature-256 sender
            commit_hash, precheck = parse_reload_body(raw, self.runtime.branch), True

        forwarded_by = req.get_header(FORWARDED_HEADER)
        peers: list[str] | None = None
        if forwarded_by is None and self.runtime.peers is not None:
            # before our own reload, so the peers reload alongside us
            peers = self.runtime.peers.forward(raw, {name: req.get_header(name) or "" for name in PASSED_HEADERS},
                                               req.context.get("trace_id"))
        try:
            result = self.runtime.reloader.reload(commit_hash, precheck=precheck,
                                                  trigger="webhook" if forwarded_by is None else "peer")
        except FetchFailed as exc:
            if exc.timed_out:
                raise ApiError(504, "fetch_timeout", str(exc), {
                    "outcome": "fetch-failed", "head": exc.head,
                    "timeoutS": self.runtime.settings.network_timeout_s}) from None
            raise ApiError(502, "fetch_failed", str(exc),
                           {"outcome": "fetch-failed", "head": exc.head}) from None
        except RebuildFailed as exc:
            raise ApiError(422, "invalid_data", f"the new data does not validate: {exc}",
                           {"outcome": "rebuild-failed", "commit": exc.commit,
                            "path": exc.path, "error": exc.error}) from None
        data = render(result)
        if peers is not None:
            data["peers"] = peers
        return data, 200
