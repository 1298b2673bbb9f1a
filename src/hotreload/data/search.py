"""The full-text index of one snapshot: an in-memory SQLite database with FTS5
tables for projects (title, summary, overview) and people (fullName, bio), made
with sqlite-utils.

An index is never changed once its snapshot is served. A new snapshot's index is
either built from scratch or *derived*: the previous database is copied with
SQLite's online backup API (a page copy, far cheaper than re-tokenising every
record) and the delta is applied to the copy in one transaction.

The connection is shared by the server's threads; SQLite is built serialized
here (``sqlite3.threadsafety == 3``), and a lock keeps cursor use simple.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlite_utils

from hotreload.data.records import Person, Project

_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SearchTable:
    name: str
    columns: tuple[str, ...]


PROJECTS = SearchTable("projects", ("title", "summary", "overview"))
PEOPLE = SearchTable("people", ("fullName", "bio"))


def _project_row(p: Project) -> dict[str, str | None]:
    return {"id": p.id, "title": p.title, "summary": p.summary, "overview": p.overview}


def _person_row(p: Person) -> dict[str, str | None]:
    return {"id": p.id, "fullName": p.full_name, "bio": p.bio}


def match_expression(query: str) -> str | None:
    """A safe FTS5 query for free text: every word must occur, as a prefix.
    User input never reaches FTS5's own syntax (quotes, NEAR, column filters)."""
    tokens = _TOKEN.findall(query.lower())
    if not tokens:
        return None
    return " ".join(f'"{t}"*' for t in tokens)


class SearchIndex:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        # A sqlite3.Connection sits in a reference cycle (its statement cache), so
        # only a full GC pass would free it, and with it its in-memory database; on
        # a large, quiet heap that was one database per reload, never given back.
        # Close it as soon as this index (shared by the snapshots using it) goes.
        weakref.finalize(self, conn.close)

    @classmethod
    def build(cls, projects: Iterable[Project], people: Iterable[Person]) -> SearchIndex:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        db = sqlite_utils.Database(conn)
        for table, rows in ((PROJECTS, map(_project_row, projects)), (PEOPLE, map(_person_row, people))):
            sql_table = db.table(table.name)
            sql_table.create({"id": str, **dict.fromkeys(table.columns, str)}, pk="id")
            sql_table.insert_all(rows, batch_size=1000)
            sql_table.enable_fts(list(table.columns), create_triggers=True)
        conn.commit()
        return cls(conn)

    def derive(
        self,
        removed_projects: Sequence[str],
        upserted_projects: Sequence[Project],
        removed_people: Sequence[str],
        upserted_people: Sequence[Person],
    ) -> SearchIndex:
        """A new index: this one plus a delta. This one is left untouched."""
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        with self._lock:
            self._conn.backup(conn)
        with conn:  # one transaction; the triggers keep the FTS tables in step
            for table, removed, rows in (
                (PROJECTS, removed_projects, [_project_row(p) for p in upserted_projects]),
                (PEOPLE, removed_people, [_person_row(p) for p in upserted_people]),
            ):
                conn.executemany(f"DELETE FROM [{table.name}] WHERE id = ?", [(i,) for i in removed])
                if rows:
                    cols = ("id", *table.columns)
                    conn.executemany(
                        f"INSERT OR REPLACE INTO [{table.name}] ({', '.join(f'[{c}]' for c in cols)}) "
                        f"VALUES ({', '.join('?' for _ in cols)})",
                        [tuple(r[c] for c in cols) for r in rows],
                    )
        return SearchIndex(conn)

    def search(self, table: SearchTable, query: str) -> list[str]:
        """Ids of matching records, best match first."""
        expression = match_expression(query)
        if expression is None:
            return []
        sql = (
            f"SELECT t.id FROM [{table.name}_fts] f JOIN [{table.name}] t ON t.rowid = f.rowid "
            f"WHERE [{table.name}_fts] MATCH ? ORDER BY f.rank, t.id"
        )
        with self._lock:
            return [row[0] for row in self._conn.execute(sql, (expression,))]

