"""Benchmark fixtures: corpora of 1k, 5k and 50k records, made once by
``hotreload corpus`` and cached in ``.bench-cache/`` (outside git), and fresh
origin/clone pairs copied from them.

Sizes: ``make bench`` runs all three; ``make bench-quick`` (``pytest benchmarks
--quick``) the first two; the smoke run inside ``make test`` (``--benchmark-disable``) only 1k.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotreload.git.repo import clone_bare
from simulator import corpus

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-cache"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--quick", action="store_true",
                     help="a one-minute look: the 1k and 5k corpora only (also: BENCH_QUICK=1)")


def sizes(config: pytest.Config) -> list[int]:
    if config.getoption("benchmark_disable", False):
        return [1000]
    if os.environ.get("BENCH_RECORDS"):  # e.g. BENCH_RECORDS=500000: one size, on request
        return [int(n) for n in os.environ["BENCH_RECORDS"].split(",")]
    if config.getoption("quick", False) or os.environ.get("BENCH_QUICK"):
        return [1000, 5000]
    return [1000, 5000, 50000]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "records" in metafunc.fixturenames:
        metafunc.parametrize("records", sizes(metafunc.config), ids=lambda n: f"{n // 1000}k", scope="module")


@contextlib.contextmanager
def cached_lock() -> Iterator[None]:
    """Held while a cached corpus is made (safe against parallel workers)."""
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached_corpus(records: int, history: int = 0) -> Path:
    """``.bench-cache/corpus-v<V>-<N>.git`` (or ``...-h<C>.git``: then ``history``
    one-record commits), made once by ``hotreload corpus`` (safe against parallel workers);
    ``V`` is the corpus generator's version (simulator/corpus.py), so a changed generator
    never reuses old data."""
    CACHE.mkdir(exist_ok=True)
    name = f"corpus-v{corpus.VERSION}-{records}" + (f"-h{history}" if history else "")
    target = CACHE / f"{name}.git"
    with cached_lock():
        if not target.exists():
            tmp = Path(tempfile.mkdtemp(dir=CACHE)) / "c.git"
            extra = ["--history", str(history)] if history else []
            subprocess.run([sys.executable, "-m", "hotreload.cli", "corpus", "--records", str(records),
                            *extra, "--out", str(tmp)], check=True, capture_output=True)
            os.rename(tmp, target)
            shutil.rmtree(tmp.parent, ignore_errors=True)
    return target


@dataclass
class Pair:
    root: Path
    origin: Path
    clone: Path
    records: int


@pytest.fixture(scope="module")
def pair(records: int) -> Iterator[Pair]:
    """A fresh origin (a copy of the cached corpus) and the service's bare clone."""
    root = Path(tempfile.mkdtemp(prefix=f"hotreload-bench-{records}-"))
    origin, clone = root / "origin.git", root / "clone.git"
    shutil.copytree(cached_corpus(records), origin)
    clone_bare(str(origin), str(clone), "published").close()
    yield Pair(root, origin, clone, records)
    shutil.rmtree(root, ignore_errors=True)
