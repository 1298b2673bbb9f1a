"""The full-text index of one snapshot: contentless FTS5 tables (decision 56) for
projects, people and help-wanted roles, each in in-memory SQLite databases of its own.

An index is never changed once its snapshot is served. A new snapshot's index is
either built from scratch or *derived*, in time that follows the change: each sheet is
a *base* database, shared by the indices derived from it, and a small *delta* database
holding the records written since, with the base rows they replace or remove masked out
(decision 68); a derivation writes the changed records to a copy of the delta. A record
keeps its rowid while it lives; each sheet's :class:`~hotreload.data.ranking.Ranker`
ranks a query of ASCII letters and digits with arrays over both (decision 61), SQLite
ranks any other (``café``, ``foo_bar``; decision 170) over both merged.
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

from hotreload.data.layered import layered
from hotreload.data.ranking import Floats, Ints, Ranker, Segment, rankable
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


class _Database:
    """An in-memory database, shared by the sheets that read it."""

    def __init__(self) -> None:
        self.conn = _connect()
        self.lock = threading.Lock()
        # A sqlite3.Connection sits in a reference cycle (its statement cache), so only a
        # full GC pass would free it, and with it its in-memory database: close it as soon
        # as this database (shared by the sheets using it) goes.
        weakref.finalize(self, self.conn.close)

    def copy(self) -> _Database:
        copy = _Database()
        with self.lock:
            self.conn.backup(copy.conn)
        return copy

    def image(self) -> bytes:
        with self.lock:
            return self.conn.serialize()


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


def _merge(base: _Database, table: SearchTable, masked: Mapping[int, Row], written: Mapping[int, Row]) -> _Database:
    """A copy of ``base`` without its ``masked`` rows and with the ``written`` ones."""
    db = base.copy()
    with db.conn:  # one transaction
        _write_fts(db.conn, table, masked.items(), delete=True)
        _write_fts(db.conn, table, sorted(written.items()), delete=False)
    return db


class _Ids:
    """Record ids by rowid (an object array), shared by the sheets of a lineage, each reading
    it below its own next rowid. A removed record's id stays until the next fold (only live
    rows are looked up), so a derivation only appends its new records' ids: in place when no
    other sheet has appended past its parent's end, else into a copy, twice as long when
    full, so a derivation costs its new records, amortised."""

    def __init__(self, array: np.ndarray, used: int | None = None) -> None:
        self.array = array
        self.used = len(array) if used is None else used
        """The rowids some sheet has given a record; the array beyond is room to grow."""
        self.lock = threading.Lock()

    @classmethod
    def of(cls, rowid_of: Mapping[str, int], end: int) -> _Ids:
        """The live records' ids by rowid, below ``end`` (a fold's: the removed ones' ids go)."""
        array = np.full(end, None, dtype=object)
        array[np.fromiter(rowid_of.values(), dtype=np.int64, count=len(rowid_of))] = list(rowid_of)
        return cls(array)

    def appended(self, end: int, new: Sequence[str]) -> _Ids:
        """These ids below rowid ``end`` (the deriving sheet's next rowid), then ``new``."""
        if not new:
            return self
        with self.lock:
            if self.used == end and end + len(new) <= len(self.array):
                self.array[end:end + len(new)] = new
                self.used = end + len(new)
                return self
        array = np.full(max(2 * len(self.array), end + len(new)), None, dtype=object)
        array[:end] = self.array[:end]
        array[end:end + len(new)] = new
        return _Ids(array, end + len(new))


FOLD_SHARE = 32
"""A sheet's delta is folded into a new base once the rows it holds or hides pass
1/32 of the base's rows (and :data:`FOLD_MIN`): that derivation copies the base, as
every one did before decision 68, once per that many changed rows."""
FOLD_MIN = 256

_EMPTY: Ints = np.zeros(0, dtype=np.int64)


def _segments(base: _Database, masked: Mapping[int, Row], delta: _Database | None) -> list[Segment]:
    """What a sheet's ranker reads: the base without its masked rows, then the delta."""
    found = [Segment(base.conn, np.fromiter(masked, dtype=np.int64, count=len(masked)))]
    if delta is not None:
        found.append(Segment(delta.conn, _EMPTY))
    return found


class _Sheet:
    """One sheet's full-text index, in two parts (decision 68): ``base``, a database never
    written once served, shared by the sheets derived from this one, and ``delta``, a small
    database holding the current rows of the records written since (each at its rowid),
    with ``masked``, the base rows no longer live. A derivation copies the delta, not the
    base, and applies the change to the copy in one transaction. The ranker reads both
    parts; a query only SQLite ranks reads them merged into one database, made on first
    ask. Also kept: the record ids by rowid and the rowids by id."""

    def __init__(self, table: SearchTable, base: _Database, base_rows: int, rowid_of: Mapping[str, int],
                 ids: _Ids, next_rowid: int, delta: _Database | None = None,
                 masked: Mapping[int, Row] | None = None, delta_rows: Mapping[int, Row] | None = None,
                 ranker: Ranker | None = None) -> None:
        self.table = table
        self.base = base
        self.base_rows = base_rows
        """Rows in the base database, masked ones included."""
        self.rowid_of = rowid_of
        """Each record's rowid by id; shared with the derived sheets until a record comes or goes."""
        self.ids = ids
        self.next_rowid = next_rowid
        """The rowid the next new record gets (rowids are never reused within a lineage)."""
        self.delta = delta
        self.masked: Mapping[int, Row] = masked or {}
        """Base rowid -> the values the base indexed that row with (to delete it when merging)."""
        self.delta_rows: Mapping[int, Row] = delta_rows or {}
        """Delta rowid -> its values (``table.row(record)``)."""
        self._merged = base if delta is None and not self.masked else None
        self._lock = threading.Lock()
        self.ranker = ranker or Ranker(table.name, table.columns, _segments(base, self.masked, delta))

    @classmethod
    def of(cls, table: SearchTable, db: _Database) -> _Sheet:
        rowid_of = dict(db.conn.execute(f"SELECT id, rowid FROM [{table.name}]"))
        next_rowid = max(rowid_of.values(), default=0) + 1
        return cls(table, db, len(rowid_of), rowid_of, _Ids.of(rowid_of, next_rowid), next_rowid)

    def merged(self) -> _Database:
        """The sheet as one database, base and delta merged: made on first ask, then kept."""
        with self._lock:
            if self._merged is None:
                self._merged = _merge(self.base, self.table, self.masked, self.delta_rows)
            return self._merged

    def id_array(self, rowids: Ints) -> np.ndarray:
        """The record id of each of ``rowids`` (live rows), as an object array."""
        return self.ids.array[rowids]

    def ids_of(self, rowids: Iterable[int]) -> dict[int, str]:
        """Record ids by rowid, of live rows."""
        asked = np.fromiter(rowids, dtype=np.int64)
        return dict(zip(asked.tolist(), self.id_array(asked).tolist(), strict=True))

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
        fresh = self.next_rowid
        written: list[tuple[int, Row]] = []
        for row in new_rows:
            rowid = found.get(str(row[0]))
            if rowid is None:
                rowid, fresh = fresh, fresh + 1
            written.append((rowid, row))
        masked, delta_rows = dict(self.masked), dict(self.delta_rows)
        from_delta = []
        for row in old_rows:
            rowid = found[str(row[0])]
            if rowid in delta_rows:
                from_delta.append((rowid, delta_rows.pop(rowid)))
            else:
                masked[rowid] = row  # live in the base until now: as the base indexed it
        delta_rows.update(written)
        written_ids = {str(row[0]): rowid for rowid, row in written}
        new_ids = {record_id: rowid for record_id, rowid in written_ids.items() if rowid >= self.next_rowid}
        rowid_of = layered(self.rowid_of, {**dict.fromkeys(removed), **new_ids})  # shared if none came or went
        changed = removed.values(), [(rowid, row[1:]) for rowid, row in written]
        if len(masked) + len(delta_rows) > max(FOLD_MIN, self.base_rows // FOLD_SHARE):
            base = _merge(self.base, table, masked, delta_rows)  # the delta folded into a new base
            rows = self.base_rows - len(masked) + len(delta_rows)
            sheet = _Sheet(table, base, rows, rowid_of, _Ids.of(rowid_of, fresh), fresh,
                           ranker=self.ranker.derive(_segments(base, {}, None), *changed))
        else:
            if self.delta is not None:
                delta = self.delta.copy()
            else:
                delta = _Database()
                _create(delta.conn, table)
            with delta.conn:  # one transaction
                _write_fts(delta.conn, table, from_delta, delete=True)
                _write_fts(delta.conn, table, written, delete=False)
            ids = self.ids.appended(self.next_rowid, list(new_ids))  # in rowid order, as given
            ranker = self.ranker.derive(_segments(self.base, masked, delta), *changed)
            sheet = _Sheet(table, self.base, self.base_rows, rowid_of, ids, fresh, delta, masked, delta_rows, ranker)
        return sheet, SheetDelta(removed, written_ids)


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
            db = _Database()
            with db.conn:
                _create(db.conn, table)
                _write_fts(db.conn, table, enumerate((table.row(r) for r in records.get(sheet, ())), start=1),
                           delete=False)
            sheets[sheet] = _Sheet.of(table, db)
        return cls(sheets)

    def derive(self, deltas: Mapping[str, tuple[Sequence[Entry], Sequence[Entry]]]) -> SearchIndex:
        """A new index: this one plus a delta, per sheet ``(records as they were
        indexed and are gone, records new or changed)``; a changed record is in
        both. A changed sheet's delta database is copied and changed (its base only
        when the delta has grown past :data:`FOLD_SHARE`); this index is left
        untouched."""
        sheets, changed = dict(self._sheets), {}
        for sheet, (gone, new) in deltas.items():
            if gone or new:
                sheets[sheet], changed[sheet] = self._sheets[sheet].derive(gone, new)
        return SearchIndex(sheets, changed)

    def image(self) -> bytes:
        """The databases as bytes (SQLite's serialize of each sheet's merged database,
        in ``TABLES`` order, each after its length as 8 bytes), for the snapshot cache."""
        images = [self._sheets[sheet].merged().image() for sheet in TABLES]
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
            db = _Database()
            db.conn.deserialize(part)
            sheets[sheet] = _Sheet.of(table, db)
            at += 8 + size
        if at != len(image):
            raise ValueError("the search image has bytes after its last database")
        return cls(sheets)

    def _by_sqlite(self, table: SearchTable, query: str, column: str) -> list[Any]:
        """``column`` (of the FTS5 table ``f`` or the id table ``t``) of each match, in
        SQLite's order: rank, then id. Reads the sheet's merged database."""
        expression = match_expression(query)
        if expression is None:
            return []
        sql = (
            f"SELECT {column} FROM [{table.name}_fts] f JOIN [{table.name}] t ON t.rowid = f.rowid "
            f"WHERE [{table.name}_fts] MATCH ? ORDER BY f.rank, t.id"
        )
        return [row[0] for row in self._sheets[table.sheet].merged().conn.execute(sql, (expression,))]

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
