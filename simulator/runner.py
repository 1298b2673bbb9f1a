"""Runs scenarios: a fresh world per scenario, each step executed, the invariants
checked after every step, and a report (table and JSON).

The invariants, after every step (while the server runs):
* the served commit equals the local branch (``/api/health`` and the clone's ref);
* a sample of records read over HTTP equals the tree at that commit (deleted
  records answer 404), each response naming that commit in ``X-Data-Commit``;
* no commit was lost: every local commit seen so far is reachable from the
  branch or a ``conflicts/*`` branch;
* the origin's branch never went backwards.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import random
import sys
import threading
import time
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from simulator.chaos import Chaos
from simulator.downstream import Follower
from simulator.scenario import Scenario, ScenarioError, Step, discover, load
from simulator.server import Response
from simulator.truth import NotARecord, expected, github_signature, redirect_target, stored
from simulator.world import BRANCH, World

RELOAD = "/api/_internal/reload-data"
DOCUMENTED_STATUSES = {200, 201, 202, 301, 400, 401, 404, 405, 409, 412, 413, 422, 502, 503, 504}


@dataclass
class Failure:
    step: int
    kind: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "kind": self.kind, "message": self.message}


@dataclass
class ScenarioReport:
    name: str
    steps: int
    failures: list[Failure] = field(default_factory=list)
    reloads: int = 0
    max_lock_held_ms: float = 0.0
    max_reload_ms: float = 0.0
    seconds: float = 0.0
    chaos: str | None = None
    """A chaos step's counts (simulator/chaos.py)."""

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "steps": self.steps,
                "failures": [f.as_dict() for f in self.failures], "reloads": self.reloads,
                "maxLockHeldMs": round(self.max_lock_held_ms, 3),
                "maxReloadMs": round(self.max_reload_ms, 3), "seconds": round(self.seconds, 2),
                **({"chaos": self.chaos} if self.chaos else {})}


@dataclass
class Concurrent:
    statuses: list[int]
    rebuilt: int
    problems: list[str]


class Run:
    def __init__(self, scenario: Scenario, verbose: bool = False) -> None:
        self.scenario = scenario
        self.verbose = verbose
        self.report = ScenarioReport(scenario.name, len(scenario.steps))
        self.world: World | None = None
        self.last: Response | None = None
        self.last_took = 0.0
        self.concurrent: Concurrent | None = None
        self.commits_by_replica: dict[int, set[str]] = {}
        """Commits each replica made or served (its writes are among them)."""
        self.acknowledged: set[str] = set()
        """Commits of writes answered 2xx, on any replica."""
        self.removed_upstream: set[str] = set()
        """Commits the scenario itself removed from the origin (a rewind, a re-import)."""
        self.origin_tips: list[str] = []
        self.rng = random.Random(scenario.name)
        self._reported: set[str] = set()
        self.follower: Follower | None = None

    # -- driving ---------------------------------------------------------------------

    def execute(self) -> ScenarioReport:
        started = time.perf_counter()
        self.world = World(self.scenario.records, self.scenario.push_backoff_seconds,
                           history=self.scenario.history, transport=self.scenario.transport,
                           clone=self.scenario.clone, replicas=self.scenario.replicas,
                           poll_seconds=self.scenario.poll_seconds, peers=self.scenario.peers,
                           network_timeout_seconds=self.scenario.network_timeout_seconds,
                           write_ack=self.scenario.write_ack)
        try:
            if self.scenario.start:
                self.world.start_all()
                self._observe_all(0)
            if self.scenario.downstream:  # replica 0's consumer, from the commit it serves at the start
                served = self.world.local_head()
                self.follower = Follower(self._base_of_first, self.w.local_repo(), served, self._sheet_roots(served))
            for step in self.scenario.steps:
                if self.verbose:
                    print(f"  {self.scenario.name} step {step.number}: {step.kind} {step.args}", file=sys.stderr)
                try:
                    with self.world.on(step.get("replica", 0)):
                        getattr(self, "_" + step.kind.replace("-", "_"))(step)
                except AssertionError as exc:
                    self._fail(step.number, step.kind, str(exc))
                except Exception as exc:
                    self._fail(step.number, step.kind, f"{type(exc).__name__}: {exc}")
                self._check_invariants(step.number)
        except Exception as exc:
            self._fail(0, "world", f"{type(exc).__name__}: {exc}")
        finally:
            if self.follower is not None:
                self.follower.close()
            if self.report.failures and self.world.server is not None:
                log = self.world.server.log().strip().splitlines()[-15:]
                self.report.failures[-1].message += "\n    server log (tail):\n      " + "\n      ".join(log)
            self.world.close()
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _base_of_first(self) -> str:
        server = self.w.replicas[0].server
        assert server is not None, "replica 0 is not running"
        return server.base

    @property
    def local_commits(self) -> set[str]:
        """The commits of the replica the current step talks to."""
        return self.commits_by_replica.setdefault(self.w.active, set())

    def _fail(self, step: int, kind: str, message: str) -> None:
        self.report.failures.append(Failure(step, kind, message))

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Response:
        assert self.w.server is not None
        resp = self.w.server.request(method, path, body, headers)
        if resp.status not in DOCUMENTED_STATUSES:
            trace = resp.headers.get("x-request-id", "")
            logged = [line for line in self.w.server.log().splitlines() if trace and trace in line]
            raise AssertionError(f"{method} {path}: undocumented status {resp.status}: {resp.body[:300]!r}"
                                 + "".join(f"\n    server log: {line}" for line in logged))
        return resp

    def resolve(self, token: str | None) -> str | None:
        if token is None:
            return None
        if token == "@origin":
            return self.w.origin_head()
        if token == "@local":
            return self.w.local_head()
        if token == "@served":
            return str(self._request("GET", "/api/health").data["servedCommit"])
        return token

    # -- step kinds ------------------------------------------------------------------

    def _upstream(self, step: Step) -> None:
        self.w.upstream(step.get("changes"), step.get("message", f"Upstream change (step {step.number})"),
                        step.get("author", "Outside Author <outside@example.org>"))

    def _write(self, step: Step) -> None:
        token = step.get("token", self.w.write_token)
        body = step.get("body")
        self.last = self._request(step.get("method"), step.get("path"), body,
                                  {"Authorization": f"Bearer {token}"})
        self.concurrent = None
        if 200 <= self.last.status < 300 and self.last.commit:
            self.local_commits.add(self.last.commit)
            self.acknowledged.add(self.last.commit)

    def _push(self, step: Step) -> None:
        """Wait until the push daemon delivered, or gave up (rejected), or timeout."""
        deadline = time.monotonic() + float(step.get("timeout", 20))
        while time.monotonic() < deadline:
            # a rejection is not terminal: the service reconciles and pushes again
            if self._request("GET", "/api/health").data["push"]["pending"] == 0:
                return
            time.sleep(0.05)

    _wait_push = _push

    def _webhook(self, step: Step) -> None:
        started = time.monotonic()
        self.last = self._call_webhook(step.args)
        self.last_took = time.monotonic() - started
        self.concurrent = None
        self._count_reload(self.last)

    def _call_webhook(self, args: dict[str, Any]) -> Response:
        secret = args.get("secret", self.w.secret)
        commit = self.resolve(args.get("commit"))
        if args.get("style", "bearer") == "github":
            event = args.get("event", "push")
            payload: dict[str, Any] = {"ref": args.get("ref", f"refs/heads/{BRANCH}")}
            if commit is not None:
                payload["after"] = commit
            if args.get("deleted"):
                payload.update(after="0" * 40, deleted=True)
            if "forced" in args:
                payload["forced"] = args["forced"]
            raw = args.get("body", json.dumps(payload)).encode()
            return self._request("POST", RELOAD, raw, {
                "X-GitHub-Event": event, "X-GitHub-Delivery": f"sim-{self.rng.random()}",
                "X-Hub-Signature-256": github_signature(secret, raw), "Content-Type": "application/json"})
        if "body" in args:
            raw_body: bytes | None = args["body"].encode()
        else:
            fields = {k: v for k, v in (("commitHash", commit), ("branch", args.get("branch"))) if v}
            raw_body = json.dumps(fields).encode() if fields else None
        return self._request("POST", RELOAD, raw_body, {"Authorization": f"Bearer {secret}"})

    def _count_reload(self, resp: Response) -> None:
        data = resp.json.get("data") if resp.json else None
        if resp.status == 200 and isinstance(data, dict) and "oldCommit" in data:
            self.report.reloads += 1
            self.report.max_lock_held_ms = max(self.report.max_lock_held_ms, float(data.get("lockHeldMs", 0)))
            self.report.max_reload_ms = max(self.report.max_reload_ms, float(data.get("durationMs", 0)))

    def _fault(self, step: Step) -> None:
        fault = step.get("fault")
        if fault == "remote-stalled":
            self.w.remote_stalled()
        elif fault == "remote-down":
            self.w.remote_down()
        elif fault == "remote-up":
            self.w.remote_up()
        elif fault == "push-rejected":
            # the remote moves on under the service (another writer), so its next
            # push is not a fast-forward and is rejected
            self.w.upstream([{"op": "raw", "path": "NOTES.md", "content": f"note {self.rng.random()}\n"}],
                            "Another writer's change", "Another Writer <other@example.org>")
        elif fault == "kill-server":
            self.w.kill_server()
        elif fault == "restart-server":
            self.w.stop()
            self.w.start_server()
        elif fault == "start-server":
            started, log = self.w.try_start_server()
            assert started, f"the service did not start:\n{log[-2000:]}"
            self._observe()
        elif fault == "start-server-fails":
            started, log = self.w.try_start_server()
            assert not started, "the service started, but the scenario expects it to refuse"
            assert "hotreload: error:" in log, f"no one-line error in the log:\n{log[-2000:]}"
            assert not os.path.exists(self.w.clone), f"a failed start left {self.w.clone} behind"
        elif fault in ("rewind-origin", "reimport-origin"):
            old, _new = self.w.rewind_origin() if fault == "rewind-origin" else self.w.reimport_origin()
            # the scenario removed these from the remote on purpose: they are neither
            # "lost" nor a rewind by the service
            self.removed_upstream |= set(self.w.origin_repo().walk(old))
            self.origin_tips = [self.w.origin_head()]
        elif fault == "block-conflicts-namespace":
            self.w.block_conflicts_namespace()
        elif fault == "second-instance":
            code, stderr = self.w.second_instance()
            pid = self.w.server.proc.pid if self.w.server and self.w.server.proc else None
            assert code == 2, f"a second serve on the same clone exited {code}: {stderr[-500:]}"
            assert f"another hotreload process (pid {pid})" in stderr, stderr[-500:]

    def _concurrent(self, step: Step) -> None:
        n_hooks, n_readers, n_writes = step.get("webhooks", 0), step.get("readers", 0), step.get("writes", 0)
        n_upstream = step.get("upstreams", 0)
        spread = step.get("spread", False)
        n_replicas = len(self.w.replicas)
        commit = step.get("commit")
        statuses: list[int] = []
        problems: list[str] = []
        rebuilt = 0
        lock = threading.Lock()
        done = threading.Event()
        start = threading.Barrier(n_hooks + n_writes + n_readers + n_upstream)

        def hook() -> None:
            nonlocal rebuilt
            start.wait()
            resp = self._call_webhook({"commit": commit} if commit else {})
            with lock:
                statuses.append(resp.status)
                self._count_reload(resp)
                if resp.status == 200 and resp.data.get("rebuilt"):
                    rebuilt += 1

        def write(i: int) -> None:
            index = i % n_replicas if spread else self.w.active
            server = self.w.replicas[index].server
            assert server is not None, f"replica {index} is not running"
            start.wait()
            body = {k: str(v).replace("{i}", str(i)) for k, v in step.get("body", {}).items()} or \
                {"slug": f"sim-write-{step.number}-{i}", "title": f"Concurrent write {i}"}
            resp = server.request(step.get("method", "POST"), step.get("path", "/api/projects"), body,
                                  {"Authorization": f"Bearer {self.w.write_token}"})
            with lock:
                statuses.append(resp.status)
                if 200 <= resp.status < 300 and resp.commit:
                    self.commits_by_replica.setdefault(index, set()).add(resp.commit)
                    self.acknowledged.add(resp.commit)

        def upstream(i: int) -> None:
            start.wait()
            try:  # the origin moves under it (pushes): World.upstream commits again on the new tip
                self.w.upstream([{"op": "add", "sheet": "people", "slug": f"sim-upstream-{step.number}-{i}"}],
                                f"Upstream change {i} during step {step.number}")
            except RuntimeError as exc:
                with lock:
                    problems.append(f"upstream commit {i}: {exc}")

        def read() -> None:
            start.wait()
            while True:
                finished = done.is_set()
                resp = self._request("GET", "/api/projects?perPage=100")
                problem = self._compare_listing(resp)
                if problem:
                    with lock:
                        problems.append(problem)
                if finished:
                    return

        workers = [threading.Thread(target=hook) for _ in range(n_hooks)]
        workers += [threading.Thread(target=write, args=(i,)) for i in range(n_writes)]
        workers += [threading.Thread(target=upstream, args=(i,)) for i in range(n_upstream)]
        readers = [threading.Thread(target=read) for _ in range(n_readers)]
        for t in workers + readers:
            t.start()
        for t in workers:
            t.join()
        done.set()
        for t in readers:
            t.join()
        self.concurrent = Concurrent(sorted(statuses), rebuilt, problems)
        assert not problems, "torn or wrong reads during the concurrent step:\n    " + "\n    ".join(problems[:5])

    def _chaos(self, step: Step) -> None:
        Chaos(self, step).execute()

    def _expect(self, step: Step) -> None:
        problems: list[str] = []

        def check(name: str, expected: Any, actual: Any) -> None:
            if expected != actual:
                problems.append(f"{name}: expected {expected!r}, got {actual!r}")

        args = step.args
        if "converged" in args:  # first: what follows is judged on the converged cluster
            problems += self._converged(self.resolve(args["converged"]), float(args.get("within", 5)))
        if "answered_within" in args and self.last_took > args["answered_within"]:
            problems.append(f"the webhook answered in {self.last_took:.2f} s, not within {args['answered_within']} s")
        if any(k in args for k in ("status", "outcome", "rebuilt", "no_changes", "prechecked", "code",
                                   "error_path", "ignored", "pong", "changes")):
            assert self.last is not None, "nothing to check: no webhook or write ran before this expect"
            body = self.last.json or {}
            data = body.get("data") or {}
            error = body.get("error") or {}
            details = error.get("details") or {}
            if "status" in args:
                check("status", args["status"], self.last.status)
            if "outcome" in args:  # one outcome, or a list of those a race allows
                outcome = data.get("outcome", details.get("outcome"))
                allowed = args["outcome"] if isinstance(args["outcome"], list) else [args["outcome"]]
                if outcome not in allowed:
                    check("outcome", args["outcome"], outcome)
            if "rebuilt" in args:
                check("rebuilt", args["rebuilt"], data.get("rebuilt"))
            if "no_changes" in args:
                check("noChanges", args["no_changes"], data.get("noChanges"))
            if "prechecked" in args:
                check("prechecked (precheck in the answer)", args["prechecked"], data.get("precheck", False))
            if "code" in args:
                check("error.code", args["code"], error.get("code"))
            if "error_path" in args:
                check("error.details.path", args["error_path"], details.get("path"))
            if "ignored" in args:
                check("ignored", args["ignored"], data.get("ignored", False))
            if "pong" in args:
                check("pong", args["pong"], data.get("pong", False))
            if "changes" in args:
                check("changes", args["changes"], data.get("changes"))
        if "statuses" in args or "rebuilt_count" in args:
            assert self.concurrent is not None, "statuses/rebuilt_count need a concurrent step before"
            if "statuses" in args:
                check("statuses", sorted(args["statuses"]), self.concurrent.statuses)
            if "rebuilt_count" in args:
                check("rebuilt_count", args["rebuilt_count"], self.concurrent.rebuilt)
        for item in args.get("visible", []):
            resp = self._request("GET", f"/api/{item['sheet']}/{item['slug']}")
            if resp.status != 200:
                problems.append(f"visible {item['sheet']}/{item['slug']}: GET answered {resp.status}")
                continue
            for key, value in item.get("fields", {}).items():
                check(f"{item['sheet']}/{item['slug']}.{key}", value, resp.data.get(key))
        for item in args.get("absent", []):
            status = self._request("GET", f"/api/{item['sheet']}/{item['slug']}").status
            check(f"absent {item['sheet']}/{item['slug']} (status)", 404, status)
        for item in args.get("redirects", []):
            resp = self._request("GET", item["path"])
            check(f"GET {item['path']}", (301, item["location"]), (resp.status, resp.headers.get("location")))
        if "revocations" in args:
            check("health revocations.count", args["revocations"],
                  self._request("GET", "/api/health").data["revocations"]["count"])
        if "served" in args:
            check("served commit", self.resolve(args["served"]), self.resolve("@served"))
        if "origin_branch" in args:
            check("origin's branch", self.resolve(args["origin_branch"]), self.w.origin_head())
        if "conflict_branches" in args:
            check("conflicts/* branches on the origin", args["conflict_branches"],
                  len(self.w.origin_conflict_branches()))
        if "last_reload" in args:  # the reload the service ran last, whoever asked (health.lastReload)
            last = self._request("GET", "/api/health").data["lastReload"] or {}
            for key, value in args["last_reload"].items():
                check(f"health lastReload.{key}", value, last.get(key))
        if args.get("origin_has_writes"):
            problems += self._origin_has_writes()
        if "push_pending" in args:
            check("push.pending", args["push_pending"], self._request("GET", "/api/health").data["push"]["pending"])
        assert not problems, "\n    ".join(problems)

    def _converged(self, target: str | None, within: float) -> list[str]:
        """Every running replica serves ``target`` within ``within`` seconds."""
        started = time.monotonic()
        while True:
            serving = {}
            for i, replica in enumerate(self.w.replicas):
                if replica.server is not None and replica.server.proc is not None \
                        and replica.server.proc.poll() is None:
                    serving[i] = str(replica.server.get("/api/health").data["servedCommit"])
            if all(commit == target for commit in serving.values()):
                if self.verbose:
                    print(f"  converged on {str(target)[:12]} in {time.monotonic() - started:.2f} s", file=sys.stderr)
                return []
            if time.monotonic() - started > within:
                late = ", ".join(f"replica {i} serves {c[:12]}" for i, c in serving.items() if c != target)
                return [f"not converged on {str(target)[:12]} within {within} s: {late}"]
            time.sleep(0.02)

    def _origin_has_writes(self) -> list[str]:
        """Every acknowledged write is on the origin's branch exactly once (as itself,
        or replayed by a rebase: the same author, date and message)."""
        origin = self.w.origin_repo()
        counts: dict[tuple[bytes, int, bytes], int] = {}
        for commit in origin.commits(origin.walk(self.w.origin_head())).values():
            counts[commit.identity] = counts.get(commit.identity, 0) + 1
        problems = []
        for i, commits in sorted(self.commits_by_replica.items()):
            repo = self.w.repo(self.w.replicas[i].clone)
            for sha, commit in sorted(repo.commits(commits & self.acknowledged).items()):
                n = counts.get(commit.identity, 0)
                if n != 1:
                    problems.append(f"the write {sha[:12]} (replica {i}) is on the origin {n} times")
        return problems

    # -- invariants --------------------------------------------------------------------

    def _observe(self) -> None:
        self.local_commits.add(self.w.local_head())

    def _observe_all(self, step: int) -> None:
        for i in range(len(self.w.replicas)):
            with self.w.on(i):
                if self.w.running:
                    self._observe()
        if not self.w.remote_is_down:
            self.origin_tips.append(self.w.origin_head())

    def _check_invariants(self, step: int) -> None:
        problems: list[str] = []
        for i in range(len(self.w.replicas)):
            with self.w.on(i):
                if self.w.running:
                    where = f"replica {i}: " if len(self.w.replicas) > 1 else ""
                    problems += [where + p for p in self._check_replica()]
                    if i == 0 and self.follower is not None:
                        problems += self.follower.check(self.w.local_repo(), self.w.local_head())
        self._observe_all(step)
        if len(self.origin_tips) >= 2 and not self.w.origin_is_ancestor(self.origin_tips[-2], self.origin_tips[-1]):
            problems.append(f"the origin's {BRANCH} went backwards: {self.origin_tips[-2][:12]} -> "
                            f"{self.origin_tips[-1][:12]}")
        for problem in problems:
            if problem not in self._reported:  # report a broken invariant once, where it broke
                self._reported.add(problem)
                self._fail(step, "invariant", problem)

    def _check_replica(self) -> list[str]:
        problems: list[str] = []
        # a replica may be mid-reload on its own (a forward, the poll, a rejected push): the
        # three must agree once it settles, within a bound
        deadline = time.monotonic() + 5.0
        while True:
            health = self._request("GET", "/api/health").data
            served, head, local = health["servedCommit"], health["headCommit"], self.w.local_head()
            if served == head == local or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not served == head == local:
            problems.append(f"served {served[:12]} / health head {head[:12]} / branch {local[:12]} differ")
        problems += self._sample_records(served)
        problems += self._check_other_sheets(served, health)
        self._observe()
        repo = self.w.local_repo()
        # a rebase replays the service's commits under new ids, so a commit is
        # kept when one with its identity (author, author date, message: the
        # message carries the record's Subject-Id) is reachable, as git cherry
        # matches commits across a rebase
        tips = [self.w.local_head(), *(sha for ref, sha in repo.refs_under("refs/heads/").items()
                                       if ref.startswith("refs/heads/conflicts"))]
        kept = {commit.identity for commit in repo.commits(repo.walk(*tips)).values()}
        for sha, commit in sorted(repo.commits(self.local_commits - self.removed_upstream).items()):
            if commit.identity not in kept:
                problems.append(f"commit {sha[:12]} ({commit.subject!r}) is lost: neither it nor a replay of it "
                                f"is on {BRANCH} or a conflicts/* branch (tips: {', '.join(t[:12] for t in tips)})")
        return problems

    def _tree_records(self, commit: str, folder: str) -> dict[str, tuple[str, bytes]]:
        """The ``.toml`` files below ``folder`` at ``commit``, read with git (ls-tree, cat-file)."""
        return {path: found for path, found in self.w.local_repo().read_files(commit, folder).items()
                if path.endswith(".toml")}

    def _sample_records(self, served: str, per_sheet: int = 6) -> list[str]:
        problems: list[str] = []
        for sheet in ("projects", "people"):
            files = self._tree_records(served, sheet)
            for path, want in self._parsed_sample(files, per_sheet, functools.partial(expected, sheet), problems):
                resp = self._request("GET", f"/api/{sheet}/{want['slug']}")
                answered = served
                if resp.commit and resp.commit != served and not self._moved_on(served, resp.commit):
                    problems.append(f"{path}: X-Data-Commit {resp.commit[:12]} is not the served commit "
                                    f"{served[:12]} ({self._relation(served, resp.commit)})")
                    continue
                if resp.commit and resp.commit != served:
                    # a reload the service ran on its own (a peer's forward, the poll, a rejected
                    # push) swapped snapshots since health answered: judge the answer by its own commit
                    answered, newer = resp.commit, self._tree_records(resp.commit, sheet).get(path)
                    if newer is None:
                        if resp.status not in (301, 404):
                            problems.append(f"{path} is gone at {answered[:12]}, but answered {resp.status}")
                        continue
                    try:
                        want = expected(sheet, newer[1])
                    except NotARecord as exc:
                        problems.append(f"the served tree holds an invalid record: {path}: {exc}")
                        continue
                problems += _compare(want, resp, answered, path)
        return problems

    def _moved_on(self, served: str, newer: str) -> bool:
        """Did this replica's branch move to ``newer`` after it held ``served``? Its reflog
        (every move of the ref, in order) says. Neither ancestry nor the tip now can: a
        rebase replaces commits with ones that do not descend from them, and a commit may
        be the tip for a moment only (rebased onto a remote that moved, then again)."""
        tips = self.w.local_repo().reflog(f"refs/heads/{BRANCH}")
        since = max((i for i, tip in enumerate(tips) if tip == served), default=-1)
        return newer != served and newer in tips[since + 1:]

    def _relation(self, served: str, other: str) -> str:
        """How ``other`` stands to ``served`` in this replica's clone, for a failure message."""
        repo = self.w.local_repo()
        if not repo.has_object(other):
            return f"{other[:12]} is not in the clone"
        head = repo.branch_commit(BRANCH) or "?"
        how = ("a descendant of the served commit" if repo.is_ancestor(served, other) else
               "an ancestor of the served commit" if repo.is_ancestor(other, served) else "not in line with it")
        held = "holds" if head != "?" and repo.is_ancestor(other, head) else "does not hold"
        moves = " -> ".join(tip[:7] for tip in repo.reflog(f"refs/heads/{BRANCH}")[-8:])
        return f"{other[:12]} is {how}; the branch, now at {head[:12]}, {held} it; its last moves: {moves}"

    def _parsed_sample(self, files: dict[str, tuple[str, bytes]], n: int, parse: Any,
                       problems: list[str]) -> list[tuple[str, Any]]:
        """Up to ``n`` random record files, each parsed by the oracle's ``parse``; a file
        the oracle cannot read is itself a problem (the service served that tree)."""
        sample = []
        for path in self.rng.sample(sorted(files), min(n, len(files))):
            try:
                sample.append((path, parse(files[path][1])))
            except NotARecord as exc:
                problems.append(f"the served tree holds an invalid record: {path}: {exc}")
        return sample

    def _sheet_roots(self, commit: str) -> dict[str, str]:
        """Sheet name -> root folder, from the tree's ``.gitsheets/*.toml`` (read here with tomllib)."""
        roots = {}
        for path, (_, data) in self._tree_records(commit, ".gitsheets").items():
            name = path[len(".gitsheets/"):-len(".toml")]
            if "/" in name:
                continue
            try:
                roots[name] = str(tomllib.loads(data.decode())["gitsheet"].get("root", name)).strip("/")
            except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, AttributeError):
                continue
        return roots

    def _check_other_sheets(self, served: str, health: dict[str, Any], per_sheet: int = 2) -> list[str]:
        """Every other sheet: sampled records read back through ``/api/sheets`` equal
        their files; health counts the revocations in the tree; unexpired slug-history
        entries redirect where the seed's rule says. An answer from a later commit of the
        branch (the service reloaded on its own meanwhile) is judged by that commit's tree."""
        problems: list[str] = []
        truths: dict[str, _Truth] = {}

        def truth_of(resp: Response) -> _Truth:
            commit = resp.commit if resp.commit and resp.commit != served and self._moved_on(served, resp.commit) \
                else served
            if commit not in truths:
                truths[commit] = self._truth_at(commit)
            return truths[commit]

        base = truths[served] = self._truth_at(served)
        for name, files in sorted(base.files_of.items()):
            if name in ("projects", "people"):
                continue
            for path, want in self._parsed_sample(files, per_sheet, functools.partial(stored, name), problems):
                key = path[len(base.roots[name]) + 1:-len(".toml")]
                resp = self._request("GET", f"/api/sheets/{name}/{urllib.parse.quote(key)}")
                truth = truth_of(resp)
                if truth is not base:
                    newer = truth.files_of.get(name, {}).get(path)
                    want = stored(name, newer[1]) if newer is not None else "status 404"
                got = (resp.data or {}).get("data") if resp.status == 200 else f"status {resp.status}"
                if got != want:
                    problems.append(f"{path} differs from the tree at {truth.commit[:12]}: want {want!r}, got {got!r}")
        if "revocations" in base.files_of:
            check = (len(base.files_of["revocations"]), (health.get("revocations") or {}).get("count"))
            if check[0] != check[1]:
                problems.append(f"health counts {check[1]} revocations; the tree at {served[:12]} holds {check[0]}")
        for kind, sheet in (("project", "projects"), ("person", "people")):
            for old in self.rng.sample(sorted(base.history[kind]), min(3, len(base.history[kind]))):
                resp = self._request("GET", f"/api/{sheet}/{urllib.parse.quote(old)}")
                truth = truth_of(resp)
                target = redirect_target(truth.history[kind], truth.live[sheet], old, dt.datetime.now(dt.UTC))
                location = resp.headers.get("location")
                if target is None and resp.status == 301:
                    problems.append(f"/api/{sheet}/{old} redirects to {location}; the tree at {truth.commit[:12]} "
                                    "says it should not")
                elif target is not None and (resp.status, location) != (301, f"/api/{sheet}/{target}"):
                    problems.append(f"/api/{sheet}/{old}: expected 301 to /api/{sheet}/{target} (the tree at "
                                    f"{truth.commit[:12]}), got {resp.status} {location}")
        return problems

    def _truth_at(self, commit: str) -> _Truth:
        """What the oracle reads from the tree at ``commit``: every sheet's files, the
        slug-history entries by kind, and the live slugs of projects and people."""
        roots = self._sheet_roots(commit)
        files_of = {name: self._tree_records(commit, root) for name, root in roots.items()}
        history: dict[str, dict[str, dict[str, Any]]] = {"project": {}, "person": {}}
        for path, (_, data) in files_of.get("slug-history", {}).items():
            for kind in history:
                if path.startswith(f"{roots['slug-history']}/{kind}/"):
                    entry = tomllib.loads(data.decode())
                    history[kind][entry["oldSlug"]] = entry
        live: dict[str, set[str]] = {}
        for sheet in ("projects", "people"):
            live[sheet] = set()
            for _, data in files_of.get(sheet, {}).values():
                try:
                    fields = expected(sheet, data)
                except NotARecord:
                    continue
                if fields["deletedAt"] is None:
                    live[sheet].add(fields["slug"])
        return _Truth(commit, roots, files_of, history, live)

    def _compare_listing(self, resp: Response) -> str | None:
        """A list response must be one commit's truth: every item equals that tree."""
        if resp.status != 200 or not resp.commit:
            return f"list answered {resp.status} without X-Data-Commit"
        files = self._tree_records(resp.commit, "projects")
        by_slug: dict[str, dict[str, Any]] = {}
        for path, (_, data) in files.items():
            try:
                fields = expected("projects", data)
            except NotARecord as exc:
                return f"{resp.commit[:12]}: the served tree holds an invalid record: {path}: {exc}"
            by_slug[fields["slug"]] = fields
        for item in resp.data[:20]:
            want = by_slug.get(item["slug"])
            if want is None:
                return f"{resp.commit[:12]}: {item['slug']} is listed but not in that commit's tree"
            diff = {k: (want[k], item.get(k)) for k in want if want[k] != item.get(k)}
            if diff:
                return f"{resp.commit[:12]}: {item['slug']} differs from its tree: {diff}"
        return None


@dataclass
class _Truth:
    commit: str
    roots: dict[str, str]
    files_of: dict[str, dict[str, tuple[str, bytes]]]
    history: dict[str, dict[str, dict[str, Any]]]
    live: dict[str, set[str]]


def _compare(want: dict[str, Any], resp: Response, served: str, path: str) -> list[str]:
    deleted = want.get("deletedAt") is not None
    if resp.commit != served:
        return [f"{path}: X-Data-Commit {str(resp.commit)[:12]} is not the served commit {served[:12]}"]
    if deleted:
        return [] if resp.status == 404 else [f"{path}: soft-deleted but answered {resp.status}"]
    if resp.status != 200:
        return [f"{path}: answered {resp.status}, expected the record"]
    got = {k: resp.data.get(k) for k in want}
    if got != want:
        lines = [f"{path} differs from the tree at {served[:12]}:"]
        for key in want:
            if want[key] != got[key]:
                lines += [f"      - {key}: {want[key]!r}", f"      + {key}: {got[key]!r}"]
        return ["\n".join(lines)]
    return []


# -- the command ---------------------------------------------------------------------------

def run_scenarios(paths: list[str], verbose: bool = False) -> list[ScenarioReport]:
    reports = []
    for path in paths:
        scenario = load(path)
        if verbose:
            print(f"running {scenario.name} ...", file=sys.stderr)
        reports.append(Run(scenario, verbose).execute())
    return reports


def render_table(reports: list[ScenarioReport]) -> str:
    header = ("scenario", "steps", "result", "reloads", "max lock hold ms", "slowest reload ms", "seconds")
    rows = [(r.name, str(r.steps), "PASS" if r.passed else "FAIL", str(r.reloads),
             f"{r.max_lock_held_ms:.2f}", f"{r.max_reload_ms:.1f}", f"{r.seconds:.1f}") for r in reports]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def main(names: list[str] | None, json_path: str | None, verbose: bool = False) -> int:
    try:
        paths = discover(names)
        for path in paths:
            load(path)  # validate every file before running any
    except ScenarioError as exc:
        print(f"hotreload simulate: error: {exc}", file=sys.stderr)
        return 2
    reports = run_scenarios(paths, verbose)
    print(render_table(reports))
    for report in reports:
        if report.chaos:
            print(f"{report.name}: {report.chaos}")
    for report in reports:
        for failure in report.failures:
            print(f"\nFAIL {report.name} step {failure.step} ({failure.kind}):\n    {failure.message}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"scenarios": [r.as_dict() for r in reports]}, fh, indent=2)
    failed = sum(1 for r in reports if not r.passed)
    print(f"\nsimulate: {len(reports) - failed} passed, {failed} failed")
    return 1 if failed else 0
