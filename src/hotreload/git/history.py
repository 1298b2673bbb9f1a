"""Ancestry questions over commits: is one an ancestor of another, which commits
lie between two, how many."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from dulwich.objects import Commit


def walk(store: Any, start: str, stop: Callable[[str], bool] | None = None) -> Iterator[str]:
    """Commits reachable from ``start`` (breadth first); ``stop`` prunes a commit
    and everything behind it."""
    seen = {start}
    queue = deque([start])
    while queue:
        sha = queue.popleft()
        if stop is not None and stop(sha):
            continue
        yield sha
        commit = store[sha.encode()]
        assert isinstance(commit, Commit)
        for parent in commit.parents:
            p = parent.decode()
            if p not in seen:
                seen.add(p)
                queue.append(p)


def is_ancestor(store: Any, ancestor: str, descendant: str) -> bool:
    """True if ``ancestor`` (a full sha or a unique-enough prefix) is reachable
    from ``descendant``, including equality."""
    ancestor = ancestor.lower()
    return any(sha.startswith(ancestor) for sha in walk(store, descendant))


def commits_between(store: Any, base: str, tip: str) -> list[str]:
    """Commits reachable from ``tip`` but not from ``base``, oldest first."""
    behind_base = set(walk(store, base))
    ahead = list(walk(store, tip, stop=behind_base.__contains__))
    return ahead[::-1]


def count_between(store: Any, base: str | None, tip: str, limit: int = 10_000) -> int:
    if base is None:
        return sum(1 for _ in zip(range(limit), walk(store, tip), strict=False))
    if base == tip:
        return 0
    return len(commits_between(store, base, tip))
