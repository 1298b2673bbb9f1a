"""The reconcile state machine on real repositories (no mocks of git)."""

from __future__ import annotations

import ast
import datetime as dt
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dulwich.client
import pytest

from hotreload.git import reconcile as reconcile_module
from hotreload.git.reconcile import Outcome, conflict_branch_name, reconcile
from hotreload.git.repo import BranchMoved, GitRepo, PushRejected, Signature, redact
from tests.conftest import World, git, make_world, project_toml

FIXED = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


def clock() -> dt.datetime:
    return FIXED


def local_commit(repo: GitRepo, files: dict[str, str | None], author: bytes = b"Local Writer <lw@example.org>",
                 when: int = 1_750_000_000) -> str:
    parent = repo.branch_commit("published")
    assert parent is not None
    tree = repo.write_tree_changes(repo.tree_of(parent), {k: (v.encode() if v is not None else None) for k, v in files.items()})
    commit = repo.write_commit(tree, [parent], f"local change {when}\n", Signature(author, when, 0))
    assert repo.cas_ref(b"refs/heads/published", parent, commit)
    return commit


@pytest.fixture
def repo(world: World) -> Iterator[GitRepo]:
    r = GitRepo(str(world.clone))
    yield r
    r.close()


def test_in_sync(world: World, repo: GitRepo) -> None:
    result = reconcile(repo, str(world.origin), "published", clock)
    assert result.outcome is Outcome.IN_SYNC
    assert result.old_commit == result.new_commit == world.origin_head()


def test_fast_forward_fills_the_tracking_ref_of_a_narrow_bare_clone(world: World, repo: GitRepo) -> None:
    # `git clone --bare` maps refs/heads/* onto refs/heads/*: no refs/remotes/origin/* at all
    assert repo.resolve(b"refs/remotes/origin/published") is None
    world.commit_upstream({"projects/aa-one.toml": project_toml("aa-one", "One")})
    tip = world.commit_upstream({"projects/aa-two.toml": project_toml("aa-two", "Two")})
    result = reconcile(repo, str(world.origin), "published", clock)
    assert result.outcome is Outcome.FAST_FORWARDED and result.behind == 2
    assert world.clone_head() == tip
    assert repo.resolve(b"refs/remotes/origin/published") == tip


def test_pushed_ahead_updates_the_remote(world: World, repo: GitRepo) -> None:
    mine = local_commit(repo, {"projects/aa-local.toml": project_toml("aa-local", "Local")})
    result = reconcile(repo, str(world.origin), "published", clock)
    assert result.outcome is Outcome.PUSHED_AHEAD and result.ahead == 1
    assert result.push_error is None
    assert world.origin_head() == mine


def test_rebase_replays_local_commits_onto_the_remote(world: World, repo: GitRepo) -> None:
    mine = local_commit(repo, {"projects/aa-local.toml": project_toml("aa-local", "Local")})
    theirs = world.commit_upstream({"projects/aa-remote.toml": project_toml("aa-remote", "Remote")})
    result = reconcile(repo, str(world.origin), "published", clock)
    assert result.outcome is Outcome.REBASED and result.ahead == 1 and result.behind == 1
    new = repo.commit(result.new_commit)
    assert [p.decode() for p in new.parents] == [theirs]
    assert new.author == b"Local Writer <lw@example.org>" and new.author_time == 1_750_000_000
    assert new.committer == b"Code for Philly API <api@users.noreply.codeforphilly.org>"
    assert world.origin_head() == world.clone_head() == result.new_commit != mine
    files = git("--git-dir", str(world.clone), "ls-tree", "-r", "--name-only", "published").split()
    assert "projects/aa-local.toml" in files and "projects/aa-remote.toml" in files


def test_multi_commit_rebase_keeps_order_and_authors(world: World, repo: GitRepo) -> None:
    authors = [b"Ana <ana@example.org>", b"Ben <ben@example.org>", b"Chen <chen@example.org>"]
    for i, author in enumerate(authors):
        local_commit(repo, {f"projects/aa-local-{i}.toml": project_toml(f"aa-local-{i}", f"L{i}")},
                     author, 1_750_000_000 + i)
    theirs = world.commit_upstream({"projects/aa-remote.toml": project_toml("aa-remote", "Remote")})
    result = reconcile(repo, str(world.origin), "published", clock)
    assert result.outcome is Outcome.REBASED and result.ahead == 3
    log = git("--git-dir", str(world.origin), "log", "--format=%an|%at", f"{theirs}..published").splitlines()
    assert log == ["Chen|1750000002", "Ben|1750000001", "Ana|1750000000"]


def test_edits_to_different_lines_of_one_record_merge(world: World, repo: GitRepo) -> None:
    path = next(p for p in git("ls-files", cwd=world.work).split() if p.startswith("projects/"))
    text = (world.work / path).read_text().splitlines(keepends=True)
    ours = "".join(line.replace('title = "', 'title = "Ours ') for line in text)
    local_commit(repo, {path: ours})
    theirs = "".join('updatedAt = "2030-01-01T00:00:00Z"\n' if line.startswith("updatedAt")
                     else line for line in text)
    world.commit_upstream({path: theirs})
    result = reconcile(repo, str(world.origin), "published", clock)
    assert result.outcome is Outcome.REBASED
    merged = git("--git-dir", str(world.clone), "show", f"published:{path}")
    assert 'title = "Ours ' in merged and 'updatedAt = "2030-01-01T00:00:00Z"' in merged


def test_conflict_escapes_to_a_pushed_branch(world: World, repo: GitRepo) -> None:
    path = next(p for p in git("ls-files", cwd=world.work).split() if p.startswith("projects/"))
    mine = local_commit(repo, {path: project_toml("x-ours", "Ours")})
    theirs = world.commit_upstream({path: project_toml("x-theirs", "Theirs")})
    result = reconcile(repo, str(world.origin), "published", clock)
    assert result.outcome is Outcome.CONFLICT_ESCAPED
    assert result.conflict_branch == "conflicts/2026-03-04T05-06-07Z" == conflict_branch_name(FIXED)
    assert world.clone_head() == theirs == result.new_commit
    assert git("--git-dir", str(world.origin), "rev-parse", result.conflict_branch) == mine
    assert world.origin_head() == theirs  # the remote's history is untouched
    heads = git("--git-dir", str(world.clone), "for-each-ref", "--format=%(refname)", "refs/heads").split()
    assert sorted(heads) == ["refs/heads/conflicts/2026-03-04T05-06-07Z", "refs/heads/published"]


def test_an_escape_whose_branch_moved_meanwhile_leaves_no_conflict_branch(
        world: World, repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    path = next(p for p in git("ls-files", cwd=world.work).split() if p.startswith("projects/"))
    mine = local_commit(repo, {path: project_toml("x-ours", "Ours")})
    world.commit_upstream({path: project_toml("x-theirs", "Theirs")})
    remote_tip = repo.fetch_branch(str(world.origin), "published")
    the_plan = reconcile_module.plan(repo, mine, remote_tip, clock)
    assert the_plan.outcome is Outcome.CONFLICT_ESCAPED
    cas_ref = repo.cas_ref  # someone outside moves published between the escape and the CAS:

    def moved_outside(ref: bytes, old: str | None, new: str | None, message: str = "") -> bool:
        return ref != b"refs/heads/published" and cas_ref(ref, old, new, message)

    monkeypatch.setattr(repo, "cas_ref", moved_outside)
    with pytest.raises(BranchMoved):
        reconcile_module.apply(repo, the_plan, "published", clock)
    heads = git("--git-dir", str(world.clone), "for-each-ref", "--format=%(refname)", "refs/heads").split()
    assert heads == ["refs/heads/published"] and world.clone_head() == mine


def test_two_escapes_in_one_second_get_unique_branches(world: World, repo: GitRepo) -> None:
    path = next(p for p in git("ls-files", cwd=world.work).split() if p.startswith("projects/"))
    names = []
    for i in range(2):
        local_commit(repo, {path: project_toml(f"x-ours-{i}", "Ours")}, when=1_750_000_000 + i)
        world.commit_upstream({path: project_toml(f"x-theirs-{i}", "Theirs")})
        names.append(reconcile(repo, str(world.origin), "published", clock).conflict_branch)
    assert names == ["conflicts/2026-03-04T05-06-07Z", "conflicts/2026-03-04T05-06-07Z-1"]


def test_fetch_failure_moves_nothing(world: World, repo: GitRepo, tmp_path: Path) -> None:
    before = world.clone_head()
    result = reconcile(repo, str(tmp_path / "missing.git"), "published", clock)
    assert result.outcome is Outcome.FETCH_FAILED
    assert world.clone_head() == before == result.new_commit


def test_credentials_never_appear_in_errors(world: World, repo: GitRepo) -> None:
    assert redact("https://user:hunter2@example.com/x.git") == "https://***@example.com/x.git"
    from hotreload.git.repo import TransportError
    with pytest.raises(TransportError) as err:
        repo.fetch_branch("http://user:hunter2@127.0.0.1:9/x.git", "published")
    assert "hunter2" not in str(err.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def daemon_world(tmp_path: Path) -> Iterator[tuple[World, str]]:
    world = make_world(tmp_path)
    git("--git-dir", str(world.origin), "config", "receive.denyNonFastForwards", "true")
    port = _free_port()
    proc = subprocess.Popen(
        ["git", "daemon", "--export-all", "--enable=receive-pack", "--reuseaddr",
         f"--base-path={tmp_path}", "--listen=127.0.0.1", f"--port={port}", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield world, f"git://127.0.0.1:{port}/origin.git"
    finally:
        proc.terminate()
        proc.wait(10)


def test_fast_forward_and_push_over_the_git_protocol(daemon_world: tuple[World, str]) -> None:
    world, url = daemon_world
    repo = GitRepo(str(world.clone))
    tip = world.commit_upstream({"projects/aa-net.toml": project_toml("aa-net", "Net")})
    assert reconcile(repo, url, "published", clock).outcome is Outcome.FAST_FORWARDED
    assert world.clone_head() == tip
    mine = local_commit(repo, {"projects/aa-mine.toml": project_toml("aa-mine", "Mine")})
    result = reconcile(repo, url, "published", clock)
    assert result.outcome is Outcome.PUSHED_AHEAD and result.push_error is None
    assert world.origin_head() == mine
    repo.close()


def test_a_network_fetch_unpacks_a_small_pack_and_keeps_a_big_one(daemon_world: tuple[World, str]) -> None:
    """Decision 65: fewer than 100 objects come in loose (git's fetch.unpackLimit), as
    git stores them (fsck), a bigger fetch stays one pack."""
    world, url = daemon_world
    repo = GitRepo(str(world.clone))
    packs = set((world.clone / "objects" / "pack").glob("*.pack"))
    tip = world.commit_upstream({"projects/aa-net.toml": project_toml("aa-net", "Net")})
    assert reconcile(repo, url, "published", clock).outcome is Outcome.FAST_FORWARDED
    assert set((world.clone / "objects" / "pack").glob("*.pack")) == packs
    assert (world.clone / "objects" / tip[:2] / tip[2:]).is_file()
    git("--git-dir", str(world.clone), "fsck", "--strict", "--no-progress")
    many = {f"projects/bulk-{n:03d}.toml": project_toml(f"bulk-{n:03d}", f"Bulk {n}") for n in range(120)}
    tip = world.commit_upstream(many)
    assert reconcile(repo, url, "published", clock).outcome is Outcome.FAST_FORWARDED
    assert len(set((world.clone / "objects" / "pack").glob("*.pack")) - packs) == 1
    assert not (world.clone / "objects" / tip[:2] / tip[2:]).exists()
    git("--git-dir", str(world.clone), "fsck", "--strict", "--no-progress")
    assert world.clone_head() == tip
    repo.close()


def test_a_push_over_the_network_lands_exactly_our_commit(daemon_world: tuple[World, str]) -> None:
    """A push over git:// sends the objects of the commits the remote lacks; git,
    receiving them, stores exactly our commit (fsck)."""
    world, url = daemon_world
    repo = GitRepo(str(world.clone))
    parent = repo.branch_commit("published")
    assert parent is not None
    mine = local_commit(repo, {"projects/aa-mine.toml": project_toml("aa-mine", "Mine"),
                               "people/zz-new.toml": 'slug = "zz-new"\nfullName = "New Person"\n'})
    assert reconcile(repo, url, "published", clock).outcome is Outcome.PUSHED_AHEAD
    assert world.origin_head() == mine
    git("--git-dir", str(world.origin), "fsck", "--strict", "--no-progress")
    assert git("--git-dir", str(world.origin), "diff-tree", "-r", "--name-only", parent, mine).split() == [
        "people/zz-new.toml", "projects/aa-mine.toml"]
    repo.close()


def test_a_push_to_a_server_that_says_no_thin_lands(
        daemon_world: tuple[World, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A server advertising ``no-thin`` cannot complete a thin pack: a push of two
    commits to it lands whole (fsck)."""
    world, url = daemon_world
    real_read = dulwich.client.read_pkt_refs_v1

    def advertising_no_thin(*args, **kwargs):  # type: ignore[no-untyped-def]
        refs, capabilities = real_read(*args, **kwargs)
        return refs, {*capabilities, b"no-thin"}

    monkeypatch.setattr(dulwich.client, "read_pkt_refs_v1", advertising_no_thin)
    repo = GitRepo(str(world.clone))
    local_commit(repo, {"projects/aa-one.toml": project_toml("aa-one", "One")})
    mine = local_commit(repo, {"projects/aa-two.toml": project_toml("aa-two", "Two")}, when=1_750_000_100)
    assert reconcile(repo, url, "published", clock).outcome is Outcome.PUSHED_AHEAD
    assert world.origin_head() == mine
    git("--git-dir", str(world.origin), "fsck", "--strict", "--no-progress")
    repo.close()


def test_fetch_copies_everything_when_a_tree_repeats(world: World, repo: GitRepo) -> None:
    """Found by the stateful model: add X, add Y, delete Y makes the tip's tree
    equal to an older commit's tree; the change-sized fetch once missed X's blob."""
    from hotreload.data.snapshot import build_full

    world.commit_upstream({"projects/aa-x.toml": project_toml("aa-x", "X")})
    world.commit_upstream({"projects/aa-y.toml": project_toml("aa-y", "Y")})
    tip = world.commit_upstream({"projects/aa-y.toml": None})
    assert reconcile(repo, str(world.origin), "published", clock).outcome is Outcome.FAST_FORWARDED
    git("--git-dir", str(world.clone), "fsck", "--no-progress", "--connectivity-only")
    snap = build_full(repo, tip)
    assert snap.project_by_slug("aa-x") is not None and snap.project_by_slug("aa-y") is None


def test_a_fetch_killed_midway_never_leaves_an_incomplete_repository(tmp_path: Path) -> None:
    """Objects are written dependents-last, so whatever prefix of a copy reached
    the disk, the next fetch completes it (the SIGKILL test found the opposite)."""
    from hotreload.data.snapshot import build_full
    from hotreload.git import transport as repo_module

    (tmp_path / "w").mkdir()
    (tmp_path / "probe").mkdir()
    world = make_world(tmp_path / "w")
    world.commit_upstream({"projects/aa-1.toml": project_toml("aa-1", "One")})
    world.commit_upstream({"people/aa-p.toml": project_toml("aa-p", "P").replace("title", "fullName")})
    tip = world.commit_upstream({"projects/aa-1.toml": None, "projects/aa-2.toml": project_toml("aa-2", "Two")})
    real = repo_module.add_raw_objects
    n_objects = 0

    def count(store, objects):  # type: ignore[no-untyped-def]
        nonlocal n_objects
        n_objects = len(objects)

    probe = make_world(tmp_path / "probe")
    repo_module.add_raw_objects = count
    try:
        GitRepo(str(world.clone)).fetch_branch(str(world.origin), "published")
    finally:
        repo_module.add_raw_objects = real
    assert n_objects > 5
    for k in range(n_objects):
        clone = tmp_path / f"clone-{k}.git"
        # the same corpus as the world's origin before the three commits
        git("clone", "-q", "--bare", str(probe.origin), str(clone))

        def crash(store, objects, k=k):  # type: ignore[no-untyped-def]
            real(store, objects[:k])
            raise OSError("killed")

        target = GitRepo(str(clone))
        repo_module.add_raw_objects = crash
        try:
            with pytest.raises(Exception, match="killed"):
                target.fetch_branch(str(world.origin), "published")
        finally:
            repo_module.add_raw_objects = real
        assert target.fetch_branch(str(world.origin), "published") == tip
        git("--git-dir", str(clone), "fsck", "--no-progress", "--connectivity-only", tip)
        assert build_full(target, tip).project_by_slug("aa-2") is not None
        target.close()


def test_file_url_remotes_work_like_paths(world: World, repo: GitRepo) -> None:
    url = world.origin.resolve().as_uri()  # file:///...
    tip = world.commit_upstream({"projects/aa-file.toml": project_toml("aa-file", "File")})
    assert reconcile(repo, url, "published", clock).outcome is Outcome.FAST_FORWARDED
    assert world.clone_head() == tip
    mine = local_commit(repo, {"projects/aa-mine.toml": project_toml("aa-mine", "Mine")})
    assert reconcile(repo, url, "published", clock).outcome is Outcome.PUSHED_AHEAD
    assert world.origin_head() == mine


def test_the_state_machine_goes_through_the_gitrepo_facade() -> None:
    """reconcile.py uses GitRepo's verbs only: no dulwich import, no reach into a
    repository's dulwich objects, object store or refs."""
    tree = ast.parse(Path(reconcile_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name and name.startswith(("dulwich", "hotreload.git.objects"))}
    reached = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not reached & {"repo", "store", "object_store", "refs"}


@pytest.mark.parametrize("over", ["path", "git"])
def test_a_push_that_expects_the_remote_elsewhere_is_refused(over: str, daemon_world: tuple[World, str]) -> None:
    """A compare-and-swap push: the remote was rewound after we last saw it, so our commit
    (which holds what the rewind removed) is refused, though it would fast-forward."""
    world, url = daemon_world
    remote = str(world.origin) if over == "path" else url
    repo = GitRepo(str(world.clone))
    before = world.origin_head()
    removed = world.commit_upstream({"projects/aa-removed.toml": project_toml("aa-removed", "Removed")})
    assert reconcile(repo, remote, "published", clock).outcome is Outcome.FAST_FORWARDED
    mine = local_commit(repo, {"projects/aa-mine.toml": project_toml("aa-mine", "Mine")})
    git("--git-dir", str(world.origin), "update-ref", "refs/heads/published", before)  # the rewind
    with pytest.raises(PushRejected, match="no longer at"):
        repo.push_ref(remote, mine, b"refs/heads/published", expect=removed)
    assert world.origin_head() == before
    repo.push_ref(remote, mine, b"refs/heads/published", expect=before)  # where it is: a fast-forward
    assert world.origin_head() == mine
    repo.close()
