"""The simulator checks the service against git, not against the service: it builds
its worlds with git's own plumbing and its own corpus, and reads the truth back with
git and ``tomllib``. None of its modules imports the service (its bugs would agree
with themselves), nor dulwich, the library the service reads git with."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from hotreload.data.records import RecordError, parse_record
from hotreload.data.sheets import parse_sheet_config
from hotreload.git.repo import GitRepo
from simulator import corpus
from simulator.world import BRANCH, World

SIMULATOR = Path(__file__).resolve().parent.parent / "simulator"
SHARED = ("hotreload", "dulwich")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_simulator_module_imports_the_service_or_its_git_library() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in SIMULATOR.glob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in SHARED
    }
    assert not offenders, offenders
    assert imported_modules(SIMULATOR / "runner.py") >= {"simulator.truth"}


def test_importing_the_whole_simulator_loads_nothing_of_the_service() -> None:
    """Indirect imports too: a fresh interpreter imports every simulator module and lists
    what came with them."""
    modules = [f"simulator.{path.stem}" for path in sorted(SIMULATOR.glob("*.py")) if path.stem != "__init__"]
    code = (f"import sys\nimport {', '.join(modules)}\n"
            f"print(sorted({{m for m in sys.modules if m.split('.')[0] in {SHARED!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=SIMULATOR.parent)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_simulators_corpus_is_valid_data_in_every_style() -> None:
    """Its own records, judged by the service's parser (a test may use both): every
    record of every sheet validates at its path, and each TOML style reads back to the
    same values."""
    files = corpus.files(corpus.make_records(300, seed=5), seed=5)
    sheets = {name: parse_sheet_config(path, name, files[path])
              for path in files if path.startswith(".gitsheets/") for name in [path[11:-5]]}
    counted = dict.fromkeys(sheets, 0)
    for path, data in files.items():
        sheet = next((s for s in sheets.values() if s.owns(path)), None)
        if sheet is None:
            continue
        try:
            parse_record(sheet, path, data)
        except RecordError as exc:
            raise AssertionError(f"{path}: {exc}\n{data.decode()}") from None
        counted[sheet.name] += 1
    assert all(counted.values()), counted
    assert 280 <= sum(counted.values()) <= 300
    fields = {"id": "x", "slug": "a-b", "title": "T", "overview": "long " * 20, "createdAt": "2024-01-02T03:04:05Z",
              "legacyId": 7, "featured": True}
    read = [tomllib.loads(corpus.render(fields, style).decode()) for style in corpus.STYLES]
    assert read[0] == fields and read[1] == fields
    assert {**read[2], "createdAt": read[2]["createdAt"].strftime("%Y-%m-%dT%H:%M:%SZ")} == fields


def test_a_world_written_with_git_plumbing_reads_the_same_through_the_service(tmp_path: Path) -> None:
    """Two independent readers agree: what the simulator wrote and reads with git (an
    upstream commit adding, editing, renaming with a redirect, removing, and a file name
    that is not UTF-8) is what the service's own reader finds in the origin."""
    world = World(20)
    try:
        world.upstream([{"op": "add", "sheet": "projects", "slug": "tram-map", "fields": {"title": "Tram"}},
                        {"op": "modify", "sheet": "projects", "slug": "tram-map", "fields": {"stage": "testing"}},
                        {"op": "raw", "path": "docs/caf\\xe9.md", "escaped": True, "content": "notes\n"}])
        head = world.upstream([{"op": "rename", "sheet": "projects", "slug": "tram-map", "to": "trams",
                                "history": True},
                               {"op": "raw", "path": "README.md", "content": "", "remove": True}])
        origin = world.origin_repo()
        ours = origin.files(head)
        assert "projects/trams.toml" in ours and "slug-history/project/tram-map.toml" in ours
        assert "projects/tram-map.toml" not in ours and "README.md" not in ours
        moved = tomllib.loads(origin.read_path(head, "projects/trams.toml").decode())
        assert (moved["slug"], moved["title"], moved["stage"]) == ("trams", "Tram", "testing")
        service_view = GitRepo(world.origin)
        try:
            assert service_view.branch_commit(BRANCH) == head == world.origin_head()
            theirs = {e.path: e.sha for e in service_view.list_blobs(service_view.tree_of(head))}
            assert service_view.commit(head).parents[0].decode() == origin.commit(head).parents[0]
        finally:
            service_view.close()
        assert {path.encode("utf-8", "surrogateescape") for path in ours} == \
            {path.encode("utf-8", "surrogateescape") for path in theirs}
        assert sorted(ours.values()) == sorted(theirs.values())
        assert world.local_head() != head and world.origin_is_ancestor(world.local_head(), head)
    finally:
        world.close()
