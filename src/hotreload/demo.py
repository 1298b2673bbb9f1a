"""The embedded demo: a sample origin (bare) and a bare clone under one folder,
made on first run and reused after, plus ``--push-change`` to commit one new
project to the origin as an outside author would."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from hotreload.config import Settings
from hotreload.git.repo import clone_bare
from simulator import corpus
from simulator.git import Repo

BRANCH = "published"
OUTSIDE_AUTHOR = "Demo Maintainer <maintainer@example.org>"


@dataclass(frozen=True)
class Demo:
    origin: str
    clone: str
    secret: str
    write_token: str

    def settings(self) -> Settings:
        return Settings(repo_path=self.clone, remote=self.origin, branch=BRANCH,
                        reload_secret=self.secret, write_token=self.write_token)


def _read_or_make(path: str, make: str) -> str:
    if not os.path.exists(path):
        with open(path, "w") as fh:
            fh.write(make)
        os.chmod(path, 0o600)
    with open(path) as fh:
        return fh.read().strip()


def ensure(folder: str, records: int, progress: Callable[[int], None] | None = None) -> Demo:
    folder = os.path.abspath(folder)
    os.makedirs(folder, exist_ok=True)
    origin, clone = os.path.join(folder, "origin.git"), os.path.join(folder, "clone.git")
    if not os.path.exists(origin):
        made = corpus.make_records(records, seed=1)
        corpus.write(origin, corpus.files(made, seed=1, mix="flat", progress=progress), BRANCH)
    if not os.path.exists(clone):
        clone_bare(origin, clone, BRANCH)
    secret = _read_or_make(os.path.join(folder, "reload-secret"), secrets.token_urlsafe(36))
    token = _read_or_make(os.path.join(folder, "write-token"), secrets.token_urlsafe(24))
    return Demo(origin, clone, secret, token)


def push_change(demo: Demo) -> tuple[str, str]:
    """Commit one new project to the origin's branch. Returns (slug, commit)."""
    repo = Repo(demo.origin)
    parent = repo.branch_commit(BRANCH)
    assert parent is not None
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    slug = f"transit-demo-{now.strftime('%H%M%S')}-{secrets.token_hex(2)}"
    project = {"id": str(uuid.uuid4()), "slug": slug, "title": f"Transit Demo {now:%H:%M:%S}",
               "summary": "A project pushed by `hotreload demo --push-change`.", "stage": "prototyping",
               "createdAt": stamp, "updatedAt": stamp}
    tree = repo.write_tree(repo.commit(parent).tree, {f"projects/{slug}.toml": corpus.render(project, "writer")})
    commit = repo.commit_tree(tree, [parent], f"Add {slug}\n", OUTSIDE_AUTHOR, int(now.timestamp()))
    if not repo.set_ref(f"refs/heads/{BRANCH}", commit, parent):
        raise RuntimeError("the demo origin moved while committing; run --push-change again")
    return slug, commit
