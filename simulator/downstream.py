"""A downstream consumer, as docs/quickstart.md shows one: it follows ``/api/events`` and reads
``/api/changes?include=records`` from the last commit it holds, keeping a mirror of the data
(path -> the record's JSON; None for a file no sheet owns).

After every step the runner asks it to catch up and checks, with git and HTTP alone: the events
chained from commit to commit (each one's ``from`` the previous one's ``to``) up to the served
commit; the mirror holds exactly the served tree's files, every record the feed brought as the
tree holds it (read with the simulator's own ``tomllib`` mapping); and every path ``git diff``
shows changed since the first commit was reported by the feed (its union over the run equals
the diff of the first and last commits). A 409 (the remote was rewritten) is right only when
git says the last commit is not in the served history; the consumer then resyncs from the tree.
"""

from __future__ import annotations

import contextlib
import json
import queue
import time
from collections.abc import Callable
from typing import Any

from simulator.git import Repo
from simulator.server import EventStream, request
from simulator.truth import NotARecord, stored


def regular_files(repo: Repo, commit: str) -> dict[str, str]:
    """Path -> blob id of the regular files of ``commit``'s tree (what the feed reports)."""
    found = {}
    for entry in repo.run("ls-tree", "-r", "-z", "--full-tree", commit).split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        if meta.startswith((b"100644 ", b"100755 ")):
            found[path.decode("utf-8", "backslashreplace")] = meta.split(b" ")[2].decode()
    return found


class Follower:
    def __init__(self, base: Callable[[], str], repo: Repo, served: str, roots: dict[str, str]) -> None:
        self.base, self.roots = base, {root: name for name, root in roots.items()}
        self._resync(repo, served)
        self.last_event = served
        self.stream = EventStream(base())

    def _resync(self, repo: Repo, commit: str) -> None:
        """Read everything again (the first time, and after a 409): files from git."""
        self.mirror: dict[str, Any] = {path: None for path in regular_files(repo, commit)}
        self.at = self.first = commit
        self.touched: set[str] = set()

    def _sheet(self, path: str) -> str | None:
        root = max((r for r in self.roots if path.startswith(r + "/")), key=len, default=None)
        return self.roots[root] if root is not None and path.endswith(".toml") else None

    def check(self, repo: Repo, served: str) -> list[str]:
        problems = self._events(served)
        resp = request(self.base(), "GET", f"/api/changes?since={self.at}&include=records&perPage=7")
        if resp.status == 409:
            if repo.has_object(self.at) and repo.is_ancestor(self.at, served):
                problems.append(f"/api/changes?since={self.at[:12]} answered 409, but git says it is in the history")
            self._resync(repo, served)
            return problems
        brought: dict[str, Any] = {}
        while True:
            if resp.status != 200:
                return [*problems, f"/api/changes answered {resp.status}: {resp.body[:200]!r}"]
            for entry in resp.data:
                if entry["change"] == "removed":
                    self.mirror.pop(entry["path"], None)
                else:
                    self.mirror[entry["path"]] = brought[entry["path"]] = entry["record"]
                self.touched.add(entry["path"])
                if entry["sheet"] != self._sheet(entry["path"]):
                    problems.append(f"{entry['path']}: the feed says sheet {entry['sheet']!r}")
            to, link = resp.json["meta"]["to"], resp.json["meta"]["next"]
            if link is None:
                break
            resp = request(self.base(), "GET", link)
        return problems + self._replays(repo, to, brought)

    def _replays(self, repo: Repo, to: str, brought: dict[str, Any]) -> list[str]:
        """The mirror is the tree at ``to``, by git."""
        problems = []
        files = regular_files(repo, to)
        for path in sorted(set(files) ^ set(self.mirror))[:5]:
            problems.append(f"the feed's replay {'lacks' if path in files else 'still holds'} {path} at {to[:12]}")
        blobs = repo.blobs(files[p] for p in brought if p in files and self._sheet(p))
        for path, record in sorted(brought.items()):
            sheet = self._sheet(path)
            if sheet is None or path not in files:
                continue
            try:
                want = stored(sheet, blobs[files[path]])
            except NotARecord:
                continue  # the tree's own invariant checks report an invalid record
            if record != want:
                problems.append(f"{path}: the feed's record differs from the tree at {to[:12]}")
        changed = repo.run("diff", "--name-only", "-z", "--no-renames", self.first, to).decode(errors="replace")
        missed = sorted({p for p in changed.split("\0") if p} - self.touched)
        if missed:
            problems.append(f"git diff {self.first[:12]}..{to[:12]} holds {missed[:3]}, which the feed never reported")
        self.at = to
        return problems

    def _events(self, served: str, within: float = 5.0) -> list[str]:
        """Read the events up to the one naming ``served`` (reconnecting, with the last id, to
        a server that restarted)."""
        problems: list[str] = []
        deadline = time.monotonic() + within
        while self.last_event != served and time.monotonic() < deadline:
            try:
                item = self.stream.next(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:  # the server went away: resume where we were
                time.sleep(0.1)
                with contextlib.suppress(OSError):
                    self.stream = EventStream(self.base(), last_id=self.last_event)
                continue
            kind, event_id, data = item
            payload = json.loads(data)
            if kind == "catch-up":
                if payload["from"] != self.last_event:
                    problems.append(f"a catch-up from {payload['from'][:12]}, not {self.last_event[:12]}")
                self.last_event = payload["to"]
                continue
            if payload["from"] != self.last_event or event_id != payload["to"]:
                problems.append(f"event {event_id} ({payload['from'][:12]} -> {payload['to'][:12]}) does not "
                                f"follow {self.last_event[:12]}")
            self.last_event = payload["to"]
        if self.last_event != served:
            problems.append(f"no event named the served commit {served[:12]} within {within} s "
                            f"(the last: {self.last_event[:12]})")
        return problems

    def close(self) -> None:
        self.stream.close()
