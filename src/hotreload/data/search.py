"""The full-text index of one snapshot: an in-memory SQLite database with FTS5
tables for projects (title, summary, overview), people (fullName, bio) and
help-wanted roles (title, description), made with sqlite-utils.

An index is never changed once its snapshot is served. A new snapshot's index is
either built from scratch or *derived*: the previous database is copied with
SQLite's online backup API (a page copy, far cheaper than re-tokenising every
record) and the delta is applied to the copy in one transaction.

Each database lives in SQLite's ``memdb`` VFS under a name of its own, so several
connections can open it: the writer that builds it, then one reader per server
thread. Readers never share a connection, so searches run side by side (SQLite
releases the GIL while it steps) instead of queueing on one connection's mutex;
the database is never written once served, so their shared locks never wait.
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlite_utils

from hotreload.data.records import Entry

_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SearchTable:
    name: str
    """The SQL table (its FTS5 shadow is ``<name>_fts``)."""
    sheet: str
    fields: tuple[tuple[str, str], ...]
    """(column, record attribute) pairs."""

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for column, _ in self.fields)

    def row(self, record: Entry) -> tuple[str | None, ...]:
        return (record.key, *(getattr(record, attr) for _, attr in self.fields))


PROJECTS = SearchTable("projects", "projects", (("title", "title"), ("summary", "summary"),
                                                ("overview", "overview")))
PEOPLE = SearchTable("people", "people", (("fullName", "full_name"), ("bio", "bio")))
ROLES = SearchTable("roles", "help-wanted-roles", (("title", "title"), ("description", "description")))
TABLES: dict[str, SearchTable] = {t.sheet: t for t in (PROJECTS, PEOPLE, ROLES)}
SEARCHED_SHEETS: tuple[str, ...] = tuple(TABLES)


def match_expression(query: str) -> str | None:
    """A safe FTS5 query for free text: every word must occur, as a prefix.
    User input never reaches FTS5's own syntax (quotes, NEAR, column filters)."""
    tokens = _TOKEN.findall(query.lower())
    if not tokens:
        return None
    return " ".join(f'"{t}"*' for t in tokens)


_NAMES = itertools.count()


def _new_database() -> tuple[str, sqlite3.Connection]:
    """A fresh in-memory database other connections can open by its URI."""
    uri = f"file:/hotreload-search-{os.getpid()}-{next(_NAMES)}?vfs=memdb"
    return uri, sqlite3.connect(uri, uri=True, check_same_thread=False)


class SearchIndex:
    def __init__(self, uri: str, conn: sqlite3.Connection) -> None:
        self._uri = uri
        self._conn = conn
        """The connection that built the database: kept open (an in-memory database lives
        while one of its connections does) and used to copy it into the next index."""
        self._lock = threading.Lock()
        self._readers: dict[int, sqlite3.Connection] = {}
        # A sqlite3.Connection sits in a reference cycle (its statement cache), so
        # only a full GC pass would free it, and with it its in-memory database; on
        # a large, quiet heap that was one database per reload, never given back.
        # Close them as soon as this index (shared by the snapshots using it) goes.
        weakref.finalize(self, _close_all, conn, self._readers)

    def _reader(self) -> sqlite3.Connection:
        """This thread's own read-only connection to the database."""
        thread = threading.get_ident()
        conn = self._readers.get(thread)
        if conn is None:
            conn = sqlite3.connect(self._uri + "&mode=ro", uri=True, check_same_thread=False)
            with self._lock:
                self._readers[thread] = conn
        return conn

    @classmethod
    def build(cls, records: Mapping[str, Iterable[Entry]]) -> SearchIndex:
        """A new index over the records of each searched sheet (by sheet name)."""
        uri, conn = _new_database()
        db = sqlite_utils.Database(conn)
        for sheet, table in TABLES.items():
            sql_table = db.table(table.name)
            sql_table.create({"id": str, **dict.fromkeys(table.columns, str)}, pk="id")
            cols = ("id", *table.columns)
            sql_table.insert_all((dict(zip(cols, table.row(r), strict=True)) for r in records.get(sheet, ())),
                                 batch_size=1000)
            sql_table.enable_fts(list(table.columns), create_triggers=True)
        conn.commit()
        return cls(uri, conn)

    def derive(self, deltas: Mapping[str, tuple[Sequence[str], Sequence[Entry]]]) -> SearchIndex:
        """A new index: this one plus a delta, per sheet ``(removed keys, upserted
        records)``. This one is left untouched."""
        uri, conn = _new_database()
        with self._lock:
            self._conn.backup(conn)
        with conn:  # one transaction; the triggers keep the FTS tables in step
            for sheet, (removed, upserted) in deltas.items():
                table = TABLES[sheet]
                conn.executemany(f"DELETE FROM [{table.name}] WHERE id = ?", [(i,) for i in removed])
                if upserted:
                    cols = ("id", *table.columns)
                    conn.executemany(
                        f"INSERT OR REPLACE INTO [{table.name}] ({', '.join(f'[{c}]' for c in cols)}) "
                        f"VALUES ({', '.join('?' for _ in cols)})",
                        [table.row(r) for r in upserted],
                    )
        return SearchIndex(uri, conn)

    def image(self) -> bytes:
        """The database as bytes (SQLite's serialize), for the snapshot cache."""
        with self._lock:
            return self._conn.serialize()

    @classmethod
    def from_image(cls, image: bytes) -> SearchIndex:
        """An index from :meth:`image`'s bytes. (A deserialized database is private
        to its connection, so it is copied into a shared one for the readers.)"""
        private = sqlite3.connect(":memory:")
        try:
            private.deserialize(image)
            uri, conn = _new_database()
            private.backup(conn)
        finally:
            private.close()
        return cls(uri, conn)

    def search(self, table: SearchTable, query: str) -> list[str]:
        """Ids of matching records, best match first."""
        expression = match_expression(query)
        if expression is None:
            return []
        sql = (
            f"SELECT t.id FROM [{table.name}_fts] f JOIN [{table.name}] t ON t.rowid = f.rowid "
            f"WHERE [{table.name}_fts] MATCH ? ORDER BY f.rank, t.id"
        )
        return [row[0] for row in self._reader().execute(sql, (expression,))]


def _close_all(writer: sqlite3.Connection, readers: dict[int, sqlite3.Connection]) -> None:
    for conn in list(readers.values()):
        conn.close()
    writer.close()

