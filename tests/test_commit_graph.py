"""The commit-graph is a cache that must never decide an answer that drops a commit.

A damaged file (disks, copies, half-written files) is refused whole; one that
passes its checks but disagrees with the commits is caught before a rebase, a
fast-forward or a push relies on it; upkeep rewrites either from the commits.
The oracle is git itself (``git commit-graph verify``, ``git branch --contains``).
"""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from hotreload.git.reconcile import Outcome, reconcile
from hotreload.git.repo import GitRepo
from hotreload.git.upkeep import UpkeepDaemon, run_upkeep
from simulator.server import ServerProcess
from tests.conftest import World, git, project_toml
from tests.test_reconcile import clock, local_commit


def graph_path(world: World) -> Path:
    return world.clone / "objects" / "info" / "commit-graph"


def verify(world: World) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "--git-dir", str(world.clone), "commit-graph", "verify"],
                          capture_output=True, text=True)


def edit_graph(world: World, commit: str, *, parent: str | None = None, generation: int | None = None,
               keep_checksum: bool = False) -> None:
    """Set ``commit``'s first parent or generation in the file; ``keep_checksum``
    recomputes the SHA-1 trailer, so the file lies while passing every check of its own."""
    path = graph_path(world)
    data = bytearray(path.read_bytes())
    table = {bytes(data[8 + 12 * i:12 + 12 * i]): struct.unpack_from(">Q", data, 12 + 12 * i)[0]
             for i in range(data[6])}
    lookup, cdat = table[b"OIDL"], table[b"CDAT"]
    oids = [bytes(data[at:at + 20]).hex() for at in range(lookup, cdat, 20)]
    entry = cdat + 36 * oids.index(commit) + 20
    if parent is not None:
        struct.pack_into(">I", data, entry, oids.index(parent))
    if generation is not None:
        word = struct.unpack_from(">I", data, entry + 8)[0]
        struct.pack_into(">I", data, entry + 8, (generation << 2) | (word & 3))
    if keep_checksum:
        data[-20:] = hashlib.sha1(bytes(data[:-20])).digest()
    path.chmod(0o644)
    path.write_bytes(bytes(data))


def two_unpushed_commits_in_the_graph(world: World) -> tuple[str, str, str]:
    """L1 <- L2 on the clone's branch, not pushed, and written into the commit-graph by upkeep."""
    repo = GitRepo(str(world.clone))
    try:
        base = repo.branch_commit("published")
        assert base is not None
        l1 = local_commit(repo, {"projects/local-one.toml": project_toml("local-one", "Local one")}, when=1_750_000_001)
        l2 = local_commit(repo, {"projects/local-two.toml": project_toml("local-two", "Local two")}, when=1_750_000_002)
        run_upkeep(repo, grace_s=0, force=True)
    finally:
        repo.close()
    assert verify(world).returncode == 0
    return base, l1, l2


@pytest.mark.slow
def test_a_corrupt_commit_graph_loses_no_local_commit_at_start(world: World) -> None:
    """The review's scenario: L2's parent flipped to the merge base in the file (its
    checksum no longer matches), an upstream commit, a start. The start-up reconcile
    must replay both local commits (it replayed only L2, and L1's record was on no branch)."""
    base, _l1, l2 = two_unpushed_commits_in_the_graph(world)
    edit_graph(world, l2, parent=base)
    assert "incorrect checksum" in verify(world).stderr
    world.commit_upstream({"projects/upstream.toml": project_toml("upstream", "Upstream")})
    with ServerProcess(world.env()) as server:
        assert server.get("/api/health").data["lastReload"]["outcome"] == "rebased"
        assert server.get("/api/projects/local-one").status == 200
        assert server.get("/api/projects/local-two").status == 200
        assert server.get("/api/projects/upstream").status == 200
        assert '"ahead": 2' in server.log()
        assert "commit-graph" in server.log() and "checksum" in server.log()
    # both replayed onto the upstream commit and pushed, as git reads the origin
    assert git("--git-dir", str(world.origin), "rev-list", "--count", f"{base}..published") == "3"
    for slug in ("local-one", "local-two", "upstream"):
        git("--git-dir", str(world.origin), "cat-file", "-e", f"published:projects/{slug}.toml")


def _lie(world: World, kind: str) -> tuple[str, str]:
    """A history in the clone and a commit-graph (valid checksum) that lies about one
    parent so that, believed, the reconcile would drop a commit: ``replay`` leaves
    L1 out of the commits to replay, ``fast-forward`` makes L1 look contained in the
    upstream commit U, ``push`` makes U look contained in L1 (a push would then
    overwrite U on the remote). Returns (the merge base, U)."""
    repo = GitRepo(str(world.clone))
    try:
        base = repo.branch_commit("published")
        assert base is not None
        l1 = local_commit(repo, {"projects/local-one.toml": project_toml("local-one", "Local one")}, when=1_750_000_001)
        l2 = local_commit(repo, {"projects/local-two.toml": project_toml("local-two", "Local two")}, when=1_750_000_002)
        upstream = world.commit_upstream({"projects/upstream.toml": project_toml("upstream", "Upstream")})
        if kind != "replay":  # the clone has U, and the graph holds it
            repo.fetch_branch(str(world.origin), "published")
        run_upkeep(repo, grace_s=0, force=True)
    finally:
        repo.close()
    # generations that fit the lie (base 1, L1 2, L2 3, U 2), so a walk believes it whole
    if kind == "replay":
        edit_graph(world, l2, parent=base, keep_checksum=True)
    elif kind == "fast-forward":
        edit_graph(world, upstream, parent=l2, generation=4, keep_checksum=True)
    else:
        edit_graph(world, l1, parent=upstream, generation=3, keep_checksum=True)
        edit_graph(world, l2, generation=4, keep_checksum=True)
    assert "commit-graph parent for" in verify(world).stderr  # git compares it with the commits
    return base, upstream


@pytest.mark.parametrize("kind", ["replay", "fast-forward", "push"])
def test_a_graph_that_lies_about_a_parent_is_caught_before_a_commit_is_dropped(world: World, kind: str) -> None:
    base, upstream = _lie(world, kind)
    repo = GitRepo(str(world.clone))
    try:
        result = reconcile(repo, str(world.origin), "published", clock)
        assert (result.outcome, result.ahead, result.behind, result.push_error) == (Outcome.REBASED, 2, 1, None)
        assert repo.history.graph_size == 0 and repo.history.graph_refused  # until upkeep rewrites it
        daemon = UpkeepDaemon(repo, interval_s=3600)
        daemon.run_once()  # the service's own upkeep, in its child process
        assert daemon.last_error is None and repo.history.graph_size == 4 and not repo.history.graph_refused
        assert verify(world).returncode == 0
    finally:
        repo.close()
    assert git("--git-dir", str(world.origin), "rev-list", "--count", f"{base}..published") == "3"
    git("--git-dir", str(world.origin), "merge-base", "--is-ancestor", upstream, "published")
    for slug in ("local-one", "local-two", "upstream"):
        git("--git-dir", str(world.origin), "cat-file", "-e", f"published:projects/{slug}.toml")


def test_a_push_is_not_a_fast_forward_because_the_graph_says_so(world: World) -> None:
    from hotreload.git.errors import PushRejected

    _base, upstream = _lie(world, "push")
    repo = GitRepo(str(world.clone))
    try:
        with pytest.raises(PushRejected):
            repo.push_ref(str(world.origin), repo.branch_commit("published") or "", b"refs/heads/published")
    finally:
        repo.close()
    assert world.origin_head() == upstream


def _damage(data: bytearray, kind: str) -> None:
    table = {bytes(data[8 + 12 * i:12 + 12 * i]): (12 + 12 * i, struct.unpack_from(">Q", data, 12 + 12 * i)[0])
             for i in range(data[6])}
    fanout, lookup, cdat = (table[c][1] for c in (b"OIDF", b"OIDL", b"CDAT"))
    if kind == "checksum":
        data[cdat + 25] ^= 0x01  # one bit of a parent position
        return
    if kind == "chunk table":  # the last chunk runs over the trailer
        at = 8 + 12 * data[6] + 4
        struct.pack_into(">Q", data, at, struct.unpack_from(">Q", data, at)[0] + 20)
    elif kind == "fan-out":
        at = fanout + 4 * data[lookup]  # the first commit's byte: one commit too many
        struct.pack_into(">I", data, at, struct.unpack_from(">I", data, at)[0] + 1)
    elif kind == "lookup order":
        data[lookup:lookup + 40] = data[lookup + 20:lookup + 40] + data[lookup:lookup + 20]
    elif kind == "commit data size":
        struct.pack_into(">I", data, fanout + 1020, struct.unpack_from(">I", data, fanout + 1020)[0] - 1)
    data[-20:] = hashlib.sha1(bytes(data[:-20])).digest()


@pytest.mark.parametrize("kind", ["checksum", "chunk table", "fan-out", "lookup order", "commit data size"])
def test_a_damaged_graph_file_is_refused_whole_and_logged_once(tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_history import _linear, write_graph

    path = tmp_path / "d.git"
    ids = _linear(path, 30)
    write_graph(path, [ids[-1]])  # git's own file (with its generation-data chunk)
    graph = path / "objects" / "info" / "commit-graph"
    repo = GitRepo(str(path))
    try:
        assert repo.history.graph_size == 30 and repo.history.graph_refused is None
        data = bytearray(graph.read_bytes())
        _damage(data, kind)
        graph.chmod(0o644)
        graph.write_bytes(bytes(data))
        assert subprocess.run(["git", "--git-dir", str(path), "commit-graph", "verify"],
                              capture_output=True).returncode != 0  # git calls it damaged too
        assert not repo.history.reload_graph() and not repo.history.reload_graph()
        assert repo.history.graph_size == 0 and repo.history.graph_refused
        assert [r.levelname for r in caplog.records if "commit-graph" in r.getMessage()] == ["WARNING"]
        assert repo.is_ancestor(ids[3], ids[-1]) and not repo.is_ancestor(ids[-1], ids[3])
        assert len(repo.compare(ids[3], ids[-1]).right_only) == 26
    finally:
        repo.close()


def test_upkeep_repairs_a_wrong_generation_number(world: World) -> None:
    """One commit's generation below its parent's, in a file whose checksum is right:
    upkeep recomputes generations from the parents it reads (it copied the file's
    numbers), git verifies the file it writes, and the reconcile's counts are right."""
    for n in range(3):
        world.commit_upstream({f"projects/up-{n}.toml": project_toml(f"up-{n}", f"Up {n}")})
    repo = GitRepo(str(world.clone))
    try:
        tip = repo.fetch_branch(str(world.origin), "published")
        assert tip is not None
        run_upkeep(repo, grace_s=0, force=True)
        edit_graph(world, tip, generation=1, keep_checksum=True)
        assert "generation" in verify(world).stderr
        subprocess.run([sys.executable, "-m", "hotreload.cli", "upkeep", "--repo", str(world.clone)], check=True)
        assert verify(world).returncode == 0
        repo.history.reload_graph()
        upstream = world.commit_upstream({"projects/one-more.toml": project_toml("one-more", "One more")})
        result = reconcile(repo, str(world.origin), "published", clock)
        assert (result.outcome, result.new_commit, result.behind) == (Outcome.FAST_FORWARDED, upstream, 1 + 3)
        assert repo.history.graph_refused is None and repo.history.in_graph(tip)  # the rewritten file holds
    finally:
        repo.close()
