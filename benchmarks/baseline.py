"""The baseline: the seed PR's reload strategy, for side-by-side measurement.

One live, mutable state that readers share. A reload fetches, builds a complete
new state (every record parsed, every index, a new search index), then, under
the data lock, clears the live maps and refills them in place, and empties and
refills the live search tables. Readers must be kept out for the whole refill,
which is why its lock hold grows with the corpus.

The full build itself reuses this project's (fast) ``build_full``, so the
comparison isolates the *strategy*, not parsing speed.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from hotreload.data.snapshot import INDEX_SPECS, Snapshot, build_full
from hotreload.git.repo import GitRepo, branch_ref
from hotreload.service.lock import DataLock


@dataclass
class NaiveReloadResult:
    lock_held_ms: float
    duration_ms: float


class NaiveState:
    def __init__(self, repo: GitRepo, branch: str, remote: str) -> None:
        self.repo, self.branch, self.remote = repo, branch, remote
        self.lock = DataLock()
        self.records: dict[str, dict[str, Any]] = {}
        self.indices: dict[str, dict[Any, Any]] = {spec.name: {} for spec in INDEX_SPECS}
        self.fts = sqlite3.connect(":memory:", check_same_thread=False)
        self.fts.execute("CREATE VIRTUAL TABLE projects USING fts5(id UNINDEXED, title, summary, overview)")
        self.fts.execute("CREATE VIRTUAL TABLE people USING fts5(id UNINDEXED, fullName, bio)")
        commit = repo.branch_commit(branch)
        assert commit is not None
        self._refill(build_full(repo, commit))

    def reload(self) -> NaiveReloadResult:
        started = time.perf_counter()
        tip = self.repo.fetch_branch(self.remote, self.branch)
        local = self.repo.branch_commit(self.branch)
        assert tip is not None and local is not None
        new_state = build_full(self.repo, tip)  # rebuilds even when nothing changed
        with self.lock.hold("naive-reload") as hold:
            self.repo.cas_ref(branch_ref(self.branch), local, tip)
            self._refill(new_state)
        return NaiveReloadResult(hold.held_ms, (time.perf_counter() - started) * 1000)

    def _refill(self, new: Snapshot) -> None:
        """Clear and refill the live structures in place (readers see them change)."""
        for sheet, table in new.tables.items():
            live = self.records.setdefault(sheet, {})
            live.clear()
            live.update(table.by_id)
        for spec in INDEX_SPECS:
            live_index = self.indices[spec.name]
            live_index.clear()
            live_index.update(new.indices[spec.name])
        with self.fts:
            self.fts.execute("DELETE FROM projects")
            self.fts.execute("DELETE FROM people")
            self.fts.executemany("INSERT INTO projects VALUES (?, ?, ?, ?)",
                                 [(p.id, p.title, p.summary, p.overview) for p in new.table("projects").by_id.values()])
            self.fts.executemany("INSERT INTO people VALUES (?, ?, ?)",
                                 [(p.id, p.full_name, p.bio) for p in new.table("people").by_id.values()])
