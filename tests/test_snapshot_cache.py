"""The snapshot cache (data/cache.py): a restart reads the snapshot the last run
built and derives the branch head from it; a missing, stale or damaged cache only
costs a full build. The oracle is always a full build of the same commit."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hotreload
from hotreload.api.app import create_app
from hotreload.config import ConfigError, Settings
from hotreload.data import cache as cache_module
from hotreload.data.cache import CACHE_FILE, MAGIC, SnapshotCache
from hotreload.data.search import TABLES
from hotreload.data.snapshot import build_full, build_incremental
from hotreload.git.repo import GitRepo
from hotreload.service.runtime import Runtime, boot
from simulator.server import ServerProcess
from tests.conftest import WRITE_TOKEN, World, bearer, corpus_files, git, project_toml, write_corpus
from tests.test_incremental import OPS, apply_ops, snapshot_state


def ranked_state(snap: Any) -> dict[str, Any]:
    """``snapshot_state`` plus search results in rank order (the cache keeps the
    database itself, so even the ranking must be the full build's)."""
    state = snapshot_state(snap)
    for word in ("civic", "data", "map", "open"):
        state[f"ranked:{word}"] = {name: snap.search.search(t, word) for name, t in TABLES.items()}
    return state


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), records=st.integers(10, 50),
       steps=st.lists(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10**6), st.integers(0, 10**6)),
                               min_size=0, max_size=6), min_size=1, max_size=3))
def test_a_cached_snapshot_and_what_is_derived_from_it_equal_full_builds(
        seed: int, records: int, steps: list[list[tuple[str, int, int]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(f"{tmp}/r.git", corpus_files(records, seed=seed))
        repo = GitRepo(f"{tmp}/r.git")
        cache = SnapshotCache(tmp)
        snap = build_full(repo, repo.branch_commit("published") or "")
        for i, ops in enumerate(steps):
            cache.save(snap, "test")
            commit = apply_ops(repo, snap, ops, seed + i)
            loaded = cache.load(repo, snap.commit)
            assert loaded is not None and loaded.commit == snap.commit
            assert ranked_state(loaded) == ranked_state(build_full(repo, snap.commit))
            derived = build_incremental(repo, loaded, commit)
            assert snapshot_state(derived) == snapshot_state(build_full(repo, commit))
            assert snapshot_state(cache.load(repo, commit) or pytest.fail("no cache")) == snapshot_state(derived)
            snap = derived
        repo.close()


def full_build(world: World, commit: str) -> Any:
    repo = GitRepo(str(world.clone))
    try:
        return build_full(repo, commit)
    finally:
        repo.close()


def served_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "from") for r in caplog.records if hasattr(r, "from")]


def test_a_restart_reads_the_cache_and_derives_what_changed_since(world: World,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first = boot(world.settings())
    cache = SnapshotCache(str(world.clone))
    assert cache.names() == first.holder.current.commit  # written at start, before serving
    first.close()
    head = world.commit_upstream({"projects/zz-after-stop.toml": project_toml("zz-after-stop", "After stop")})
    git("--git-dir", str(world.clone), "fetch", "-q", str(world.origin), "published:published")  # moved while stopped
    caplog.clear()
    second = boot(world.settings())
    try:
        assert served_from(caplog) == ["cache"]
        snap = second.holder.current
        assert snap.commit == head and snap.project_by_slug("zz-after-stop") is not None
        assert snapshot_state(snap) == snapshot_state(full_build(world, head))
    finally:
        second.close()
    assert cache.names() == head  # the stop wrote the served snapshot


def test_a_stop_writes_the_snapshot_a_reload_served(world: World) -> None:
    runtime = boot(world.settings())
    head = world.commit_upstream({"projects/zz-reloaded.toml": project_toml("zz-reloaded", "Reloaded")})
    runtime.reloader.reload(head)
    assert SnapshotCache(str(world.clone)).names() != head
    runtime.close()
    assert SnapshotCache(str(world.clone)).names() == head


def _rewrite_header(path: Path, **changes: object) -> None:
    data = path.read_bytes()
    end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):end])
    header.update(changes)
    path.write_bytes(MAGIC + json.dumps(header).encode() + data[end:])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "a flipped byte": (_flip_last_byte, "checksum does not match"),
    "cut short": (lambda p: p.write_bytes(p.read_bytes()[:-100]), "not the size its header says"),
    "appended to": (lambda p: p.write_bytes(p.read_bytes() + b"x"), "not the size its header says"),
    "not a cache": (lambda p: p.write_bytes(b"PK\x03\x04 something else"), "not a snapshot cache"),
    "another commit": (lambda p: _rewrite_header(p, commit="0" * 40), "which this repository does not have"),
    "another tree": (lambda p: _rewrite_header(p, tree="0" * 40), "but it has"),
    "other code": (lambda p: _rewrite_header(p, stamp="0" * 64), "written by other code"),
    "odd header values": (lambda p: _rewrite_header(p, payload=[1]), "unreadable"),
    "a header nested deep": (lambda p: p.write_bytes(MAGIC + b"[" * 4000 + b"\n"), "unreadable"),
    "empty": (lambda p: p.write_bytes(b""), "not a snapshot cache"),
    "cut inside the header": (lambda p: p.write_bytes(p.read_bytes()[:len(MAGIC) + 20]), "header cut short"),
    "a header that is not an object": (lambda p: p.write_bytes(MAGIC + b"[1, 2]\n"), "header is not an object"),
    "a size far beyond the file": (lambda p: _rewrite_header(p, payload=2**50), "not the size its header says"),
    "a negative size": (lambda p: _rewrite_header(p, search=-1), "header has no sizes"),
    "a commit that is a tree": (lambda p: _rewrite_header(p, commit=json.loads(
        p.read_bytes()[len(MAGIC):].split(b"\n", 1)[0])["tree"]), "which this repository does not have"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_or_stale_cache_costs_a_full_build_never_a_wrong_answer(
        world: World, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    boot(world.settings()).close()
    spoil, why = DAMAGE[damage]
    spoil(world.clone / CACHE_FILE)
    caplog.set_level(logging.INFO)
    runtime = boot(world.settings())
    try:
        assert served_from(caplog) == ["full build"]
        assert any(why in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
        assert snapshot_state(runtime.holder.current) == snapshot_state(full_build(world, world.origin_head()))
        repo = GitRepo(str(world.clone))  # and a good one replaced it, though it named the same commit
        try:
            head = world.origin_head()
            assert SnapshotCache(str(world.clone)).names() == head, "not replaced"
            assert SnapshotCache(str(world.clone)).load(repo, head) is not None
        finally:
            repo.close()
    finally:
        runtime.close()


def test_a_cache_that_does_not_decode_costs_a_full_build(world: World, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    boot(world.settings()).close()

    def broken(*_: object) -> None:
        raise ModuleNotFoundError("No module named 'hotreload.data.gone'")

    monkeypatch.setattr(cache_module, "_decode", broken)
    caplog.set_level(logging.INFO)
    runtime = boot(world.settings())
    try:
        assert served_from(caplog) == ["full build"]
        assert any("could not be decoded" in r.getMessage() for r in caplog.records)
    finally:
        runtime.close()


def test_a_head_that_does_not_build_is_not_served_from_the_cache(world: World) -> None:
    boot(world.settings()).close()
    cached = SnapshotCache(str(world.clone)).names()
    world.commit_upstream({"projects/zz-broken.toml": 'id = "not a uuid"\nslug = "zz-broken"\n'})
    git("--git-dir", str(world.clone), "fetch", "-q", str(world.origin), "published:published")
    runtime = boot(world.settings())
    try:  # as without a cache: the newest commit that builds, degraded, and the cache is left alone
        assert runtime.holder.degraded is not None
        assert runtime.holder.current.commit == cached
    finally:
        runtime.close()
    assert SnapshotCache(str(world.clone)).names() == cached


def test_the_cache_can_be_switched_off(world: World) -> None:
    boot(world.settings(snapshot_cache=False)).close()
    assert not (world.clone / CACHE_FILE).exists()
    assert Settings.from_env({**world.env(), "CFP_SNAPSHOT_CACHE": "off"}).snapshot_cache is False
    assert Settings.from_env(world.env()).snapshot_cache is True
    with pytest.raises(ConfigError, match="CFP_SNAPSHOT_CACHE is 'maybe'; it must be 1 or 0"):
        Settings.from_env({**world.env(), "CFP_SNAPSHOT_CACHE": "maybe"})


def changed_in_commits(runtime: Runtime) -> set[str | None]:
    """Every sheet's ``changedInCommit`` (``/api/sheets``) and health's revocations' one."""
    client = testing.TestClient(create_app(runtime))
    commits = {s["changedInCommit"] for s in client.simulate_get("/api/sheets").json["data"]}
    return commits | {client.simulate_get("/api/health").json["data"]["revocations"]["changedInCommit"]}


@pytest.mark.parametrize("start", ["full", "cache", "cache + change"])
def test_changed_in_commit_is_the_commit_served_at_every_kind_of_start(
        world: World, caplog: pytest.LogCaptureFixture, start: str) -> None:
    """"The first commit this process served with the sheet's records": at start,
    the served commit for every sheet, whatever the cache held (it was another process's)."""
    boot(world.settings()).close()
    if start == "cache + change":  # the branch moved while stopped; revocations did not change
        world.commit_upstream({"projects/zz-moved.toml": project_toml("zz-moved", "Moved")})
        git("--git-dir", str(world.clone), "fetch", "-q", str(world.origin), "published:published")
    caplog.set_level(logging.INFO)
    runtime = boot(world.settings(snapshot_cache=start != "full"))
    try:
        assert served_from(caplog) == ["full build" if start == "full" else "cache"]
        assert changed_in_commits(runtime) == {runtime.holder.current.commit}
    finally:
        runtime.close()


@pytest.mark.slow
def test_changed_in_commit_after_a_write_a_kill_and_a_restart_from_the_cache(world: World) -> None:
    first = ServerProcess(world.env()).start()
    try:
        write = first.request("POST", "/api/projects", {"slug": "zz-killed", "title": "Then killed"},
                              bearer(WRITE_TOKEN))
        assert write.status == 201 and write.commit is not None
    finally:
        first.kill()  # no clean stop: the cache still holds the start's commit
    with ServerProcess(world.env()) as second:
        assert '"from": "cache"' in second.log()
        health = second.get("/api/health").data
        assert health["servedCommit"] == write.commit
        assert health["revocations"]["changedInCommit"] == write.commit
        assert {s["changedInCommit"] for s in second.get("/api/sheets").data} == {write.commit}


def test_a_start_removes_the_temporary_file_a_killed_save_left(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """SIGKILL during a save (an OOM kill: the save holds a second copy of the snapshot)
    skips every cleanup; the next start removes what it left, and only that."""
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal
from hotreload.data.cache import SnapshotCache
from hotreload.data.snapshot import build_full
from hotreload.git.repo import GitRepo
repo = GitRepo({str(world.clone)!r})
snap = build_full(repo, repo.branch_commit("published"))
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed with the file written, not renamed
SnapshotCache(repo.path).save(snap, "killed")
"""], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [p.name for p in world.clone.glob(".hotreload-snapshot-*")]
    assert len(left) == 1 and not (world.clone / CACHE_FILE).exists()
    others = [".hotreload-snapshot-notours.txt", "hotreload-snapshot-abcd1234", ".hotreload-snapshot-abc"]
    for name in others:  # names this service never makes
        (world.clone / name).write_text("someone else's")
    caplog.set_level(logging.INFO)
    boot(world.settings()).close()
    assert sorted(p.name for p in world.clone.glob("*hotreload-snapshot-*")) == sorted(others)
    assert any(left[0] in r.getMessage() for r in caplog.records)
    assert (world.clone / CACHE_FILE).exists()


def test_a_save_without_room_on_the_volume_is_skipped_with_a_warning(
        world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def almost_full(path: str) -> Any:
        return shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096)  # type: ignore[attr-defined]

    monkeypatch.setattr(cache_module.shutil, "disk_usage", almost_full)
    caplog.set_level(logging.INFO)
    runtime = boot(world.settings())
    try:  # serving, as without a cache; nothing written, nothing left behind
        assert runtime.holder.current.commit == world.origin_head()
        assert not list(world.clone.glob("*hotreload-snapshot*"))
        warned = [r for r in caplog.records if r.levelno == logging.WARNING and "free" in r.getMessage()]
        assert warned and str(world.clone) in warned[0].getMessage()
    finally:
        runtime.close()


def test_the_code_stamp_changes_with_any_source_file_of_the_package_or_any_library_version(tmp_path: Path) -> None:
    """A cache is read only by the code and libraries that wrote it: every module of
    the package (ranking, facets, the git object reader the parser uses, ...),
    every installed distribution's version, Python's and SQLite's."""
    package = Path(hotreload.__file__).parent
    versions = cache_module.installed_versions()
    assert cache_module.code_stamp() == cache_module.stamp_of(str(package), versions)
    for name in ("tomli", "msgspec", "sqlite-utils", "dulwich", "numpy", "tomlkit"):
        assert f"{name} {importlib.metadata.version(name)}" in versions, name
    copy = tmp_path / "hotreload"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    stamp = cache_module.stamp_of(str(copy), versions)
    assert stamp == cache_module.code_stamp()
    sources = sorted(copy.rglob("*.py"))
    assert len(sources) > 40 and copy / "data" / "ranking.py" in sources and copy / "git" / "objects.py" in sources
    for source in sources:
        original = source.read_bytes()
        source.write_bytes(original + b"\n")
        assert cache_module.stamp_of(str(copy), versions) != stamp, source
        source.write_bytes(original)
    for i, version in enumerate(versions):
        bumped = [*versions[:i], version + ".post1", *versions[i + 1:]]
        assert cache_module.stamp_of(str(copy), bumped) != stamp, version
