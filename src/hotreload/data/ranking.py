"""FTS5's bm25 order for word-prefix searches, without scoring every match in SQLite.

bm25 is a sum over the query's prefixes of ``idf(prefix) * g(tf, D)``: it needs, per
prefix, the rows containing it with their counts (its *postings*, read once from FTS5's
own ``fts5vocab`` table) and, per row, its length (FTS5's ``docsize`` table); the rest is
arithmetic over arrays. A table's rows are in one or more databases (:class:`Segment`: a
base and a delta, decision 68). A derived table's ranker patches its parent's arrays with
the rows that changed. The arithmetic is ``fts5Bm25Function``'s (``fts5_aux.c``) operation for
operation, so the ranks and ties are SQLite's own, bit for bit (decision 61,
``tests/test_ranking.py``).
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

K1 = 1.2
"""FTS5's bm25 constants (``fts5_aux.c``)."""
B = 0.75

MAX_POSTINGS = 4_000_000
"""Postings kept per table (8 bytes each: two int32), least recently used out:
every prefix of the corpus's 34-word vocabulary at 500,000 records is ~1.7 million."""

Ints = npt.NDArray[np.int64]
Int32s = npt.NDArray[np.int32]
Floats = npt.NDArray[np.float64]


def rankable(tokens: Sequence[str]) -> bool:
    """Whether a query of these prefixes can be ranked here: ASCII letters and
    digits only, which FTS5's default tokenizer keeps as one token each, as they
    are (lower case). Anything else goes to SQLite (diacritics, punctuation
    inside a word)."""
    return bool(tokens) and all(t.isascii() and t.isalnum() and t == t.lower() for t in tokens)


@dataclass(frozen=True)
class Postings:
    rowids: Int32s
    """Rows containing the prefix, ascending."""
    counts: Int32s
    """How many of the row's tokens start with the prefix."""


@dataclass(frozen=True, eq=False)
class Segment:
    """One database of a table's rows; its rows at ``masked`` rowids are not live (a
    later segment may hold them)."""
    conn: sqlite3.Connection
    masked: Ints


@dataclass(frozen=True)
class _Lengths:
    doc_len: Floats
    """Tokens per row, by rowid (0 where no row is)."""
    present: npt.NDArray[np.bool_]
    """Whether a row has the rowid (a row may have no tokens)."""
    rows: int
    tokens: int


def _row_lengths(sizes: Sequence[tuple[int, bytes]]) -> tuple[Ints, Floats]:
    """Rowids and lengths of FTS5 ``docsize`` rows: each row's varints summed at once
    with numpy when every one is a single byte (below 128 tokens a column), which a
    loop over 150,000 rows took ~250 ms to do; else row by row."""
    rowids = np.fromiter((rowid for rowid, _ in sizes), dtype=np.int64, count=len(sizes))
    data = np.frombuffer(b"".join(size for _, size in sizes), dtype=np.uint8)
    if data.size and int(data.max()) < 0x80:
        lengths = np.fromiter((len(size) for _, size in sizes), dtype=np.int64, count=len(sizes))
        if int(lengths.min()) > 0:  # reduceat needs every row to have bytes of its own
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            return rowids, np.add.reduceat(data.astype(np.int64), starts).astype(np.float64)
    return rowids, np.array([float(_total(size)) for _, size in sizes], dtype=np.float64)


def _total(size: bytes) -> int:
    """A row's length: the sum of FTS5's per-column varints (one byte each below 128)."""
    if max(size, default=0) < 0x80:
        return sum(size)
    total = value = 0
    for byte in size:
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            total, value = total + value, 0
    return total


class Ranker:
    """bm25 ranks of word-prefix searches over one table's FTS5 databases.

    Immutable like the database it ranks, except for what it learns lazily
    (the lengths on first use, each prefix's postings on first ask), under a lock."""

    def __init__(self, name: str, columns: Sequence[str], segments: Sequence[Segment]) -> None:
        self._name = name
        self._columns = tuple(columns)
        self._segments = tuple(segments)
        """The databases holding the table's rows, read in order."""
        self._lengths: _Lengths | None = None
        self._postings: dict[str, Postings] = {}
        self._lock = threading.Lock()

    # -- learning ------------------------------------------------------------

    def _state(self) -> _Lengths:
        with self._lock:
            if self._lengths is None:
                sql = f"SELECT id, sz FROM [{self._name}_fts_docsize]"
                parts = []
                for segment in self._segments:
                    rowids, totals = _row_lengths(segment.conn.execute(sql).fetchall())
                    live = ~np.isin(rowids, segment.masked)
                    parts.append((rowids[live], totals[live]))
                size = max(int(rowids.max(initial=0)) for rowids, _ in parts) + 1
                doc_len, present = np.zeros(size), np.zeros(size, dtype=np.bool_)
                for rowids, totals in parts:
                    doc_len[rowids], present[rowids] = totals, True
                self._lengths = _Lengths(doc_len, present, int(np.count_nonzero(present)), int(doc_len.sum()))
            return self._lengths

    def _posting(self, prefix: str) -> Postings:
        with self._lock:
            found = self._postings.pop(prefix, None)
            if found is None:
                per_row = np.zeros(0, dtype=np.int64)
                for segment in self._segments:
                    conn = segment.conn
                    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.[{self._name}_vocab] "
                                 f"USING fts5vocab(main, [{self._name}_fts], instance)")
                    # one row per occurrence, counted per row with bincount: 1.4x faster at
                    # 50k records than SQLite's GROUP BY, which sorts them first
                    occurrences = conn.execute(f"SELECT doc FROM temp.[{self._name}_vocab] "
                                               "WHERE term >= ? AND term <= ?", (prefix, prefix + "\U0010ffff"))
                    counts = np.bincount(np.fromiter((row[0] for row in occurrences), dtype=np.int64))
                    counts[segment.masked[segment.masked < len(counts)]] = 0
                    if len(counts) > len(per_row):
                        counts[:len(per_row)] += per_row
                        per_row = counts
                    else:
                        per_row[:len(counts)] += counts
                rowids = np.flatnonzero(per_row)
                found = Postings(rowids.astype(np.int32), per_row[rowids].astype(np.int32))
            self._postings[prefix] = found  # most recently used last
            kept = sum(len(p.rowids) for p in self._postings.values())
            while kept > MAX_POSTINGS and len(self._postings) > 1:
                kept -= len(self._postings.pop(next(iter(self._postings))).rowids)
            return found

    # -- deriving ------------------------------------------------------------

    def derive(self, segments: Sequence[Segment], removed: Iterable[int],
               written: Sequence[tuple[int, tuple[str | None, ...]]]) -> Ranker:
        """The ranker of the databases derived from this one's: rows ``removed`` (by
        rowid) are gone, rows ``written`` (rowid, column values) are new or
        rewritten. Only what this ranker has learnt is carried over, patched;
        a ranker that learnt nothing yields one that learns from its own databases."""
        with self._lock:
            lengths, postings = self._lengths, dict(self._postings)
        derived = Ranker(self._name, self._columns, segments)
        if lengths is None:
            return derived
        dropped = np.fromiter(removed, dtype=np.int64)
        rewritten = np.array([rowid for rowid, _ in written], dtype=np.int64)
        touched = np.union1d(dropped, rewritten)
        size = max(len(lengths.doc_len), int(touched.max(initial=0)) + 1)
        doc_len, present = np.zeros(size), np.zeros(size, dtype=np.bool_)
        doc_len[:len(lengths.doc_len)], present[:len(lengths.present)] = lengths.doc_len, lengths.present
        rows = lengths.rows - int(np.count_nonzero(present[touched]))
        tokens = lengths.tokens - int(doc_len[touched].sum())
        doc_len[touched], present[touched] = 0, False
        counts = _token_counts(self._columns, written)
        for rowid, _ in written:
            doc_len[rowid], present[rowid] = counts.lengths[rowid], True
        rows += len(written)
        tokens += sum(counts.lengths.values())
        derived._lengths = _Lengths(doc_len, present, rows, tokens)
        derived._postings = {prefix: _patch(p, touched, *counts.of_prefix(prefix))
                             for prefix, p in postings.items()}
        return derived

    # -- ranking -------------------------------------------------------------

    def rank(self, prefixes: Sequence[str]) -> tuple[Ints, Floats]:
        """Rows matching every prefix and their bm25 ranks (FTS5's ``rank``: lower
        is better), by rank; rows of equal rank in no particular order."""
        state = self._state()
        postings = [self._posting(p) for p in prefixes]
        if not prefixes or state.rows == 0 or any(len(p.rowids) == 0 for p in postings):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        hits = np.zeros(len(state.doc_len), dtype=np.int32)
        for p in postings:
            hits[p.rowids] += 1
        matches = np.flatnonzero(hits == len(postings))
        freq = np.zeros(len(state.doc_len))  # one prefix's counts, by rowid
        avgdl = state.tokens / state.rows
        # fts5Bm25Function, operation for operation: the same doubles in the same order
        norm = K1 * ((1 - B) + (B * state.doc_len[matches]) / avgdl)
        score = np.zeros(len(matches))
        for p in postings:
            n_hit = len(p.rowids)
            idf = math.log((state.rows - n_hit + 0.5) / (n_hit + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            freq[p.rowids] = p.counts
            f = freq[matches]
            freq[p.rowids] = 0
            score = score + idf * ((f * (K1 + 1.0)) / (f + norm))
        ranks = -1.0 * score
        order = np.argsort(ranks)  # ties come in any order: a window puts them in id order
        return matches[order], ranks[order]


@dataclass(frozen=True)
class _Counts:
    terms: list[tuple[str, int, int]]
    """(term, rowid, occurrences), sorted by term."""
    lengths: dict[int, int]

    def of_prefix(self, prefix: str) -> tuple[Int32s, Int32s]:
        found: dict[int, int] = {}
        for term, rowid, n in self.terms:
            if term.startswith(prefix):
                found[rowid] = found.get(rowid, 0) + n
        rowids = sorted(found)
        return np.array(rowids, dtype=np.int32), np.array([found[r] for r in rowids], dtype=np.int32)


def _token_counts(columns: Sequence[str], written: Sequence[tuple[int, tuple[str | None, ...]]]) -> _Counts:
    """Each written row's tokens as FTS5 counts them: the rows go into a scratch
    FTS5 table of the same columns and tokenizer, read back through fts5vocab."""
    if not written:
        return _Counts([], {})
    conn = sqlite3.connect(":memory:")
    try:
        names = ", ".join(f"[{c}]" for c in columns)
        conn.execute(f"CREATE VIRTUAL TABLE scratch USING fts5({names}, content='')")
        conn.executemany(f"INSERT INTO scratch (rowid, {names}) VALUES (?, {', '.join('?' for _ in columns)})",
                         ((rowid, *values) for rowid, values in written))
        conn.execute("CREATE VIRTUAL TABLE temp.words USING fts5vocab(main, scratch, instance)")
        terms = conn.execute("SELECT term, doc, count(*) FROM temp.words GROUP BY term, doc ORDER BY term").fetchall()
    finally:
        conn.close()
    lengths = dict.fromkeys((rowid for rowid, _ in written), 0)
    for _, rowid, n in terms:
        lengths[rowid] += n
    return _Counts(terms, lengths)


def found_at(ascending: npt.NDArray[Any], values: npt.NDArray[Any]) -> tuple[Ints, npt.NDArray[np.bool_]]:
    """Where each of ``values`` sits, or would be inserted, in the ascending array, and
    whether it is there."""
    at = np.searchsorted(ascending, values)
    present = np.zeros(len(values), dtype=np.bool_)
    inside = at < len(ascending)
    present[inside] = ascending[at[inside]] == values[inside]
    return at, present


def _patch(p: Postings, touched: Ints, add_rowids: Int32s, add_counts: Int32s) -> Postings:
    """``p`` without the rows in ``touched`` and with the given ones; ``p`` itself
    when none of them is in it."""
    at, present = found_at(p.rowids, touched)
    at = at[present]
    if not at.size and not add_rowids.size:
        return p
    rowids, counts = np.delete(p.rowids, at), np.delete(p.counts, at)
    where = np.searchsorted(rowids, add_rowids)
    return Postings(np.insert(rowids, where, add_rowids), np.insert(counts, where, add_counts))
