"""Ranking with arrays (hotreload.data.ranking) against SQLite's own ``ORDER BY rank``.

The oracle is FTS5 itself: the same index answers each query through SQL
(``SearchIndex.search``, and ``rank`` read straight from the FTS5 table), and the
array ranking must give the same ranks, bit for bit, and the same order, ties
included. Indices are derived through random removals, rewrites and additions,
after the ranker has learnt some prefixes, so the patched arrays are checked as
well as the ones read from scratch."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from unittest.mock import patch

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotreload.data import search
from hotreload.data.layered import Layered
from hotreload.data.ranking import _row_lengths, _total
from hotreload.data.search import PROJECTS, SearchIndex, match_expression

VOCABULARY = ["data", "database", "dat", "map", "maps", "mapping", "open", "opened", "x1", "x10", "bus", "café"]
PREFIXES = ["data", "dat", "d", "map", "maps", "open", "x1", "bus", "o", "zzz", "caf", "CAFÉ", "café", "Café data",
            "data_map"]  # FTS5 reads "data_map" as two tokens: only SQLite answers it


@dataclass(frozen=True)
class Doc:
    key: str
    title: str | None
    summary: str | None
    overview: str | None


texts = st.one_of(
    st.none(),
    st.just("--- !!"),  # no tokens at all
    st.lists(st.sampled_from(VOCABULARY), max_size=12).map(" ".join),
    st.lists(st.sampled_from(VOCABULARY), min_size=130, max_size=200).map(" ".join),  # a length over 127: two-byte varints
)


def docs(keys: list[str]) -> st.SearchStrategy[list[Doc]]:
    return st.tuples(*[st.builds(Doc, st.just(k), texts, texts, texts) for k in keys]).map(list)


def oracle(records: dict[str, Doc], query: str) -> list[tuple[str, float]]:
    """(id, rank) of each match, best first, from an FTS5 table of ``records`` made
    here with plain sqlite3 (not the code under test), ordered by rank then id."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(id UNINDEXED, title, summary, overview)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                         [(d.key, d.title, d.summary, d.overview) for d in records.values()])
        expression = match_expression(query)
        if expression is None:
            return []
        return conn.execute("SELECT id, rank FROM t WHERE t MATCH ? ORDER BY rank, id", (expression,)).fetchall()
    finally:
        conn.close()


def check(index: SearchIndex, records: dict[str, Doc], query: str) -> None:
    expected = oracle(records, query)
    assert index.search(PROJECTS, query) == [i for i, _ in expected], query
    ranked = index.rank(PROJECTS, query)
    if ranked is None:  # only for a word of other than ASCII letters and digits: SQLite ranks it
        assert "_" in query or not query.isascii(), query
        return
    assert ranked.window(0, len(ranked), lambda r: index.ids_of(PROJECTS, r.tolist())) == [i for i, _ in expected]
    assert ranked.ranks is not None
    ids = index.ids_of(PROJECTS, ranked.rowids.tolist())
    assert {ids[r]: rank for r, rank in zip(ranked.rowids.tolist(), ranked.ranks.tolist(), strict=True)} \
        == dict(expected), query  # bit for bit


queries = st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=3).map(" ".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_array_ranks_are_sqlites_ranks_through_derivations(data: st.DataObject) -> None:
    """Random removals, rewrites and additions, with the delta folded into the base
    after each derivation, never, or in between (``FOLD_MIN``)."""
    n = data.draw(st.integers(1, 25))
    records = {d.key: d for d in data.draw(docs([f"r{i:02d}" for i in range(n)]))}
    with patch.object(search, "FOLD_MIN", data.draw(st.sampled_from([0, 3, 8, 10_000]))):
        index = SearchIndex.build({"projects": list(records.values())})
        for query in data.draw(st.lists(queries, max_size=3)):  # what the ranker learns before deriving
            check(index, records, query)
        for step in range(data.draw(st.integers(1, 4))):
            keys = sorted(records)
            removed = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=3)) if keys else []
            rewritten = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=3)) if keys else []
            rewritten = [k for k in rewritten if k not in removed]
            added = [f"s{step}-{i}" for i in range(data.draw(st.integers(0, 3)))]
            new = data.draw(docs(rewritten + added))
            gone = [records[k] for k in removed + rewritten]
            index = index.derive({"projects": (gone, new)})
            for k in removed:
                del records[k]
            records.update((d.key, d) for d in new)
            for query in data.draw(st.lists(queries, min_size=1, max_size=4)):
                check(index, records, query)
    for query in PREFIXES:  # every query, learnt or not, on the last index
        check(index, records, query)


def test_a_word_is_searched_as_the_token_fts5_makes_of_it() -> None:
    index = SearchIndex.build({"projects": [Doc("a", "café data", None, None), Doc("b", "data_map", None, None)]})
    ranked = index.rank(PROJECTS, "cafe")
    assert ranked is not None and index.ids_of(PROJECTS, ranked.rowids.tolist()) == {1: "a"}
    assert index.search(PROJECTS, "CAFÉ") == ["a"]
    assert index.rank(PROJECTS, "data_map") is None
    assert index.search(PROJECTS, "data_map") == ["b"]
    empty = index.rank(PROJECTS, "  !! ")
    assert empty is not None and len(empty) == 0


def test_row_lengths_decode_fts5_varints() -> None:
    assert _total(bytes([3, 0, 127])) == 130
    assert _total(bytes([0x81, 0x00, 5])) == 128 + 5  # 128 is two bytes: 0x81 0x00
    assert _total(b"") == 0


def test_row_lengths_are_each_rows_varints_summed() -> None:
    small = [(3, bytes([1, 2, 3])), (7, bytes([0, 0, 9])), (4, bytes([127, 1, 0]))]
    rowids, totals = _row_lengths(small)
    assert rowids.tolist() == [3, 7, 4] and totals.tolist() == [6.0, 9.0, 128.0]
    rowids, totals = _row_lengths([*small, (9, bytes([0x81, 0x00, 5]))])  # one two-byte varint: row by row
    assert totals.tolist() == [6.0, 9.0, 128.0, 133.0]
    rowids, totals = _row_lengths([])
    assert rowids.tolist() == [] and totals.tolist() == []


def test_ties_are_put_in_id_order_only_around_the_window() -> None:
    same = [Doc(k, "data", None, None) for k in ("d", "b", "e", "a", "c")]  # five equal ranks
    index = SearchIndex.build({"projects": [*same, Doc("z", "data data data", None, None)]})
    ranked = index.rank(PROJECTS, "data")
    assert ranked is not None
    asked: list[list[int]] = []

    def ids_of(rowids: np.ndarray) -> dict[int, str]:
        asked.append(rowids.tolist())
        return index.ids_of(PROJECTS, rowids.tolist())

    assert ranked.window(0, 1, ids_of) == ["z"]
    assert asked == [[6]]  # the best row ties with nothing: only its id was read
    assert ranked.window(2, 4, ids_of) == ["b", "c"]
    assert sorted(asked[1]) == [1, 2, 3, 4, 5]  # the whole tie group, once
    assert ranked.window(1, 6, ids_of) == ["a", "b", "c", "d", "e"]
    assert ranked.window(7, 9, ids_of) == []


def test_a_derivation_shares_the_base_and_folds_the_delta_past_its_share() -> None:
    """Decision 68: a derived sheet reads its parent's base database itself (no copy) and
    a small delta, and shares its ids by rowid; once the delta holds or hides more than
    ``FOLD_MIN`` rows it is folded into a new base."""
    records = {d.key: d for d in (Doc(f"r{i}", f"data map {i}", None, None) for i in range(6))}
    index = SearchIndex.build({"projects": list(records.values())})
    built = index._sheets["projects"]
    with patch.object(search, "FOLD_MIN", 5):
        changes = [([records["r1"]], [Doc("r1", "open data", None, None)]),  # rewritten
                   ([], [Doc("s1", "data bus", None, None)]),  # new
                   ([], [Doc("s2", "map", None, None)]),  # new
                   ([records["r2"]], []),  # removed
                   ([records["r3"]], [Doc("r3", "bus", None, None)])]  # rewritten: 7 rows, folded
        sheets = []
        for gone, new in changes:
            index = index.derive({"projects": (gone, new)})
            for d in gone:
                del records[d.key]
            records.update((d.key, d) for d in new)
            sheets.append(index._sheets["projects"])
            for query in ("data", "map bus", "o", "café"):
                check(index, records, query)
    for sheet in sheets[:4]:
        assert sheet.base is built.base and sheet.delta is not None  # the base is shared, not copied
        assert sheet.base.conn is built.base.conn
    assert sheets[3].masked.keys() == {2, 3} and sheets[3].delta_rows.keys() == {2, 7, 8}  # r1, r2; r1, s1, s2
    assert sheets[0].ids is built.ids  # a rewrite adds no id
    assert sheets[2].ids is sheets[1].ids is not built.ids  # grown once, then appended in place
    assert sheets[4].delta is None and sheets[4].base is not built.base  # folded
    assert sheets[4].base_rows == 7 and not sheets[4].masked
    assert sheets[4].ids.array.tolist() == [None, "r0", "r1", None, "r3", "r4", "r5", "s1", "s2"]  # r2's id let go
    # the ids by rowid: the parent's map itself after a rewrite, layered over it when a record comes or goes
    assert sheets[0].rowid_of is built.rowid_of
    assert isinstance(sheets[1].rowid_of, Layered) and sheets[1].rowid_of._base is built.rowid_of
    assert dict(sheets[3].rowid_of) == {"r0": 1, "r1": 2, "r3": 4, "r4": 5, "r5": 6, "s1": 7, "s2": 8}
    sibling = sheets[1].derive([], [Doc("t1", "data", None, None)])[0]  # sheets[2] took rowid 8 in place
    assert sibling.ids is not sheets[2].ids and sibling.id_array(np.array([7, 8])).tolist() == ["s1", "t1"]
    assert sheets[2].id_array(np.array([7, 8])).tolist() == ["s1", "s2"]
    rewrite = sheets[1].derive([Doc("s1", "data bus", None, None)], [Doc("s1", "bus", None, None)])[0]
    assert rewrite.ids is sheets[1].ids  # no new record: nothing appended, nothing copied
