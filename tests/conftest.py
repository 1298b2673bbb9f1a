"""Shared fixtures: real repositories made with the git CLI and dulwich, a booted
runtime with Falcon's test client, and real ``hotreload serve`` processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from falcon import testing

from hotreload.api.app import create_app
from hotreload.config import Settings
from hotreload.service.runtime import Runtime, boot
from simulator import corpus
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


def corpus_files(records: int, seed: int, mix: str = "flat") -> dict[str, bytes]:
    """The tree of a synthetic data repository (simulator/corpus.py): every sheet, valid records."""
    return corpus.files(corpus.make_records(records, seed), seed, mix)


def write_corpus(path: Path | str, files: dict[str, bytes]) -> str:
    """A new bare repository holding ``files`` as one commit on ``published``; its id."""
    return corpus.write(str(path), files, "published")


def make_world(root: Path, records: int = 60) -> World:
    origin, work, clone = root / "origin.git", root / "work", root / "clone.git"
    write_corpus(origin, corpus_files(records, seed=7))
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


# -- hand-made packs (what a hostile remote could send) ------------------------------------


def pack_of(*entries: bytes) -> bytes:
    """A version 2 pack of ``entries`` (each an entry's header and zlib stream), with its trailer."""
    body = b"PACK" + (2).to_bytes(4, "big") + len(entries).to_bytes(4, "big") + b"".join(entries)
    return body + hashlib.sha1(body).digest()


def entry(type_num: int, declared: int, data: bytes, base: bytes = b"") -> bytes:
    """One pack entry: git's type-and-size varint (``declared`` need not be the truth), a
    REF_DELTA's base id, then ``data`` deflated."""
    byte, size, header = (type_num << 4) | (declared & 0x0F), declared >> 4, bytearray()
    while size:
        header.append(byte | 0x80)
        byte, size = size & 0x7F, size >> 7
    header.append(byte)
    return bytes(header) + base + zlib.compress(data)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def delta_bomb(base_size: int, result: int = 1 << 30) -> bytes:
    """A delta that really makes ``result`` bytes out of a base of ``base_size`` (copies of
    the whole base, then the rest): ~6 MB of instructions that deflate to a few KB."""
    def copy(n: int) -> bytes:  # from offset 0, two size bytes
        return bytes([0x80 | 0x10 | 0x20, n & 0xFF, n >> 8])
    whole, rest = divmod(result, base_size)
    return varint(base_size) + varint(result) + copy(base_size) * whole + (copy(rest) if rest else b"")
