"""``GET /api/health`` and ``GET /metrics``."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any, cast

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hotreload.data.records import Revocation
from hotreload.data.snapshot import Snapshot
from hotreload.git import reconcile
from hotreload.service.runtime import Runtime


def _revocations(snap: Snapshot) -> dict[str, Any]:
    """What a consumer of revocations must see as soon as they land: how many, the
    newest, and the first commit this process served with the current set."""
    records = cast(Iterable[Revocation], snap.table("revocations").by_id.values())
    return {"count": len(snap.table("revocations")),
            "latestRevokedAt": max((r.revoked_at for r in records), default=None),
            "changedInCommit": snap.changed_in.get("revocations")}


class HealthResource:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        rt = self.runtime
        snap = rt.holder.current
        last = rt.reloader.last
        last_reload: dict[str, Any] | None = None
        if last is not None:
            last_reload = {"outcome": last.outcome, "trigger": last.trigger, "at": last.at,
                           "durationMs": last.duration_ms, "lockHeldMs": last.lock_held_ms}
            if last.error:
                last_reload["error"] = last.error
        push: dict[str, Any] = {"pending": 0, "enabled": rt.push_daemon is not None}
        if rt.push_daemon is not None:
            status = rt.push_daemon.status()
            push["pending"] = status.pending
            if status.last_error:
                push["lastError"] = status.last_error
            if status.next_attempt_in_s is not None:
                push["nextAttemptInS"] = round(status.next_attempt_in_s, 1)
        poll: dict[str, Any] = {"enabled": rt.poller is not None}
        if rt.poller is not None:
            polled = rt.poller.status()
            poll.update(intervalS=polled.interval_s, lastAt=polled.last_at, lastResult=polled.last_result)
            if polled.last_error:
                poll["lastError"] = polled.last_error
        flight = rt.reloader.in_flight()
        reloading = None if flight is None else {
            "trigger": flight.trigger, "secondsSoFar": round(time.time() - flight.since, 1),
            "since": dt.datetime.fromtimestamp(flight.since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        reasons = [r for r in (rt.holder.degraded, last.error if last is not None else None) if r]
        diverted = reconcile.diverted_branches(rt.repo)  # a ref each, in the clone (decision 143)
        reasons += [f"local commits (API writes) were diverted to {branch} and are not served; see it, then "
                    "clear this (docs/runbook.md, 'A diverted write')" for branch in diverted]
        resp.set_header("X-Data-Commit", snap.commit)
        resp.media = {"success": True, "data": {
            "status": "degraded" if reasons else "ok",
            **({"degraded": reasons} if reasons else {}),
            "branch": rt.branch,
            "servedCommit": snap.commit,
            "headCommit": rt.repo.branch_commit(rt.branch),
            "records": snap.record_counts(),
            "revocations": snap.cached("health-revocations", _revocations),
            "lastReload": last_reload,
            "reloading": reloading,
            "push": push,
            "poll": poll,
            "diverted": diverted,
            "writeAck": rt.settings.write_ack,
            "notify": {"enabled": rt.notifier is not None,
                       "receivers": rt.notifier.status() if rt.notifier is not None else []},
        }}


class MetricsResource:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.runtime.metrics.registry)
