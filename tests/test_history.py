"""Ancestry questions (hotreload.git.history) against git itself, and their cost.

The oracle is the git binary (`merge-base --is-ancestor`, `rev-list A..B`,
`merge-base --all`), never our own walk. Histories are random DAGs with merges
and with commit dates that go backwards (clocks on contributors' laptops), with
no commit-graph file, a stale one, or a complete one.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from dulwich.objects import Commit, Tree
from dulwich.repo import Repo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotreload.git.repo import GitRepo, Signature


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def add_commit(repo: Repo, tree: bytes, parents: list[bytes], when: int, message: str) -> bytes:
    commit = Commit()
    commit.tree, commit.parents = tree, parents
    commit.author = commit.committer = b"T <t@example.org>"
    commit.author_time = commit.commit_time = when
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = message.encode()
    repo.object_store.add_object(commit)
    return commit.id


def empty_repo(path: Path) -> tuple[Repo, bytes]:
    repo = Repo.init_bare(str(path), mkdir=True)
    tree = Tree()
    repo.object_store.add_object(tree)
    return repo, tree.id


def make_dag(path: Path, n: int, seed: int, merge_rate: float = 0.3) -> list[str]:
    """``n`` commits; each has 1 parent (sometimes 2) among the earlier ones, and a
    date drawn so that about a third of the commits are dated before a parent."""
    rng = random.Random(seed)
    repo, tree = empty_repo(path)
    ids: list[bytes] = []
    for i in range(n):
        parents: list[bytes] = []
        if ids:
            parents = [rng.choice(ids[max(0, len(ids) - 6):])]
            if rng.random() < merge_rate and len(ids) > 1:
                other = rng.choice(ids)
                if other not in parents:
                    parents.append(other)
        when = 1_700_000_000 + i * 100 + rng.randint(-1000, 300)
        ids.append(add_commit(repo, tree, parents, when, f"c{i}\n"))
    for n_ref, sha in enumerate(ids[-3:]):
        repo.refs[f"refs/heads/b{n_ref}".encode()] = sha
    repo.close()
    return [sha.decode() for sha in ids]


def write_graph(path: Path, tips: list[str]) -> None:
    """A commit-graph of everything reachable from ``tips``, written by git itself."""
    subprocess.run(["git", "--git-dir", str(path), "commit-graph", "write", "--stdin-commits"],
                   input="\n".join(tips) + "\n", text=True, check=True, capture_output=True)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6), n=st.integers(2, 40), graph=st.sampled_from(["none", "stale", "full"]))
def test_compare_and_is_ancestor_agree_with_git(tmp_path_factory, seed: int, n: int, graph: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("dag") / "d.git"
    ids = make_dag(path, n, seed)
    if graph == "stale":
        write_graph(path, [ids[len(ids) // 2]])
    elif graph == "full":
        write_graph(path, ids[-3:])
    repo = GitRepo(str(path))
    try:
        rng = random.Random(seed)
        for _ in range(6):
            a, b = rng.choice(ids), rng.choice(ids)
            truth = subprocess.run(["git", "--git-dir", str(path), "merge-base", "--is-ancestor", a, b]).returncode == 0
            assert repo.is_ancestor(a, b) == truth, (a, b)
            diff = repo.compare(a, b)
            assert set(diff.left_only) == set(git(path, "rev-list", f"{b}..{a}").split())
            assert set(diff.right_only) == set(git(path, "rev-list", f"{a}..{b}").split())
            assert diff.left_is_ancestor == truth
            assert set(diff.merge_bases) == set(git(path, "merge-base", "--all", a, b).split())
            # oldest first: every commit comes after all of its parents that are listed
            for side in (diff.left_only, diff.right_only):
                position = {sha: k for k, sha in enumerate(side)}
                for sha in side:
                    for parent in repo.commit(sha).parents:
                        assert position.get(parent.decode(), -1) < position[sha]
    finally:
        repo.close()


def test_a_fast_forward_across_a_commit_dated_in_the_past_is_a_fast_forward(tmp_path: Path) -> None:
    """dulwich.graph.can_fast_forward prunes by date and says no here; we walk by
    generation number, so a contributor's wrong clock cannot make a rebase."""
    path = tmp_path / "skew.git"
    repo, tree = empty_repo(path)
    ids: list[bytes] = []
    for when in (2000, 500, 3000):  # the middle commit's clock was wrong
        ids.append(add_commit(repo, tree, ids[-1:], when, "x\n"))
    repo.close()
    ours = GitRepo(str(path))
    try:
        assert ours.is_ancestor(ids[0].decode(), ids[2].decode())
        assert ours.compare(ids[0].decode(), ids[2].decode()).left_is_ancestor
    finally:
        ours.close()


def _linear(path: Path, n: int) -> list[str]:
    repo, tree = empty_repo(path)
    ids: list[bytes] = []
    for i in range(n):
        ids.append(add_commit(repo, tree, ids[-1:], 1_700_000_000 + i, f"c{i}\n"))
    repo.refs[b"refs/heads/published"] = ids[-1]
    repo.close()
    return [sha.decode() for sha in ids]


def test_questions_cost_the_change_not_the_history(tmp_path: Path) -> None:
    """On 3,000 commits with a commit-graph covering all but the newest: a
    one-commit fast-forward, a one-and-one divergence and a pre-check of an old
    commit each touch a handful of commits, and read none beyond the new ones."""
    path = tmp_path / "long.git"
    ids = _linear(path, 3000)
    write_graph(path, [ids[-1]])
    repo = GitRepo(str(path))
    try:
        history = repo.history
        assert history.graph_size == 3000
        # two new commits on top, not in the graph: one local, one remote
        tree = repo.tree_of(ids[-1])
        local = repo.write_commit(tree, [ids[-1]], "local\n", Signature(b"L <l@x>", 1_800_000_000))
        remote = repo.write_commit(tree, [ids[-1]], "remote\n", Signature(b"R <r@x>", 1_800_000_001))
        before_read, before_visited = history.commits_read, history.nodes_visited
        diff = repo.compare(local, remote)
        assert diff.left_only == (local,) and diff.right_only == (remote,) and diff.merge_bases == (ids[-1],)
        assert repo.is_ancestor(ids[-1], remote)
        assert not repo.is_ancestor(local, remote)
        assert history.commits_read - before_read == 2  # only the two new commits were parsed
        assert history.nodes_visited - before_visited <= 8
        # an old commit costs the commits between it and the tip, not the whole history
        before_visited = history.nodes_visited
        assert repo.is_ancestor(ids[-50], remote)
        assert history.nodes_visited - before_visited <= 55
    finally:
        repo.close()


def test_without_a_commit_graph_the_first_question_pays_once(tmp_path: Path) -> None:
    """No commit-graph file: the first question computes generation numbers down
    to the root (slower, still right); later questions reuse them."""
    path = tmp_path / "nograph.git"
    ids = _linear(path, 2000)
    repo = GitRepo(str(path))
    try:
        history = repo.history
        assert history.graph_size == 0
        assert repo.is_ancestor(ids[-2], ids[-1])
        assert history.commits_read == 2000
        before = history.nodes_visited
        assert len(repo.compare(ids[-3], ids[-1]).right_only) == 2
        assert history.commits_read == 2000 and history.nodes_visited - before <= 6
    finally:
        repo.close()


def test_a_commit_another_thread_settles_meanwhile_is_answered(tmp_path: Path) -> None:
    """Two reloads asking about the same new commit: the second's lookup misses, then the
    first settles it before the second's walk starts, which finds it known. (A burst of
    webhooks answered 500 with a KeyError here.)"""
    path = tmp_path / "race.git"
    ids = _linear(path, 5)
    repo = GitRepo(str(path))
    try:
        history = repo.history
        real_lookup, misses = history._lookup, iter([True])

        def lookup_after_the_other_thread(sha: bytes) -> object:
            if next(misses, False):  # the second thread's first look: not known yet ...
                repo.is_ancestor(ids[0], ids[-1])  # ... and the first thread settles it now
                return None
            return real_lookup(sha)

        history._lookup = lookup_after_the_other_thread  # type: ignore[method-assign]
        assert history.node(repo.store, ids[-1].encode())[0] == 5
    finally:
        repo.close()


def test_an_unreadable_commit_graph_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bad.git"
    ids = _linear(path, 20)
    (path / "objects" / "info").mkdir(exist_ok=True)
    (path / "objects" / "info" / "commit-graph").write_bytes(b"CGPH garbage")
    repo = GitRepo(str(path))
    try:
        assert repo.history.graph_size == 0
        assert repo.is_ancestor(ids[0], ids[-1]) and not repo.is_ancestor(ids[-1], ids[0])
    finally:
        repo.close()


def test_a_prefix_names_a_commit_only_when_it_is_unique(tmp_path: Path) -> None:
    path = tmp_path / "prefix.git"
    ids = _linear(path, 300)
    repo = GitRepo(str(path))
    try:
        by_prefix: dict[str, list[str]] = {}
        for sha in ids:
            by_prefix.setdefault(sha[:2], []).append(sha)
        shared = next(p for p, shas in by_prefix.items() if len(shas) > 1)
        assert repo.resolve_commit_prefix(shared) is None  # ambiguous
        unique = next(sha for sha in ids if sum(s.startswith(sha[:6]) for s in ids) == 1)
        assert repo.resolve_commit_prefix(unique[:6]) == unique
        assert repo.resolve_commit_prefix(unique.upper()) == unique
    finally:
        repo.close()
