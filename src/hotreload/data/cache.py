"""The snapshot cache: the built snapshot kept next to the clone (``hotreload-snapshot.cache``),
so a restart costs the change since it was written, not a full build.

Its format, when it is written and the checks a start makes before using it are in
specs/snapshot.md ("The snapshot cache"): anything wrong is one log line saying why and a
full build, never a wrong answer. A start derives the branch head's snapshot from it with
the incremental build a reload uses.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Mapping
from typing import IO, Any

import hotreload
from hotreload.data.facets import ProjectFacets
from hotreload.data.search import SearchIndex
from hotreload.data.snapshot import Snapshot, build_incremental
from hotreload.git.repo import GitRepo

log = logging.getLogger(__name__)

CACHE_FILE = "hotreload-snapshot.cache"
TEMPORARY = re.compile(r"\.hotreload-snapshot-[a-z0-9_]{8}\Z")
"""The names of :meth:`SnapshotCache.save`'s temporary files (``mkstemp``'s eight characters)."""
FREE_RESERVE = 64 * 2**20
"""Free bytes a save leaves on the volume, for the clone's own writes."""
MAGIC = b"hotreload-snapshot 3\n"
MAX_HEADER = 4096


@functools.cache
def code_stamp() -> str:
    """The stamp of the code running: taken once, so a deploy that replaces the
    files under a running process does not stamp its cache as theirs."""
    return stamp_of(os.path.dirname(hotreload.__file__), installed_versions())


def stamp_of(package: str, versions: list[str]) -> str:
    """A hash of every ``.py`` file under ``package`` (path and bytes), the library
    ``versions``, Python's and SQLite's versions: all of it, decision 80 says why."""
    digest = hashlib.sha256()
    for path in sorted(glob.glob("**/*.py", root_dir=package, recursive=True)):
        with open(os.path.join(package, path), "rb") as source:
            digest.update(f"{path} ".encode() + hashlib.sha256(source.read()).digest())
    digest.update("\n".join([*versions, sys.version, sqlite3.sqlite_version]).encode())
    return digest.hexdigest()


def installed_versions() -> list[str]:
    """``name version`` of every installed distribution (tomli, msgspec, numpy, ...), sorted."""
    return sorted({f"{dist.name} {dist.version}" for dist in importlib.metadata.distributions()})


class SnapshotCache:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, CACHE_FILE)
        self.holds: str | None = None
        """The commit this process last read the cache at, or wrote it for: the file is known
        good for it (a file naming a commit may still be damaged or from other code)."""

    def load(self, repo: GitRepo, head: str) -> Snapshot | None:
        """The snapshot of ``head``, derived from the cached one (even when that is of
        ``head``: this process has served none of it yet, see ``changed_in``), or None
        and one log line saying why: no cache, a check fails, or the change since does
        not build (the full build then finds out what to serve)."""
        started = time.perf_counter()
        try:
            with open(self.path, "rb") as handle:
                header = _read_header(handle)
                if header.get("stamp") != code_stamp():  # before reading hundreds of MB for nothing
                    log.info("snapshot cache %s was written by other code; building in full", self.path)
                    return None
                payload, image = _read_body(handle, header)
        except FileNotFoundError:
            log.info("no snapshot cache at %s; building in full", self.path)
            return None
        except Exception as exc:  # whatever is wrong with the file, it only costs a full build
            log.warning("snapshot cache %s unreadable (%s); building in full", self.path, exc)
            return None
        commit, tree = str(header.get("commit")), str(header.get("tree"))
        try:
            actual = repo.tree_of(commit)
        except Exception:  # not in the repository (a force-push and a gc), or not a commit
            log.warning("snapshot cache %s names commit %s, which this repository does not have; "
                        "building in full", self.path, commit[:12])
            return None
        if actual != tree:
            log.warning("snapshot cache %s says commit %s has tree %s, but it has %s; building in full",
                        self.path, commit[:12], tree[:12], actual[:12])
            return None
        try:
            cached = _decode(commit, tree, payload, image)
        except Exception as exc:  # a stamp collision or a bug: never worse than a full build
            log.warning("snapshot cache %s could not be decoded (%s); building in full", self.path, exc)
            return None
        read_ms, started = (time.perf_counter() - started) * 1000, time.perf_counter()
        try:
            snap = build_incremental(repo, cached, head)
        except Exception as exc:
            log.warning("snapshot cache at %s, but the change to %s does not build (%s); building in full",
                        commit[:12], head[:12], exc)
            return None
        derive_ms = (time.perf_counter() - started) * 1000
        moved = f", then its {sum(snap.changes.as_dict().values())} changed records up to {head[:12]} " \
            f"in {derive_ms:.0f} ms" if commit != head else ""
        log.info("loaded the snapshot of %s from %s in %.0f ms%s", commit[:12], self.path, read_ms, moved,
                 extra={"commit": head, "cachedCommit": commit, "records": snap.record_counts(),
                        "readMs": round(read_ms, 1), "deriveMs": round(derive_ms, 1), "from": "cache"})
        self.holds = commit
        return snap

    def save(self, snap: Snapshot, when: str) -> None:
        """Write ``snap`` as the cache (atomically), and log it; a warning instead when
        the volume has no room for it."""
        started = time.perf_counter()
        image = snap.search.image()
        payload = _payload(snap)
        digest = hashlib.sha256(payload)
        digest.update(image)
        header = json.dumps({"stamp": code_stamp(), "commit": snap.commit, "tree": snap.tree,
                             "sha256": digest.hexdigest(), "payload": len(payload),
                             "search": len(image)}).encode()
        directory = os.path.dirname(self.path) or "."
        size, free = len(header) + len(payload) + len(image), shutil.disk_usage(directory).free
        if free < size + FREE_RESERVE:
            log.warning("snapshot cache %s not written: it takes %.0f MB and the volume has %.0f MB free "
                        "(%.0f MB are kept for the clone); a restart builds more until there is room",
                        self.path, size / 2**20, free / 2**20, FREE_RESERVE / 2**20,
                        extra={"bytes": size, "freeBytes": free})
            return
        fd, tmp = tempfile.mkstemp(prefix=".hotreload-snapshot-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + header + b"\n")
                out.write(payload)
                out.write(image)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self.holds = snap.commit
        took = (time.perf_counter() - started) * 1000
        log.info("wrote the snapshot cache at %s (%s) in %.0f ms", snap.commit[:12], when, took,
                 extra={"commit": snap.commit, "writeMs": round(took, 1), "when": when})

    def names(self) -> str | None:
        """The commit the cache file's header names, when this code wrote it (the body
        unchecked), or None: for tests and a look from outside."""
        try:
            with open(self.path, "rb") as handle:
                header = _read_header(handle)
        except Exception:  # no usable header
            return None
        return str(header.get("commit")) if header.get("stamp") == code_stamp() else None


def remove_leftovers(directory: str) -> None:
    """Remove the temporary files of saves that were killed before their rename
    (SIGKILL skips every cleanup). Only with the clone's instance lock held."""
    for name in os.listdir(directory):
        if TEMPORARY.match(name):
            os.unlink(os.path.join(directory, name))
            log.warning("removed %s, left in %s by a snapshot cache save that was killed", name, directory)


def _payload(snap: Snapshot) -> bytes:
    # the facets go in built (decision 62); their rowids are the search image's, saved from the same snapshot
    return pickle.dumps((snap.sheets, snap.config_blobs, snap.tables, snap.indices, snap.facets),
                        protocol=pickle.HIGHEST_PROTOCOL)


def _read_header(handle: IO[bytes]) -> Mapping[str, Any]:
    if handle.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a snapshot cache of this format")
    line = handle.readline(MAX_HEADER)
    if not line.endswith(b"\n"):
        raise ValueError("header cut short")
    header = json.loads(line)
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header


def _read_body(handle: IO[bytes], header: Mapping[str, Any]) -> tuple[bytes, bytes]:
    payload_size, image_size = int(header.get("payload", -1)), int(header.get("search", -1))
    if payload_size < 0 or image_size < 0:
        raise ValueError("header has no sizes")
    if payload_size + image_size != os.fstat(handle.fileno()).st_size - handle.tell():  # before reading
        raise ValueError("file is not the size its header says (cut short or appended to)")
    payload, image = handle.read(payload_size), handle.read(image_size)
    digest = hashlib.sha256(payload)
    digest.update(image)
    if digest.hexdigest() != header.get("sha256"):
        raise ValueError("checksum does not match (the file is damaged)")
    return payload, image


def _decode(commit: str, tree: str, payload: bytes, image: bytes) -> Snapshot:
    sheets, config_blobs, tables, indices, facets = pickle.loads(payload)  # see the docstring
    if not isinstance(facets, ProjectFacets):
        raise ValueError("the payload's facets are not project facets")
    return Snapshot(commit=commit, tree=tree, sheets=sheets, config_blobs=config_blobs, tables=tables,
                    indices=indices, search=SearchIndex.from_image(image), facets=facets)
