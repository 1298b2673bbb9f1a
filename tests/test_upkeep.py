"""Repository upkeep: the commit-graph we write is one git accepts and reads the
same way; packing and pruning never lose an object, even racing writes and
reloads (``git fsck --full`` is the judge)."""

from __future__ import annotations

import threading
from pathlib import Path

from hotreload.git.repo import GitRepo, Signature
from hotreload.git.upkeep import loose_objects, run_upkeep, write_commit_graph
from hotreload.service.runtime import boot
from tests.conftest import World, git, project_toml
from tests.test_history import make_dag


def test_our_commit_graph_passes_git_verify_and_matches_gits_generations(tmp_path: Path) -> None:
    path = tmp_path / "dag.git"
    ids = make_dag(path, 300, seed=3, merge_rate=0.3)
    # an octopus merge too: git keeps its third parent in the EDGE chunk, and so do we
    repo = GitRepo(str(path))
    tree = repo.tree_of(ids[-1])
    octopus = repo.write_commit(tree, [ids[-1], ids[-20], ids[-40]], "octopus\n", Signature(b"O <o@x>", 1_800_000_000))
    repo.set_ref(b"refs/heads/octopus", octopus)
    reachable = len(git("--git-dir", str(path), "rev-list", "--all").split())
    assert write_commit_graph(repo, [octopus, *ids[-3:]]) == reachable
    git("--git-dir", str(path), "commit-graph", "verify")  # raises on any error
    # dulwich reads it back with the parents git sees
    assert repo.history.graph_size == reachable
    graph = repo.history._graph
    assert graph is not None
    entry = graph.get_entry_by_oid(octopus.encode())  # type: ignore[arg-type]
    assert entry is not None and [p.decode() for p in entry.parents] == [ids[-1], ids[-20], ids[-40]]
    assert repo.history.commits_beyond_graph == 0
    repo.close()


def test_an_object_packed_and_pruned_between_two_looks_is_still_read(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """dulwich looks in the packs, then loose: upkeep packing an object and pruning its
    loose copy between those looks hid a commit from a write's push count (a fresh-clone
    CI run of the race test below). ``read_object`` looks loose first, then in the packs,
    rescanned: here upkeep runs at the worst moment, just before the store's loose look."""
    from hotreload.git import objects

    repo = GitRepo(str(world.clone))
    tip = repo.branch_commit("published")
    assert tip is not None
    sha = repo.write_commit(repo.tree_of(tip), [tip], "loose\n", Signature(b"T <t@x>", 1_800_000_000))
    store = repo.store
    list(store.packs)  # its pack list is read now, before upkeep adds one
    real = store._get_loose_object

    def upkeep_first(hexsha):  # type: ignore[no-untyped-def]
        other = GitRepo(str(world.clone))
        try:
            run_upkeep(other, grace_s=0, force=True)  # packs the commit, prunes its loose copy
        finally:
            other.close()
        return real(hexsha)

    monkeypatch.setattr(store, "_get_loose_object", upkeep_first)
    assert objects.read_object(store, sha.encode()).message == b"loose\n"
    # and once the loose copy is gone, from the new pack (the store's pack list is stale)
    monkeypatch.setattr(store, "_get_loose_object", real)
    upkeep_first(sha)
    assert not (world.clone / "objects" / sha[:2] / sha[2:]).exists()
    found = objects.read_object(store, sha.encode())
    assert found.message == b"loose\n" and found.parents == [tip.encode()]
    assert repo.history.is_ancestor(store, tip, sha)  # parents read through read_object
    repo.close()


def test_upkeep_packs_and_prunes_only_after_the_grace(world: World) -> None:
    rt = boot(world.settings(upkeep_seconds=0))
    try:
        for n in range(3):
            rt.writer.create("projects", {"slug": f"loose-{n}", "title": f"Loose {n}"}, "/api/projects")
        store_path = rt.repo.store.path
        before = set(loose_objects(store_path))
        assert before
        first = run_upkeep(rt.repo, force=True)
        assert first.packed == len(before) and first.pruned == 0  # the new pack is too young
        assert set(loose_objects(store_path)) == before
        second = run_upkeep(rt.repo, grace_s=0)
        assert second.pruned == len(before) and not loose_objects(store_path)
        git("--git-dir", str(world.clone), "fsck", "--full", "--no-progress")
        assert rt.holder.current.project_by_slug("loose-2") is not None
    finally:
        rt.close()


def test_fsck_is_clean_after_upkeep_races_reloads_and_writes(world: World) -> None:
    rt = boot(world.settings(upkeep_seconds=0))
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_upkeeping() -> None:
        try:
            while not stop.is_set():
                run_upkeep(rt.repo, grace_s=0, force=True)
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)

    upkeeper = threading.Thread(target=keep_upkeeping)
    upkeeper.start()
    try:
        assert rt.push_daemon is not None
        for n in range(8):
            assert rt.push_daemon.flush(20)  # the outside author pushes after our writes landed
            world.commit_upstream({f"projects/up-{n}.toml": project_toml(f"up-{n}", f"Up {n}")})
            result = rt.reloader.reload()
            assert result.outcome in ("fast-forwarded", "rebased"), result
            rt.writer.create("people", {"slug": f"writer-{n}", "fullName": f"Writer {n}"}, "/api/people")
        assert rt.push_daemon.flush(20)
    finally:
        stop.set()
        upkeeper.join()
        rt.close()
    assert not errors, errors
    git("--git-dir", str(world.clone), "fsck", "--full", "--no-progress")
    git("--git-dir", str(world.clone), "commit-graph", "verify")
    snap_repo = GitRepo(str(world.clone))
    try:
        tip = snap_repo.branch_commit("published")
        assert tip is not None and snap_repo.is_ancestor(world.origin_head(), tip)
    finally:
        snap_repo.close()


def test_the_daemon_upkeeps_in_a_child_process_and_the_service_reads_the_new_graph(world: World) -> None:
    from hotreload.git.upkeep import UpkeepDaemon

    rt = boot(world.settings(upkeep_seconds=0))
    try:
        assert rt.repo.history.graph_size == 0
        daemon = UpkeepDaemon(rt.repo, interval_s=3600)
        daemon.run_once()
        assert daemon.last_error is None and daemon.runs == 1
        assert rt.repo.history.graph_size >= 1 and rt.repo.history.in_graph(rt.holder.current.commit)
        git("--git-dir", str(world.clone), "commit-graph", "verify")
    finally:
        rt.close()


def test_bounded_haves_offer_the_tips_then_exponentially_older_commits() -> None:
    from hotreload.git.transport import BoundedHaves

    haves = BoundedHaves(iter([f"{n:040x}" for n in range(5000)]), limit=8)
    offered = []
    while (sha := next(haves)) is not None:
        offered.append(int(sha, 16))
    assert offered == [0, 1, 2, 4, 8, 16, 32, 64]
