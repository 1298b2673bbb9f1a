"""The full-text index of one snapshot: contentless FTS5 tables (decision 56) for
projects, people and help-wanted roles, each in an in-memory SQLite database of its own.

An index is never changed once its snapshot is served. A new snapshot's index is
either built from scratch or *derived*: each changed sheet's database is copied
(SQLite's backup) and only the changed records are written to the copy. A record keeps
its rowid while it lives; each sheet's :class:`~hotreload.data.ranking.Ranker` ranks a
query of ASCII letters and digits with arrays (decision 61), SQLite ranks any other
(``café``, ``foo_bar``; decision 170).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlite_utils

from hotreload.data.ranking import Floats, Ints, Ranker, rankable
from hotreload.data.records import Entry

_TOKEN = re.compile(r"\w+", re.UNICODE)

Row = tuple[str | None, ...]
"""A record as its table indexes it: ``SearchTable.row``, the id then each column."""


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

    def row(self, record: Entry) -> Row:
        return (record.key, *(getattr(record, attr) for _, attr in self.fields))


PROJECTS = SearchTable("projects", "projects", (("title", "title"), ("summary", "summary"),
                                                ("overview", "overview")))
PEOPLE = SearchTable("people", "people", (("fullName", "full_name"), ("bio", "bio")))
ROLES = SearchTable("roles", "help-wanted-roles", (("title", "title"), ("description", "description")))
TABLES: dict[str, SearchTable] = {t.sheet: t for t in (PROJECTS, PEOPLE, ROLES)}


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


def _connect() -> sqlite3.Connection:
    """An in-memory database, used by every server thread (SQLite serialises them)."""
    return sqlite3.connect(":memory:", check_same_thread=False)


def _create(conn: sqlite3.Connection, table: SearchTable) -> None:
    """The schema: record ids by rowid (made with sqlite-utils), and a contentless
    FTS5 table over the searched columns (sqlite-utils makes external-content ones
    only), FTS5's default tokenizer. Rowids by record id are kept in memory, not as
    an index here (decision 63)."""
    sqlite_utils.Database(conn).table(table.name).create({"rowid": int, "id": str}, pk="rowid")
    columns = ", ".join(f"[{c}]" for c in table.columns)
    conn.execute(f"CREATE VIRTUAL TABLE [{table.name}_fts] USING fts5({columns}, content='')")


def _write_fts(conn: sqlite3.Connection, table: SearchTable, rows: Iterable[tuple[int, Row]], delete: bool) -> None:
    """Index ``(rowid, row)`` pairs (a row is ``table.row(record)``), or remove them: a
    contentless FTS5 row is deleted by handing FTS5 the values it was indexed with."""
    rows = list(rows)
    fts, columns, marks = f"[{table.name}_fts]", ", ".join(f"[{c}]" for c in table.columns), ", ?" * len(table.fields)
    into, values = (f"{fts}, rowid", "'delete', ?") if delete else ("rowid", "?")
    conn.executemany(f"INSERT INTO {fts} ({into}, {columns}) VALUES ({values}{marks})",
                     ((rowid, *row[1:]) for rowid, row in rows))
    if delete:
        conn.executemany(f"DELETE FROM [{table.name}] WHERE rowid = ?", ((rowid,) for rowid, _ in rows))
    else:
        conn.executemany(f"INSERT OR IGNORE INTO [{table.name}] (rowid, id) VALUES (?, ?)",
                         ((rowid, row[0]) for rowid, row in rows))


class _Sheet:
    """One sheet's full-text index: its database, never written once served, its record
    ids by rowid and rowids by id, and its ranker. A derivation copies the database and
    applies the change to the copy in one transaction."""

    def __init__(self, table: SearchTable, conn: sqlite3.Connection, rowid_of: Mapping[str, int],
                 ids: np.ndarray | None = None, ranker: Ranker | None = None) -> None:
        self.table = table
        self.conn = conn
        self.lock = threading.Lock()
        # A sqlite3.Connection sits in a reference cycle (its statement cache), so only a
        # full GC pass would free it, and with it its in-memory database: close it as soon
        # as this sheet (shared by the indices using it) goes.
        weakref.finalize(self, conn.close)
        self.rowid_of = rowid_of
        """Each record's rowid by id; shared with the derived sheets until a record comes or goes."""
        if ids is None:
            ids = np.full(max(rowid_of.values(), default=0) + 1, None, dtype=object)
            ids[np.fromiter(rowid_of.values(), dtype=np.int64, count=len(rowid_of))] = list(rowid_of)
        self.ids = ids
        """The record ids by rowid (an object array, None where no row is); its length is the
        rowid the next new record gets (rowids are never reused within a lineage)."""
        self.ranker = ranker or Ranker(table.name, table.columns, conn)

    @classmethod
    def of(cls, table: SearchTable, conn: sqlite3.Connection) -> _Sheet:
        return cls(table, conn, dict(conn.execute(f"SELECT id, rowid FROM [{table.name}]")))

    def id_array(self, rowids: Ints) -> np.ndarray:
        """The record id of each of ``rowids`` (live rows), as an object array."""
        return self.ids[rowids]

    def ids_of(self, rowids: Iterable[int]) -> dict[int, str]:
        """Record ids by rowid, of live rows."""
        asked = np.fromiter(rowids, dtype=np.int64)
        return dict(zip(asked.tolist(), self.id_array(asked).tolist(), strict=True))

    def copy(self) -> sqlite3.Connection:
        copy = _connect()
        with self.lock:
            self.conn.backup(copy)
        return copy

    def image(self) -> bytes:
        with self.lock:
            return self.conn.serialize()

    def derive(self, gone: Sequence[Entry], new: Sequence[Entry]) -> tuple[_Sheet, SheetDelta]:
        """This sheet less ``gone`` (records as they were indexed) plus ``new`` (a
        changed record is in both). A record in both keeps its rowid, so a rowid names
        one record for as long as it lives (the ranker and the project facets key their
        arrays by it). This sheet is left untouched."""
        table = self.table
        old_rows, new_rows = [table.row(r) for r in gone], [table.row(r) for r in new]
        found = {str(row[0]): self.rowid_of[str(row[0])] for row in old_rows}
        kept = {str(row[0]) for row in new_rows}
        removed = {record_id: rowid for record_id, rowid in found.items() if record_id not in kept}
        fresh = len(self.ids)
        written: list[tuple[int, Row]] = []
        for row in new_rows:
            rowid = found.get(str(row[0]))
            if rowid is None:
                rowid, fresh = fresh, fresh + 1
            written.append((rowid, row))
        conn = self.copy()
        with conn:  # one transaction
            _write_fts(conn, table, [(found[str(row[0])], row) for row in old_rows], delete=True)
            _write_fts(conn, table, written, delete=False)
        ids = np.full(fresh, None, dtype=object)  # a pointer copy, patched
        ids[:len(self.ids)] = self.ids
        ids[np.fromiter(removed.values(), dtype=np.int64, count=len(removed))] = None
        written_ids = {str(row[0]): rowid for rowid, row in written}
        ids[list(written_ids.values())] = list(written_ids)
        rowid_of = self.rowid_of
        if removed or fresh > len(self.ids):  # a record came or went
            rowid_of = {k: v for k, v in rowid_of.items() if k not in removed} | written_ids
        ranker = self.ranker.derive(conn, removed.values(), [(rowid, row[1:]) for rowid, row in written])
        return _Sheet(table, conn, rowid_of, ids, ranker), SheetDelta(removed, written_ids)


@dataclass(frozen=True)
class SheetDelta:
    """How a derived index's database for one sheet differs from its parent's."""
    removed: Mapping[str, int]
    """Record id -> rowid of the records gone for good."""
    written: Mapping[str, int]
    """Record id -> rowid of the records new or rewritten (a rewritten record keeps its rowid)."""


class SearchIndex:
    def __init__(self, sheets: Mapping[str, _Sheet], deltas: Mapping[str, SheetDelta] | None = None) -> None:
        self._sheets = dict(sheets)
        """By sheet name; shared with the indices derived from this one where unchanged."""
        self.deltas: Mapping[str, SheetDelta] = dict(deltas or {})
        """Per sheet changed from the index this one was derived from; empty for a built one."""

    @classmethod
    def build(cls, records: Mapping[str, Iterable[Entry]]) -> SearchIndex:
        """A new index over the records of each searched sheet (by sheet name)."""
        sheets = {}
        for sheet, table in TABLES.items():
            conn = _connect()
            with conn:
                _create(conn, table)
                _write_fts(conn, table, enumerate((table.row(r) for r in records.get(sheet, ())), start=1),
                           delete=False)
            sheets[sheet] = _Sheet.of(table, conn)
        return cls(sheets)

    def derive(self, deltas: Mapping[str, tuple[Sequence[Entry], Sequence[Entry]]]) -> SearchIndex:
        """A new index: this one plus a delta, per sheet ``(records as they were
        indexed and are gone, records new or changed)``; a changed record is in
        both. A changed sheet's database is copied and changed; this index is left
        untouched."""
        sheets, changed = dict(self._sheets), {}
        for sheet, (gone, new) in deltas.items():
            if gone or new:
                sheets[sheet], changed[sheet] = self._sheets[sheet].derive(gone, new)
        return SearchIndex(sheets, changed)

    def image(self) -> bytes:
        """The databases as bytes (SQLite's serialize of each sheet's database,
        in ``TABLES`` order, each after its length as 8 bytes), for the snapshot cache."""
        images = [self._sheets[sheet].image() for sheet in TABLES]
        return b"".join(len(image).to_bytes(8, "little") + image for image in images)

    @classmethod
    def from_image(cls, image: bytes) -> SearchIndex:
        """An index from :meth:`image`'s bytes; raises ValueError on any other bytes."""
        sheets, at = {}, 0
        for sheet, table in TABLES.items():
            size = int.from_bytes(image[at:at + 8], "little")
            part = image[at + 8:at + 8 + size]
            if len(part) != size or size == 0:
                raise ValueError("the search image is cut short")
            conn = _connect()
            conn.deserialize(part)
            sheets[sheet] = _Sheet.of(table, conn)
            at += 8 + size
        if at != len(image):
            raise ValueError("the search image has bytes after its last database")
        return cls(sheets)

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
        return [row[0] for row in self._sheets[table.sheet].conn.execute(sql, (expression,))]

    def search(self, table: SearchTable, query: str) -> list[str]:
        """Ids of matching records, best match first (rank, then id)."""
        ranked = self.rank(table, query)
        if ranked is None:
            return self._by_sqlite(table, query, "t.id")
        if ranked.ranks is None or not len(ranked):
            return ranked.window(0, len(ranked), lambda rowids: self.ids_of(table, rowids.tolist()))
        # every match in order, sorted by numpy (which lets go of the GIL): a people
        # search of a common word matches tens of thousands, and ties in rank are many
        ids = self._sheets[table.sheet].id_array(ranked.rowids)
        order = np.lexsort((ids.astype(str), ranked.ranks))
        return ids[order].tolist()  # type: ignore[no-any-return]

    def search_rowids(self, table: SearchTable, query: str) -> Ints:
        """Rowids of matching records, best match first (SQLite's ranking: for any query)."""
        return np.array(self._by_sqlite(table, query, "f.rowid"), dtype=np.int64)

    def rank(self, table: SearchTable, query: str) -> Ranked | None:
        """Matching records in the order of :meth:`search`, ranked with arrays
        (:mod:`hotreload.data.ranking`), or None for a query only SQLite ranks
        (a word of other than ASCII letters and digits; decision 170)."""
        words = query_words(query)
        if not words:
            return Ranked(np.zeros(0, dtype=np.int64), None)
        if not rankable(words):
            return None
        rowids, ranks = self._sheets[table.sheet].ranker.rank(words)
        return Ranked(rowids, ranks)

    def ids_of(self, table: SearchTable, rowids: Iterable[int]) -> dict[int, str]:
        """Record ids by rowid."""
        return self._sheets[table.sheet].ids_of(int(r) for r in rowids)

    def rowid_map(self, table: SearchTable) -> Mapping[str, int]:
        """The rowid of every record, by record id (shared with the derived indices
        until a record comes or goes: do not modify)."""
        return self._sheets[table.sheet].rowid_of


@dataclass(frozen=True, eq=False)
class Ranked:
    """Records (by rowid) in search order: by rank, then by id. Rows come sorted by rank
    only; the ids of the first rows are put in their final order as windows need them,
    each run of equal rank at once, and kept: the first window of a query costs the
    rows up to its end (a never-asked search's first page, the rows tied with it), a
    repeated one costs a slice of that list, whatever the number of matches."""

    rowids: Ints
    ranks: Floats | None
    """Each row's rank, ascending (rows of equal rank in any order); None when ``rowids``
    are in their final order."""
    _ids: list[str] = field(default_factory=list, init=False, repr=False)
    """The record ids of the first rows, in search order, as far as a window has needed."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

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
        called only for rows no earlier window reached)."""
        stop = min(stop, len(self.rowids))
        if start >= stop:
            return []
        with self._lock:
            if len(self._ids) < stop:
                self._settle(stop, ids_of)
            return self._ids[start:stop]

    def _settle(self, stop: int, ids_of: Callable[[Ints], Mapping[int, str]]) -> None:
        """Put the rows from the last settled one to ``stop`` in their final order, and
        the rest of the run of equal rank holding row ``stop - 1`` (settled rows always
        end at a run's end, so the rows sorted here are whole runs)."""
        lo = len(self._ids)
        hi = stop if self.ranks is None else int(np.searchsorted(self.ranks, self.ranks[stop - 1], "right"))
        rows = self.rowids[lo:hi]
        ids = ids_of(rows)
        if self.ranks is None:
            self._ids.extend(ids[r] for r in rows.tolist())
        else:
            ordered = sorted(zip(self.ranks[lo:hi].tolist(), (ids[r] for r in rows.tolist()), strict=True))
            self._ids.extend(record_id for _, record_id in ordered)
