"""Shared fixtures: real repositories made with the git CLI and dulwich, a booted
runtime with Falcon's test client, and real ``hotreload serve`` processes."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.config import Settings
from hotreload.corpus import make_corpus, write_corpus
from hotreload.service.runtime import Runtime, boot
from simulator.server import ServerProcess

SECRET = "s" * 40
WRITE_TOKEN = "w" * 32
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Outside Author", "GIT_AUTHOR_EMAIL": "outside@example.org",
    "GIT_COMMITTER_NAME": "Outside Author", "GIT_COMMITTER_EMAIL": "outside@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", "-c", "init.defaultBranch=published", *args], cwd=cwd, check=True,
        capture_output=True, text=True, env={**os.environ, **GIT_ENV, **(env or {})},
    )
    return result.stdout.strip()


def project_toml(slug: str, title: str, **extra: str) -> str:
    fields = {"id": str(uuid.uuid4()), "slug": slug, "title": title,
              "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00Z", **extra}
    return "".join(f'{k} = "{v}"\n' for k, v in fields.items())


@dataclass
class World:
    """An origin (bare), an outside author's work tree, and the service's bare clone."""

    root: Path
    origin: Path
    work: Path
    clone: Path

    def commit_upstream(self, files: dict[str, str | None], message: str = "upstream change",
                        push: bool = True) -> str:
        git("pull", "-q", "--rebase", "origin", "published", cwd=self.work)
        for rel, content in files.items():
            path = self.work / rel
            if content is None:
                git("rm", "-q", rel, cwd=self.work)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                git("add", rel, cwd=self.work)
        git("commit", "-q", "-m", message, cwd=self.work)
        if push:
            git("push", "-q", "origin", "HEAD:published", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def origin_head(self) -> str:
        return git("--git-dir", str(self.origin), "rev-parse", "published")

    def clone_head(self) -> str:
        return git("--git-dir", str(self.clone), "rev-parse", "published")

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = dict(
            repo_path=str(self.clone), remote=str(self.origin), branch="published",
            reload_secret=SECRET, write_token=WRITE_TOKEN, push_backoff_seconds=0.05,
            push_backoff_cap_seconds=0.2, poll_seconds=0.0)  # tests that poll say so
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def env(self, **overrides: str) -> dict[str, str]:
        env = {"CFP_DATA_REPO_PATH": str(self.clone), "CFP_DATA_REMOTE": str(self.origin),
               "CFP_DATA_BRANCH": "published", "CFP_DATA_RELOAD_SECRET": SECRET,
               "CFP_API_WRITE_TOKEN": WRITE_TOKEN, "CFP_DATA_PUSH_BACKOFF_SECONDS": "0.05",
               "CFP_DATA_PUSH_BACKOFF_CAP_SECONDS": "0.2", "CFP_DATA_POLL_SECONDS": "0"}
        env.update(overrides)
        return env


def make_world(root: Path, records: int = 60) -> World:
    origin, work, clone = root / "origin.git", root / "work", root / "clone.git"
    write_corpus(str(origin), make_corpus(records, seed=7))
    git("clone", "-q", str(origin), str(work))
    git("clone", "-q", "--bare", str(origin), str(clone))  # the narrow default refspec case
    return World(root, origin, work, clone)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def runtime(world: World) -> Iterator[Runtime]:
    rt = boot(world.settings())
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> testing.TestClient:
    return testing.TestClient(create_app(runtime))


@pytest.fixture
def server(world: World) -> Iterator[ServerProcess]:
    with ServerProcess(world.env()) as proc:
        yield proc


def bearer(token: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
