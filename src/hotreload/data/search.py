"""The full-text index of one snapshot: FTS5 tables for projects (title,
summary, overview), people (fullName, bio) and help-wanted roles (title,
description), each in an in-memory SQLite database of its own.

An index is never changed once its snapshot is served. A new snapshot's index is
either built from scratch or *derived*: only the databases of the sheets that
changed are copied, with SQLite's online backup API (a page copy, far cheaper than
re-tokenising every record), and the delta is applied to the copy in one
transaction; the others are shared with the previous index. A record keeps its
rowid while it lives, and each database has a :class:`~hotreload.data.ranking.Ranker`
that ranks word-prefix searches with arrays, derived alongside it (decision 61).

The FTS5 tables are *contentless* (``content=''``): the text lives in the records
in memory, not a second time in SQLite. A database holds the full-text index and
a table mapping its rowids to record ids, nothing else, so the copy a one-record
reload makes is about a third of what it was with the text kept (decision 56). A
contentless row is removed with FTS5's ``delete`` command and the values it was
indexed with, which are the old record's, at hand in the previous snapshot.

Each database lives in SQLite's ``memdb`` VFS under a name of its own, so several
connections can open it: the writer that builds it, then one reader per server
thread. Readers never share a connection, so searches run side by side (SQLite
releases the GIL while it steps) instead of queueing on one connection's mutex;
the database is never written once served, so their shared locks never wait.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlite_utils

from hotreload.data.ranking import Floats, Ints, Ranker, rankable
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


def query_words(query: str) -> list[str]:
    """The words of a free-text query, each searched as a prefix."""
    return _TOKEN.findall(query.lower())


def match_expression(query: str) -> str | None:
    """A safe FTS5 query for free text: every word must occur, as a prefix.
    User input never reaches FTS5's own syntax (quotes, NEAR, column filters)."""
    tokens = query_words(query)
    if not tokens:
        return None
    return " ".join(f'"{t}"*' for t in tokens)


_NAMES = itertools.count()


class _Database:
    """One table's in-memory database, which other connections open by its URI."""

    def __init__(self) -> None:
        self.uri = f"file:/hotreload-search-{os.getpid()}-{next(_NAMES)}?vfs=memdb"
        self.conn = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
        """The connection that built the database: kept open (an in-memory database lives
        while one of its connections does) and used to copy it."""
        self.lock = threading.Lock()
        self._readers: dict[int, sqlite3.Connection] = {}
        # A sqlite3.Connection sits in a reference cycle (its statement cache), so
        # only a full GC pass would free it, and with it its in-memory database; on
        # a large, quiet heap that was one database per reload, never given back.
        # Close them as soon as this database (shared by the indices using it) goes.
        weakref.finalize(self, _close_all, self.conn, self._readers)

    def reader(self) -> sqlite3.Connection:
        """This thread's own read-only connection."""
        thread = threading.get_ident()
        conn = self._readers.get(thread)
        if conn is None:
            conn = sqlite3.connect(self.uri + "&mode=ro", uri=True, check_same_thread=False)
            with self.lock:
                self._readers[thread] = conn
        return conn

    def copy(self) -> _Database:
        copy = _Database()
        with self.lock:
            self.conn.backup(copy.conn)
        return copy

    def image(self) -> bytes:
        with self.lock:
            return self.conn.serialize()

    @classmethod
    def from_image(cls, image: bytes) -> _Database:
        # a deserialized database is private to its connection: copy it into a shared one
        private = sqlite3.connect(":memory:")
        try:
            private.deserialize(image)
            db = cls()
            private.backup(db.conn)
        finally:
            private.close()
        return db


def _create(db: _Database, table: SearchTable) -> None:
    """The schema: record ids by rowid (made with sqlite-utils), and a contentless
    FTS5 table over the searched columns (sqlite-utils makes external-content ones
    only), FTS5's default tokenizer. Rowids by record id are kept in memory
    (:class:`SearchIndex`), not as an index here: that index was a third of the
    pages a reload copies (decision 63)."""
    sqlite_utils.Database(db.conn).table(table.name).create({"rowid": int, "id": str}, pk="rowid")
    columns = ", ".join(f"[{c}]" for c in table.columns)
    db.conn.execute(f"CREATE VIRTUAL TABLE [{table.name}_fts] USING fts5({columns}, content='')")


def _insert(db: _Database, table: SearchTable, rows: list[tuple[int, tuple[str | None, ...]]]) -> None:
    """Index ``(rowid, row)`` pairs; a row is ``table.row(record)``."""
    db.conn.executemany(f"INSERT OR IGNORE INTO [{table.name}] (rowid, id) VALUES (?, ?)",
                        ((rowid, row[0]) for rowid, row in rows))
    marks = ", ".join("?" for _ in table.fields)
    db.conn.executemany(
        f"INSERT INTO [{table.name}_fts] (rowid, {', '.join(f'[{c}]' for c in table.columns)}) "
        f"VALUES (?, {marks})",
        ((rowid, *row[1:]) for rowid, row in rows))


def _apply(db: _Database, table: SearchTable, gone: Sequence[Entry], new: Sequence[Entry],
           rowid_of: Mapping[str, int]) -> tuple[dict[str, int], list[tuple[int, tuple[str | None, ...]]]]:
    """Remove ``gone`` (records as they were indexed: a contentless row is deleted
    by handing FTS5 the values it was indexed with) and index ``new``; ``rowid_of``
    is the database's rowid by record id. A record in both keeps its rowid, so a
    rowid names one record for as long as it lives (the ranker and the project
    facets key their arrays by it). Returns the records removed for good
    (id -> rowid) and the (rowid, row) pairs written."""
    old_rows, new_rows = [table.row(r) for r in gone], [table.row(r) for r in new]
    found = {str(row[0]): rowid_of[str(row[0])] for row in old_rows}
    db.conn.executemany(
        f"INSERT INTO [{table.name}_fts] ([{table.name}_fts], rowid, {', '.join(f'[{c}]' for c in table.columns)}) "
        f"VALUES ('delete', ?, {', '.join('?' for _ in table.fields)})",
        ((found[str(row[0])], *row[1:]) for row in old_rows))
    kept = {row[0] for row in new_rows}
    removed = {record_id: rowid for record_id, rowid in found.items() if record_id not in kept}
    db.conn.executemany(f"DELETE FROM [{table.name}] WHERE rowid = ?", ((rowid,) for rowid in removed.values()))
    fresh = db.conn.execute(f"SELECT coalesce(max(rowid), 0) + 1 FROM [{table.name}]").fetchone()[0]
    written = []
    for row in new_rows:
        rowid = found.get(str(row[0]))
        if rowid is None:
            rowid, fresh = fresh, fresh + 1
        written.append((rowid, row))
    _insert(db, table, written)
    return removed, written


@dataclass(frozen=True)
class SheetDelta:
    """How a derived index's database for one sheet differs from its parent's."""
    removed: Mapping[str, int]
    """Record id -> rowid of the records gone for good."""
    written: Mapping[str, int]
    """Record id -> rowid of the records new or rewritten (a rewritten record keeps its rowid)."""


class SearchIndex:
    def __init__(self, databases: Mapping[str, _Database], rankers: Mapping[str, Ranker] | None = None,
                 deltas: Mapping[str, SheetDelta] | None = None,
                 rowids: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._databases = dict(databases)
        """By sheet name; shared with the indices derived from this one where unchanged."""
        self._rowids = dict(rowids or {})
        """Per sheet, each record's rowid by id (read from the database when not given);
        shared with the derived indices until a record comes or goes."""
        for sheet, db in self._databases.items():
            if sheet not in self._rowids:
                self._rowids[sheet] = dict(db.conn.execute(f"SELECT id, rowid FROM [{TABLES[sheet].name}]"))
        self._rankers = dict(rankers or {})
        for sheet, db in self._databases.items():
            if sheet not in self._rankers:
                self._rankers[sheet] = Ranker(TABLES[sheet].name, TABLES[sheet].columns, db.reader)
        self.deltas: Mapping[str, SheetDelta] = dict(deltas or {})
        """Per sheet changed from the index this one was derived from; empty for a built one."""

    @classmethod
    def build(cls, records: Mapping[str, Iterable[Entry]]) -> SearchIndex:
        """A new index over the records of each searched sheet (by sheet name)."""
        databases = {}
        for sheet, table in TABLES.items():
            db = databases[sheet] = _Database()
            rows = [table.row(r) for r in records.get(sheet, ())]
            with db.conn:
                _create(db, table)
                _insert(db, table, list(enumerate(rows, start=1)))
        return cls(databases)

    def derive(self, deltas: Mapping[str, tuple[Sequence[Entry], Sequence[Entry]]]) -> SearchIndex:
        """A new index: this one plus a delta, per sheet ``(records as they were
        indexed and are gone, records new or changed)``; a changed record is in
        both. Only the changed sheets' databases are copied; this index is left
        untouched."""
        databases, rankers, rowids, changed = dict(self._databases), dict(self._rankers), dict(self._rowids), {}
        for sheet, (gone, new) in deltas.items():
            if not gone and not new:
                continue
            table, db = TABLES[sheet], self._databases[sheet].copy()
            with db.conn:  # one transaction
                removed, written = _apply(db, table, gone, new, rowids[sheet])
            databases[sheet] = db
            written_ids = {str(row[0]): rowid for rowid, row in written}
            if removed or any(record_id not in rowids[sheet] for record_id in written_ids):
                rowid_of = rowids[sheet] = dict(rowids[sheet])  # a record came or went
                for record_id in removed:
                    del rowid_of[record_id]
                rowid_of.update(written_ids)
            rankers[sheet] = self._rankers[sheet].derive(
                db.reader, removed.values(), [(rowid, row[1:]) for rowid, row in written])
            changed[sheet] = SheetDelta(removed, written_ids)
        return SearchIndex(databases, rankers, changed, rowids)

    def image(self) -> bytes:
        """The databases as bytes (SQLite's serialize of each, in ``TABLES`` order,
        each after its length as 8 bytes), for the snapshot cache."""
        images = [self._databases[sheet].image() for sheet in TABLES]
        return b"".join(len(image).to_bytes(8, "little") + image for image in images)

    @classmethod
    def from_image(cls, image: bytes) -> SearchIndex:
        """An index from :meth:`image`'s bytes; raises ValueError on any other bytes."""
        databases, at = {}, 0
        for sheet in TABLES:
            size = int.from_bytes(image[at:at + 8], "little")
            part = image[at + 8:at + 8 + size]
            if len(part) != size or size == 0:
                raise ValueError("the search image is cut short")
            databases[sheet] = _Database.from_image(part)
            at += 8 + size
        if at != len(image):
            raise ValueError("the search image has bytes after its last database")
        return cls(databases)

    def _by_sqlite(self, table: SearchTable, query: str, column: str) -> list[Any]:
        """``column`` (of the FTS5 table ``f`` or the id table ``t``) of each match, in
        SQLite's order: rank, then id."""
        expression = match_expression(query)
        if expression is None:
            return []
        sql = (
            f"SELECT {column} FROM [{table.name}_fts] f JOIN [{table.name}] t ON t.rowid = f.rowid "
            f"WHERE [{table.name}_fts] MATCH ? ORDER BY f.rank, t.id"
        )
        return [row[0] for row in self._databases[table.sheet].reader().execute(sql, (expression,))]

    def search(self, table: SearchTable, query: str) -> list[str]:
        """Ids of matching records, best match first."""
        return self._by_sqlite(table, query, "t.id")

    def search_rowids(self, table: SearchTable, query: str) -> Ints:
        """Rowids of matching records, best match first (SQLite's ranking: for any query)."""
        return np.array(self._by_sqlite(table, query, "f.rowid"), dtype=np.int64)

    def rank(self, table: SearchTable, query: str) -> Ranked | None:
        """Matching records in the order of :meth:`search`, ranked with arrays
        (:mod:`hotreload.data.ranking`), or None for a query only SQLite ranks
        (a word that is not ASCII letters and digits)."""
        words = query_words(query)
        if not words:
            return Ranked(np.zeros(0, dtype=np.int64), None)
        if not rankable(words):
            return None
        rowids, ranks = self._rankers[table.sheet].rank(words)
        return Ranked(rowids, ranks)

    def ids_of(self, table: SearchTable, rowids: Iterable[int]) -> dict[int, str]:
        """Record ids by rowid."""
        return dict(self._databases[table.sheet].reader().execute(
            f"SELECT rowid, id FROM [{table.name}] WHERE rowid IN (SELECT value FROM json_each(?))",
            (json.dumps([int(r) for r in rowids]),)))

    def rowid_map(self, table: SearchTable) -> Mapping[str, int]:
        """The rowid of every record, by record id (shared with the derived indices
        until a record comes or goes: do not modify)."""
        return self._rowids[table.sheet]


@dataclass(frozen=True, eq=False)
class Ranked:
    """Records (by rowid) in search order: by rank, then by id. Rows are sorted by
    rank only; rows of equal rank are put in id order when a window needs them,
    which costs the ids of those rows, not of every match."""

    rowids: Ints
    ranks: Floats | None
    """Each row's rank, ascending (rows of equal rank in any order); None when ``rowids``
    are in their final order."""

    def __len__(self) -> int:
        return len(self.rowids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ranked):
            return NotImplemented
        if self.ranks is None or other.ranks is None:
            return self.ranks is other.ranks and np.array_equal(self.rowids, other.rowids)
        return np.array_equal(self.rowids, other.rowids) and np.array_equal(self.ranks, other.ranks)

    __hash__ = None  # type: ignore[assignment]

    def where(self, keep: np.ndarray) -> Ranked:
        """The rows for which ``keep`` (a mask by rowid) holds, in the same order."""
        selected = keep[self.rowids] if len(self.rowids) else np.zeros(0, dtype=np.bool_)
        return Ranked(self.rowids[selected], None if self.ranks is None else self.ranks[selected])

    def window(self, start: int, stop: int, ids_of: Callable[[Ints], Mapping[int, str]]) -> list[str]:
        """Record ids ``start:stop`` in search order (``ids_of`` gives the ids of rowids:
        called once, for the window and the rows tied with its ends)."""
        stop = min(stop, len(self.rowids))
        if start >= stop:
            return []
        if self.ranks is None:
            window = self.rowids[start:stop]
            ids = ids_of(window)
            return [ids[r] for r in window.tolist()]
        lo = int(np.searchsorted(self.ranks, self.ranks[start], "left"))
        hi = int(np.searchsorted(self.ranks, self.ranks[stop - 1], "right"))
        group = self.rowids[lo:hi]
        ids = ids_of(group)
        ordered = sorted(zip(self.ranks[lo:hi].tolist(), (ids[r] for r in group.tolist()), strict=True))
        return [record_id for _, record_id in ordered[start - lo:stop - lo]]


def _close_all(writer: sqlite3.Connection, readers: dict[int, sqlite3.Connection]) -> None:
    for conn in list(readers.values()):
        conn.close()
    writer.close()

