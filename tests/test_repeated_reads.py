"""A repeated read costs what serialising its answer costs (issue #17, part 1): the
second identical request of a memoised route does no work per match. The corpus is
the worst case: one word matches every project, person and role of a few hundred,
all with the same text, so every match ties in rank with every other.

Work is counted, not timed: every record, index entry and rowid a request looks up
goes through a counter wrapped around the served snapshot's tables, indices and
search ids. The first request of each route shows the counter sees per-match work."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.data import search
from hotreload.data.records import HelpWantedRole, Person, Project, TagAssignment, to_toml
from hotreload.data.search import Ranked
from hotreload.data.snapshot import Table
from hotreload.service.runtime import Runtime, boot
from tests.conftest import World, corpus_files, git, write_corpus

TWINS = 300
PER_PAGE = 5
NOW = "2024-01-01T00:00:00Z"


def _uuid(kind: int, i: int) -> str:
    return f"{kind:08x}-0000-4000-8000-{i:012x}"


def _tied_corpus() -> dict[str, bytes]:
    """A small corpus plus TWINS projects tagged topic.transit, TWINS people and TWINS
    open roles, each set alike but for ids and slugs."""
    files = corpus_files(60, seed=7)
    transit = tomllib.loads(files["tags/topic/transit.toml"].decode())["id"]
    for i in range(TWINS):
        project = Project(id=_uuid(1, i), slug=f"twin-{i:03d}", title="Transit Twin",
                          summary="Transit for everyone", stage="prototyping",  # type: ignore[arg-type]
                          created_at=NOW, updated_at=NOW)
        files[f"projects/{project.slug}.toml"] = to_toml(project)
        files[f"tag-assignments/{transit}/project/{project.id}.toml"] = to_toml(TagAssignment(
            id=_uuid(2, i), tag_id=transit, taggable_type="project", taggable_id=project.id,  # type: ignore[arg-type]
            created_at=NOW))
        person = Person(id=_uuid(3, i), slug=f"data-twin-{i:03d}", full_name="Data Twin", first_name="Data",
                        last_name="Twin", created_at=NOW, updated_at=NOW)
        files[f"people/{person.slug}.toml"] = to_toml(person)
        role = HelpWantedRole(id=_uuid(4, i), project_id=_uuid(1, 0), posted_by_id=_uuid(3, 0), title="Data volunteer",
                              description="Data", status="open", created_at=NOW, updated_at=NOW)  # type: ignore[arg-type]
        files[f"help-wanted-roles/twin-000/{role.id}.toml"] = to_toml(role) + b'projectSlug = "twin-000"\n'
    return files


@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[testing.TestClient, Runtime]]:
    root = Path(tmp_path_factory.mktemp("tied"))
    origin, clone = root / "origin.git", root / "clone.git"
    write_corpus(origin, _tied_corpus())
    git("clone", "-q", "--bare", str(origin), str(clone))
    runtime = boot(World(root, origin, root / "work", clone).settings())
    yield testing.TestClient(create_app(runtime)), runtime
    runtime.close()


class Counting(Mapping[Any, Any]):
    """``inner``, counting every entry looked up or iterated over."""

    def __init__(self, inner: Mapping[Any, Any], counter: list[int]) -> None:
        self.inner, self.counter = inner, counter

    def __getitem__(self, key: Any) -> Any:
        self.counter[0] += 1
        return self.inner[key]

    def __iter__(self) -> Iterator[Any]:
        for key in self.inner:
            self.counter[0] += 1
            yield key

    def __len__(self) -> int:
        return len(self.inner)


@pytest.fixture
def counted(tied: tuple[testing.TestClient, Runtime], monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[testing.TestClient, list[int]]]:
    """The test client, and a counter of the lookups requests make in the served snapshot
    (its memo emptied: each test starts from a first request)."""
    client, runtime = tied
    snap, counter = runtime.holder.current, [0]
    tables = {name: Table(Counting(t.by_id, counter), Counting(t.path_by_id, counter),
                          Counting(t.id_by_path, counter)) for name, t in snap.tables.items()}
    indices = {name: Counting(index, counter) for name, index in snap.indices.items()}
    original_ids = search._Sheet.id_array

    def id_array(sheet: Any, rowids: Any) -> Any:
        counter[0] += len(rowids)
        return original_ids(sheet, rowids)

    monkeypatch.setattr(search._Sheet, "id_array", id_array)
    saved = snap.tables, snap.indices
    object.__setattr__(snap, "tables", tables)  # frozen: replaced for this test only
    object.__setattr__(snap, "indices", indices)
    snap.memo._entries.clear()
    try:
        yield client, counter
    finally:
        object.__setattr__(snap, "tables", saved[0])
        object.__setattr__(snap, "indices", saved[1])
        snap.memo._entries.clear()


MEMOISED = [
    ("/api/projects", f"q=transit&perPage={PER_PAGE}"),
    ("/api/projects", f"q=transit&perPage={PER_PAGE}&page=7"),
    ("/api/projects", f"perPage={PER_PAGE}"),
    ("/api/projects", f"tag=topic.transit&perPage={PER_PAGE}"),
    ("/api/projects", f"stage=prototyping&q=twin&perPage={PER_PAGE}"),
    ("/api/people", f"q=data&perPage={PER_PAGE}"),
    ("/api/people", f"perPage={PER_PAGE}"),
    ("/api/help-wanted", f"q=data&perPage={PER_PAGE}"),
    ("/api/help-wanted", f"perPage={PER_PAGE}"),
    ("/api/tags/topic.transit", ""),
    ("/api/tags", ""),
    ("/api/sheets/projects", f"perPage={PER_PAGE}"),
]


@pytest.mark.parametrize(("path", "query"), MEMOISED, ids=[f"{p}?{q}" for p, q in MEMOISED])
def test_a_repeated_read_looks_up_only_what_its_page_shows(counted: tuple[testing.TestClient, list[int]],
                                                          path: str, query: str) -> None:
    client, counter = counted
    first = client.simulate_get(path, query_string=query)
    assert first.status_code == 200
    if path != "/api/tags":  # (the one route whose answer is not about the twins)
        assert counter[0] >= TWINS  # the first request computes the answer: the counter sees it
    counter[0] = 0
    again = client.simulate_get(path, query_string=query)
    assert again.status_code == 200 and again.content == first.content
    # what a page shows: its records, each one's tags (a few lookups each)
    assert counter[0] <= 10 * PER_PAGE, f"the repeated request looked up {counter[0]} entries"


def test_a_ranked_result_puts_each_row_in_order_once() -> None:
    """Pages of a memoised search, asked in any order, look up each row's id once: the rows
    up to a page's end are settled (a run of equal rank whole) and kept."""
    rowids = np.arange(1, 101, dtype=np.int64)
    ranks = np.repeat(np.array([-3.0, -2.0, -1.0]), [10, 60, 30])  # runs of 10, 60 and 30 tied rows
    ranked = Ranked(rowids[::-1].copy(), ranks)  # ids in reverse: a run's order is not the rowids'
    asked: list[int] = []

    def ids_of(rows: np.ndarray) -> dict[int, str]:
        asked.extend(rows.tolist())
        return {r: f"id-{r:03d}" for r in rows.tolist()}

    assert ranked.window(0, 5, ids_of) == [f"id-{r:03d}" for r in range(91, 96)]
    assert len(asked) == 10  # the first run, whole
    assert ranked.window(0, 5, ids_of) == [f"id-{r:03d}" for r in range(91, 96)]
    assert ranked.window(5, 10, ids_of) == [f"id-{r:03d}" for r in range(96, 101)]
    assert len(asked) == 10  # nothing looked up again
    assert ranked.window(20, 25, ids_of) == [f"id-{r:03d}" for r in range(41, 46)]
    assert ranked.window(95, 200, ids_of) == [f"id-{r:03d}" for r in range(26, 31)]
    assert sorted(asked) == list(range(1, 101))  # every row once, none twice
