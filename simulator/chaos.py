"""The chaos step: writers on every replica editing a few shared records, outside authors
editing the same records on the remote, replicas SIGKILLed and restarted, the remote
stalling and recovering; then the fate of every write, judged with git alone.

Every write stores a value no other write stores (its *token*), so where a write went is
a question git answers: is the token in the history of the remote's branch, of a
``conflicts/*`` branch, of any ref of any clone? A write answered 2xx must be on the
remote's branch (``CFP_WRITE_ACK=remote``: as the very commit it named; ``local``: or on
a branch a replica's health names as a diversion, each counted once by
``hotreload_writes_diverted_total``); a write refused (409, 412, 503) must be nowhere; a
write that got no answer (its replica was killed) or a 503 saying the outcome is unknown
may be either. Every replica must serve the remote's tip, and ``git fsck --full`` be
clean on every repository.

Every fault the step is configured for happens within the run, or the step fails: the
stall and the slow-apply window are scheduled up front, one after the other, each to end
before the run does (a run too short for them is lengthened to fit); they and the kills
run on threads of their own, so a slow restart delays neither; the slow-apply window stays
open (a few seconds at most) until the remote has applied a push it held; and the
judgement fails a run whose stall held no request, whose slow-apply window applied no push
late, or which killed no replica although ``kill_every`` asked for kills.

The random choices (which replica, record, operation; when to kill, to stall, to apply
late) come from the seed, printed at the start and in every failure; ``HOTRELOAD_CHAOS_SEED``
and ``HOTRELOAD_CHAOS_SECONDS`` replay a run or make it longer (thread timing still varies).
"""

from __future__ import annotations

import os
import random
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.git import run
from simulator.server import Response, ServerProcess, request
from simulator.world import BRANCH

if TYPE_CHECKING:
    from simulator.runner import Run
    from simulator.scenario import Step


@dataclass
class Attempt:
    token: str
    replica: int
    what: str
    status: int | None = None
    """None: no answer (the replica was killed, or not up)."""
    commit: str | None = None
    outcome: str | None = None
    """A 503's ``error.details.outcome`` (``unknown``: the remote may have taken it)."""


@dataclass
class Counts:
    seed: int
    tried: int = 0
    acknowledged: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    unknown: int = 0
    unanswered: int = 0
    diverted: int = 0
    lost: int = 0
    kills: int = 0
    stalls: int = 0
    held: int = 0
    """Requests the stall held."""
    slow_windows: int = 0
    held_late: int = 0
    """Ref updates the slow-apply window held (applied or not)."""
    slow_applies: int = 0
    """Pushes the slow-apply window held that the remote then applied: late."""

    def line(self) -> str:
        refused = ", ".join(f"{n} x {s}" for s, n in sorted(self.refused.items())) or "none"
        return (f"chaos seed={self.seed}: tried {self.tried}, acknowledged {self.acknowledged}, refused "
                f"{sum(self.refused.values())} ({refused}), unknown {self.unknown}, unanswered {self.unanswered}, "
                f"diverted {self.diverted}, lost {self.lost}; {self.kills} kills, {self.stalls} stalls "
                f"({self.held} requests held), {self.slow_applies} slow applies "
                f"({self.slow_windows} slow-apply windows, {self.held_late} pushes held)")


class Chaos:
    def __init__(self, run: Run, step: Step) -> None:
        self.run, self.w = run, run.w
        given = os.environ.get("HOTRELOAD_CHAOS_SEED") or step.get("seed")
        self.seed = int(given) if given is not None else random.SystemRandom().randrange(2**31)
        self.seconds = float(os.environ.get("HOTRELOAD_CHAOS_SECONDS") or step.get("seconds", 15))
        self.writers = int(step.get("writers", 2 * len(self.w.replicas)))
        self.n_records = int(step.get("records", 3))
        self.kill_every = float(step.get("kill_every", 4))
        self.stall_seconds = float(step.get("stall_seconds", 2))
        self.slow_apply_seconds = float(step.get("slow_apply_seconds", 0))
        """For ``stall_seconds`` once, the remote applies each push this late (0: never)."""
        self.stall_at, self.slow_at = self._schedule(random.Random(self.seed + 2))
        self.counts = Counts(self.seed)
        self.attempts: list[Attempt] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.applying_late = threading.Event()
        """The remote applies pushes late: the author pauses, so a late push can still land."""
        self.down: set[int] = set()
        self.remote_mode = self.w.write_ack == "remote"

    def _schedule(self, rng: random.Random) -> tuple[float | None, float | None]:
        """When the stall and the slow-apply window open (seconds into the run; None: never),
        at random but one after the other, each ending at least half a second before the run
        does; a run too short for both is lengthened to fit them."""
        stall_at = slow_at = None
        free = rng.uniform(0.1, 0.3) * self.seconds  # the first moment nothing is scheduled
        if self.stall_seconds:
            stall_at, free = free, free + self.stall_seconds + 0.5
        if self.slow_apply_seconds:
            slow_at = rng.uniform(free, max(free, self.seconds - self.stall_seconds - 0.5))
            free = slow_at + self.stall_seconds + 0.5
        self.seconds = max(self.seconds, free)
        return stall_at, slow_at

    def base(self, i: int) -> str:
        return f"http://127.0.0.1:{self.w.replicas[i].port}"

    # -- the run --------------------------------------------------------------------------

    def execute(self) -> Counts:
        assert self.w.daemon is not None or not self.stall_seconds, \
            f"stall_seconds = {self.stall_seconds:g} needs world.transport = \"git\" (or stall_seconds = 0)"
        print(f"chaos: seed {self.seed} ({self.seconds:g} s; replay: HOTRELOAD_CHAOS_SEED={self.seed})",
              file=sys.stderr)
        listing = request(self.base(0), "GET", f"/api/projects?perPage={self.n_records}")
        self.slugs = [item["slug"] for item in listing.data]
        threads = [threading.Thread(target=self._writer, args=(random.Random(self.seed * 100 + n),))
                   for n in range(self.writers)]
        threads.append(threading.Thread(target=self._upstream, args=(random.Random(self.seed + 1),)))
        self.windows_failed: BaseException | None = None
        windows = threading.Thread(target=self._windows)
        threads += [windows, threading.Thread(target=self._kills, args=(random.Random(self.seed + 3),))]
        for t in threads:
            t.start()
        time.sleep(self.seconds)  # the run's length, not a wait for a condition
        windows.join()  # they end before the run does, unless the slow-apply window is held open
        self.stop.set()
        for t in threads:
            t.join()
        self.w.remote_up()
        for i, replica in enumerate(self.w.replicas):
            if replica.server is None or replica.server.proc is None or replica.server.proc.poll() is not None:
                self._start(i)
        problems = self._converge(60.0)
        if not problems:
            problems = self._judge()
        problems += self._faults_missed()
        self.run.report.chaos = self.counts.line()
        if self.windows_failed is not None:
            problems.insert(0, f"the stall or the slow-apply window failed: {self.windows_failed!r}")
        assert not problems, self.counts.line() + "\n    " + "\n    ".join(problems[:20])
        return self.counts

    def _writer(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            up = [i for i in range(len(self.w.replicas)) if i not in self.down]
            if not up:
                self.stop.wait(0.05)
                continue
            i = rng.choice(up)
            slug, token = rng.choice(self.slugs), f"chaos-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}"
            roll, headers = rng.random(), {"Authorization": f"Bearer {self.w.write_token}"}
            if roll < 0.1:  # a create, sometimes conditional
                what, method, path, body = "create", "POST", "/api/projects", {"slug": token, "title": token}
                if rng.random() < 0.5:
                    headers["If-None-Match"] = "*"
            elif roll < 0.15:  # a create over a slug that exists: refused
                what, method, path, body = "create-taken", "POST", "/api/projects", {"slug": slug, "title": token}
                headers["If-None-Match"] = "*"
            else:
                what, method, path = "edit", "PATCH", f"/api/projects/{slug}"
                body = {rng.choice(("summary", "summary", "title")): token}
                if rng.random() < 0.3:  # read first, then write only if unchanged
                    what = "edit-if-match"
                    tag = self._call(i, "GET", path, None, {}).headers.get("etag")
                    if tag:
                        headers["If-Match"] = tag
            attempt = Attempt(token, i, what)
            resp = self._call(i, method, path, body, headers)
            if resp.status:
                attempt.status, attempt.commit = resp.status, resp.commit
                error = (resp.json or {}).get("error") or {} if resp.body.startswith(b"{") else {}
                attempt.outcome = (error.get("details") or {}).get("outcome")
            with self.lock:
                self.attempts.append(attempt)
            self.stop.wait(rng.uniform(0.0, 0.05))

    def _call(self, i: int, method: str, path: str, body: Any, headers: dict[str, str]) -> Response:
        try:
            return request(self.base(i), method, path, body, headers, timeout=30)
        except Exception:  # killed mid-request, or not listening yet
            return Response(0, {}, b"")

    def _upstream(self, rng: random.Random) -> None:
        """An outside author editing the shared records on the remote."""
        n = 0
        while not self.stop.wait(rng.uniform(0.3, 0.9)):
            if self.applying_late.is_set():
                continue
            n += 1
            self.w.upstream([{"op": "modify", "sheet": "projects", "slug": rng.choice(self.slugs),
                              "fields": {"summary": f"upstream-{self.seed}-{n}"}}], f"Chaos upstream edit {n}")

    def _windows(self) -> None:
        """Stall the remote once, then once make it slow to apply pushes (after their pushers
        may have given up), at the times :meth:`_schedule` chose. The slow-apply window stays
        open past ``stall_seconds`` (up to ``3 * stall_seconds + slow_apply_seconds`` more) until
        the remote has applied a push it held: the window is the fault, the late push its proof."""
        try:
            self._open_windows()
        except BaseException as e:  # judged with the run (and the remote put right), not lost in a thread
            self.windows_failed = e
            self.w.remote_up()
            self.w.remote_slow_to_apply(0)
            self.applying_late.clear()

    def _open_windows(self) -> None:
        started = time.monotonic()
        if self.stall_at is not None:
            time.sleep(max(0.0, started + self.stall_at - time.monotonic()))
            self.w.remote_stalled()
            self.counts.stalls += 1
            time.sleep(self.stall_seconds)
            self.w.remote_up()
        if self.slow_at is not None:
            time.sleep(max(0.0, started + self.slow_at - time.monotonic()))
            self.w.remote_slow_to_apply(self.slow_apply_seconds)
            self.applying_late.set()
            self.counts.slow_windows += 1
            time.sleep(self.stall_seconds)
            deadline = time.monotonic() + 3 * self.stall_seconds + self.slow_apply_seconds
            while not self._applied_late() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.w.remote_slow_to_apply(0)
            self.applying_late.clear()

    def _applied_late(self) -> list[str]:
        """The pushes the slow-apply window held that the remote then applied."""
        return self.w.late_pushes()[1]

    def _kills(self, rng: random.Random) -> None:
        """SIGKILL a replica now and then, restarting it a moment later; the first kill comes
        by 60 % of the run, whatever ``kill_every``."""
        if not self.kill_every:
            return
        next_kill = min(rng.uniform(0.5, 1.5) * self.kill_every, rng.uniform(0.3, 0.6) * self.seconds)
        started = time.monotonic()
        while not self.stop.wait(0.05):
            now = time.monotonic() - started
            if now >= next_kill:
                i = rng.randrange(len(self.w.replicas))
                self.down.add(i)
                server = self.w.replicas[i].server
                if server is not None:
                    server.kill()
                self.counts.kills += 1
                self.stop.wait(rng.uniform(0.2, 1.0))
                self._start(i)
                next_kill = now + rng.uniform(0.5, 1.5) * self.kill_every

    def _start(self, i: int) -> None:
        replica = self.w.replicas[i]
        replica.server = ServerProcess(self.w.env(replica), port=replica.port).start()
        self.down.discard(i)

    def _converge(self, within: float) -> list[str]:
        """Every replica serves the remote's tip, with nothing left to push."""
        deadline = time.monotonic() + within
        while True:
            tip = self.w.origin_head()
            states = {i: self._call(i, "GET", "/api/health", None, {}) for i in range(len(self.w.replicas))}
            health = {i: r.data for i, r in states.items() if r.status == 200}
            if len(health) == len(states) and all(h["servedCommit"] == tip and h["push"]["pending"] == 0
                                                  for h in health.values()) and self.w.origin_head() == tip:
                self.health = health
                return []
            if time.monotonic() > deadline:
                late = {i: (h["servedCommit"][:12], h["push"]["pending"]) for i, h in health.items()}
                return [f"the replicas did not converge on the remote's tip {tip[:12]} within {within:g} s: {late}"]
            time.sleep(0.1)

    # -- the judgement ------------------------------------------------------------------

    def _faults_missed(self) -> list[str]:
        """A configured fault that did not happen: the run did not test what it claims to."""
        self.counts.held = self.w.stalled_requests()
        self.counts.held_late, applied = self.w.late_pushes()
        self.counts.slow_applies = len(applied)
        missed = []
        if self.stall_seconds and not self.counts.held:
            missed.append(f"stall_seconds = {self.stall_seconds:g} but the stall held no request "
                          f"({self.counts.stalls} stalls)")
        if self.slow_apply_seconds and not self.counts.slow_applies:
            missed.append(f"slow_apply_seconds = {self.slow_apply_seconds:g} but no push was applied late "
                          f"({self.counts.slow_windows} slow-apply windows, {self.counts.held_late} pushes held, "
                          "none applied)")
        if self.kill_every and not self.counts.kills:
            missed.append(f"kill_every = {self.kill_every:g} but no replica was killed")
        return [f"FAULT MISSED: {m}" for m in missed]

    def _judge(self) -> list[str]:
        problems: list[str] = []
        repos = [self.w.origin_repo().path] + [r.clone for r in self.w.replicas]
        everywhere = "\n".join(_log(path, "--all") for path in repos)
        branch = _log(self.w.origin_repo().path, f"refs/heads/{BRANCH}")
        conflicts = [ref for path in repos for ref in _refs(path, "refs/heads/conflicts")]
        diverted_text = "\n".join(  # only what a diversion health names holds, not what the branch has too
            _log(self.w.replicas[i].clone, *(f"refs/heads/{b}" for b in h["diverted"]), "--not", f"refs/heads/{BRANCH}")
            for i, h in self.health.items() if h["diverted"])
        origin, tip = self.w.origin_repo(), self.w.origin_head()
        for a in self.attempts:
            self.counts.tried += 1
            if a.status is None or a.status == 0:
                self.counts.unanswered += 1
            elif 200 <= a.status < 300:
                self.counts.acknowledged += 1
                if a.commit:  # the runner's own checks follow it too (never lost, on the origin once)
                    self.run.acknowledged.add(a.commit)
                    self.run.commits_by_replica.setdefault(a.replica, set()).add(a.commit)
                if a.token in branch and (not self.remote_mode or (a.commit and origin.has_object(a.commit)
                                                                  and origin.is_ancestor(a.commit, tip))):
                    continue
                if not self.remote_mode and a.token in diverted_text:
                    self.counts.diverted += 1
                    continue
                self.counts.lost += 1
                problems.append(f"LOST: {a.what} {a.token} answered {a.status} by replica {a.replica} "
                                f"(commit {str(a.commit)[:12]}) is not on the remote's {BRANCH}"
                                + ("" if self.remote_mode else " nor on a diversion health names"))
            elif a.status == 503 and a.outcome == "unknown":
                self.counts.unknown += 1
            else:
                self.counts.refused[a.status] = self.counts.refused.get(a.status, 0) + 1
                if a.token in everywhere:
                    problems.append(f"{a.what} {a.token} was refused ({a.status}) by replica {a.replica} but is "
                                    "in a repository's history")
        if self.remote_mode and conflicts:
            problems.append(f"conflict branches in remote mode: {conflicts}")
        if not self.remote_mode:
            counted = sum(_metric(self._call(i, "GET", "/metrics", None, {}), "hotreload_writes_diverted_total")
                          for i in range(len(self.w.replicas)))
            if self.counts.kills == 0 and counted != self.counts.diverted:
                problems.append(f"hotreload_writes_diverted_total adds up to {counted:g} on the replicas; "
                                f"{self.counts.diverted} acknowledged writes were diverted")
        for path in repos:
            fsck = run("--git-dir", path, "fsck", "--full", "--no-dangling", "--no-progress")
            said = fsck.stdout.decode(errors="replace") + fsck.stderr.decode(errors="replace")
            if fsck.returncode != 0 or re.search(r"^(error|missing|broken|bad)", said, re.MULTILINE):
                problems.append(f"git fsck --full {path}: exit {fsck.returncode}: {said.strip()[:500]}")
        return problems


def _log(path: str, *revisions: str) -> str:
    """Every commit of ``revisions`` with its patch: where a written value shows."""
    return run("--git-dir", path, "log", "-p", "--format=commit %H", *revisions, "--").stdout.decode(errors="replace")


def _refs(path: str, prefix: str) -> list[str]:
    out = run("--git-dir", path, "for-each-ref", "--format=%(refname)", prefix).stdout.decode()
    return out.split()


def _metric(resp: Response, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", resp.body.decode(errors="replace"), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


