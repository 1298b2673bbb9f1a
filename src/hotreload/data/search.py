"""The full-text index of one snapshot: FTS5 tables for projects (title,
summary, overview), people (fullName, bio) and help-wanted roles (title,
description), each in in-memory SQLite databases of its own.

An index is never changed once its snapshot is served. A new snapshot's index is
either built from scratch or *derived*: each changed sheet's database is copied
(SQLite's backup) and the change applied to the copy in one transaction, indexing
only the records that changed. A record keeps its rowid while it lives, and each
sheet has a :class:`~hotreload.data.ranking.Ranker` that ranks searches with arrays,
derived alongside it (decision 61). Every query whose words FTS5 reads as one token
each is ranked there; the rest (a word FTS5 splits, like ``foo_bar``) by SQLite.

The FTS5 tables are *contentless* (``content=''``): the text lives in the records
in memory, not a second time in SQLite. A database holds the full-text index and
a table mapping its rowids to record ids, nothing else (decision 56). A
contentless row is removed with FTS5's ``delete`` command and the values it was
indexed with, which are the old record's, at hand in the previous snapshot.

Each database is an in-memory SQLite database with one connection, which every
server thread uses (SQLite serialises them; the database is never written once served).
"""

from __future__ import annotations

import functools
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


def prefix_tokens(words: Sequence[str]) -> list[str] | None:
    """The token FTS5 searches each query word as (a prefix: ``"word"*``), or None
    when a word is not exactly one token to FTS5 (``foo_bar`` is two, ``_`` none),
    which only SQLite's phrase matching answers. Words of ASCII letters and digits
    are their own token; any other is put through FTS5's tokenizer (``café`` is
    ``cafe``)."""
    if rankable(words):
        return list(words)
    found = []
    for word in words:
        tokens = _fts5_tokens(word)
        if len(tokens) != 1:
            return None
        found.append(tokens[0])
    return found


_TOKENIZER_LOCK = threading.Lock()
_TOKENIZER: list[sqlite3.Connection] = []


@functools.lru_cache(maxsize=4096)
def _fts5_tokens(word: str) -> tuple[str, ...]:
    """``word`` as FTS5's default tokenizer (the search tables') reads it: the row
    is indexed in a scratch table and its tokens read back in order."""
    with _TOKENIZER_LOCK:
        if not _TOKENIZER:
            conn = sqlite3.connect(":memory:", check_same_thread=False)
            conn.execute("CREATE VIRTUAL TABLE words USING fts5(word)")
            conn.execute("CREATE VIRTUAL TABLE tokens USING fts5vocab(words, instance)")
            _TOKENIZER.append(conn)
        conn = _TOKENIZER[0]
        with conn:
            conn.execute("INSERT INTO words (rowid, word) VALUES (1, ?)", (word,))
            tokens = tuple(term for (term,) in conn.execute("SELECT term FROM tokens ORDER BY offset"))
            conn.execute("DELETE FROM words")
        return tokens


class _Database:
    """One table's in-memory database."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.lock = threading.Lock()
        # A sqlite3.Connection sits in a reference cycle (its statement cache), so only a
        # full GC pass would free it, and with it its in-memory database; on a large,
        # quiet heap that was one database per reload, never given back. Close it as
        # soon as this database (shared by the indices using it) goes.
        weakref.finalize(self, self.conn.close)

    def reader(self) -> sqlite3.Connection:
        return self.conn

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
        db = cls()
        db.conn.deserialize(image)
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


def _delete(db: _Database, table: SearchTable, rows: Iterable[tuple[int, Row]]) -> None:
    """Remove rows by rowid: a contentless FTS5 row is deleted by handing FTS5 the
    values it was indexed with (``rows``: rowid and ``table.row(record)`` as indexed)."""
    rows = list(rows)
    columns = ", ".join(f"[{c}]" for c in table.columns)
    db.conn.executemany(
        f"INSERT INTO [{table.name}_fts] ([{table.name}_fts], rowid, {columns}) "
        f"VALUES ('delete', ?, {', '.join('?' for _ in table.fields)})",
        ((rowid, *row[1:]) for rowid, row in rows))
    db.conn.executemany(f"DELETE FROM [{table.name}] WHERE rowid = ?", ((rowid,) for rowid, _ in rows))


class _Sheet:
    """One sheet's full-text index: its database, never written once served, and its
    record ids by rowid. A derivation copies the database and applies the change to
    the copy in one transaction."""

    def __init__(self, table: SearchTable, db: _Database, ids: np.ndarray, next_rowid: int) -> None:
        self.table = table
        self.db = db
        self.ids = ids
        """The record ids by rowid (an object array, None where no row is)."""
        self.next_rowid = next_rowid
        """The rowid the next new record gets (rowids are never reused within a lineage)."""

    @classmethod
    def built(cls, table: SearchTable, db: _Database, rowids: Mapping[str, int]) -> _Sheet:
        """A sheet of ``db``, whose records have ``rowids`` (by id: the same strings
        serve as the ids by rowid)."""
        next_rowid = max(rowids.values(), default=0) + 1
        ids = np.full(next_rowid, None, dtype=object)
        ids[np.fromiter(rowids.values(), dtype=np.int64, count=len(rowids))] = list(rowids)
        return cls(table, db, ids, next_rowid)

    def id_array(self, rowids: Ints) -> np.ndarray:
        """The record id of each of ``rowids`` (live rows), as an object array."""
        return self.ids[rowids]

    def ids_of(self, rowids: Iterable[int]) -> dict[int, str]:
        """Record ids by rowid, of live rows."""
        asked = np.fromiter(rowids, dtype=np.int64)
        return dict(zip(asked.tolist(), self.id_array(asked).tolist(), strict=True))

    def derive(self, gone: Sequence[Entry], new: Sequence[Entry], rowid_of: Mapping[str, int]
               ) -> tuple[_Sheet, dict[str, int], list[tuple[int, Row]]]:
        """This sheet less ``gone`` (records as they were indexed) plus ``new`` (a
        changed record is in both); ``rowid_of`` is the rowid by record id. A record
        in both keeps its rowid, so a rowid names one record for as long as it lives
        (the ranker and the project facets key their arrays by it). Returns the new
        sheet, the records removed for good (id -> rowid) and the (rowid, row) pairs
        written. This sheet is left untouched."""
        table = self.table
        old_rows, new_rows = [table.row(r) for r in gone], [table.row(r) for r in new]
        found = {str(row[0]): rowid_of[str(row[0])] for row in old_rows}
        kept = {str(row[0]) for row in new_rows}
        removed = {record_id: rowid for record_id, rowid in found.items() if record_id not in kept}
        fresh = self.next_rowid
        written: list[tuple[int, Row]] = []
        for row in new_rows:
            rowid = found.get(str(row[0]))
            if rowid is None:
                rowid, fresh = fresh, fresh + 1
            written.append((rowid, row))
        db = self.db.copy()
        with db.conn:  # one transaction
            _delete(db, table, [(found[str(row[0])], row) for row in old_rows])
            _insert(db, table, written)
        ids = np.full(fresh, None, dtype=object)  # a pointer copy, patched
        ids[:len(self.ids)] = self.ids
        ids[np.fromiter(removed.values(), dtype=np.int64, count=len(removed))] = None
        for rowid, row in written:
            ids[rowid] = row[0]
        return _Sheet(table, db, ids, fresh), removed, written


@dataclass(frozen=True)
class SheetDelta:
    """How a derived index's database for one sheet differs from its parent's."""
    removed: Mapping[str, int]
    """Record id -> rowid of the records gone for good."""
    written: Mapping[str, int]
    """Record id -> rowid of the records new or rewritten (a rewritten record keeps its rowid)."""


class SearchIndex:
    def __init__(self, sheets: Mapping[str, _Sheet], rankers: Mapping[str, Ranker] | None = None,
                 deltas: Mapping[str, SheetDelta] | None = None,
                 rowids: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._sheets = dict(sheets)
        """By sheet name; shared with the indices derived from this one where unchanged."""
        self._rowids = dict(rowids or {})
        """Per sheet, each record's rowid by id; shared with the derived indices until
        a record comes or goes."""
        self._rankers = dict(rankers or {})
        for sheet, part in self._sheets.items():
            if sheet not in self._rankers:
                self._rankers[sheet] = Ranker(TABLES[sheet].name, TABLES[sheet].columns, part.db.reader)
        self.deltas: Mapping[str, SheetDelta] = dict(deltas or {})
        """Per sheet changed from the index this one was derived from; empty for a built one."""

    @classmethod
    def _of_databases(cls, databases: Mapping[str, _Database]) -> SearchIndex:
        sheets, rowids = {}, {}
        for sheet, db in databases.items():
            rowids[sheet] = dict(db.conn.execute(f"SELECT id, rowid FROM [{TABLES[sheet].name}]"))
            sheets[sheet] = _Sheet.built(TABLES[sheet], db, rowids[sheet])
        return cls(sheets, rowids=rowids)

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
        return cls._of_databases(databases)

    def derive(self, deltas: Mapping[str, tuple[Sequence[Entry], Sequence[Entry]]]) -> SearchIndex:
        """A new index: this one plus a delta, per sheet ``(records as they were
        indexed and are gone, records new or changed)``; a changed record is in
        both. A changed sheet's database is copied and changed; this index is left
        untouched."""
        sheets, rankers, rowids, changed = dict(self._sheets), dict(self._rankers), dict(self._rowids), {}
        for sheet, (gone, new) in deltas.items():
            if not gone and not new:
                continue
            part, removed, written = self._sheets[sheet].derive(gone, new, rowids[sheet])
            sheets[sheet] = part
            written_ids = {str(row[0]): rowid for rowid, row in written}
            if removed or any(record_id not in rowids[sheet] for record_id in written_ids):
                rowid_of = rowids[sheet] = dict(rowids[sheet])  # a record came or went
                for record_id in removed:
                    del rowid_of[record_id]
                rowid_of.update(written_ids)
            rankers[sheet] = self._rankers[sheet].derive(
                part.db.reader, removed.values(), [(rowid, row[1:]) for rowid, row in written])
            changed[sheet] = SheetDelta(removed, written_ids)
        return SearchIndex(sheets, rankers, changed, rowids)

    def image(self) -> bytes:
        """The databases as bytes (SQLite's serialize of each sheet's database,
        in ``TABLES`` order, each after its length as 8 bytes), for the snapshot cache."""
        images = [self._sheets[sheet].db.image() for sheet in TABLES]
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
        return cls._of_databases(databases)

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
        return [row[0] for row in self._sheets[table.sheet].db.reader().execute(sql, (expression,))]

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
        (a word FTS5 reads as several tokens, or none)."""
        words = query_words(query)
        if not words:
            return Ranked(np.zeros(0, dtype=np.int64), None)
        prefixes = prefix_tokens(words)
        if prefixes is None:
            return None
        rowids, ranks = self._rankers[table.sheet].rank(prefixes)
        return Ranked(rowids, ranks)

    def ids_of(self, table: SearchTable, rowids: Iterable[int]) -> dict[int, str]:
        """Record ids by rowid."""
        return self._sheets[table.sheet].ids_of(int(r) for r in rowids)

    def rowid_map(self, table: SearchTable) -> Mapping[str, int]:
        """The rowid of every record, by record id (shared with the derived indices
        until a record comes or goes: do not modify)."""
        return self._rowids[table.sheet]


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
