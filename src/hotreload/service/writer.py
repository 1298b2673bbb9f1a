"""The write use case: one commit per successful request, and a snapshot that
includes it, swapped in the same critical section as the ref move.

Like a reload, a write does its work outside the data lock against the snapshot
it observed (validate, write blob/tree/commit objects, derive the new snapshot),
then under the lock checks that the observed snapshot is still the served one,
moves the branch (CAS) and swaps (:mod:`~hotreload.service.swap`). If a reload or
another write got there first it starts again from the new snapshot, so whichever
takes the lock second sees the other's commit: nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import tomlkit

from hotreload.data.records import (
    Person,
    Project,
    Record,
    RecordError,
    SlugHistory,
    describe_validation_error,
    format_timestamp,
    parse_timestamp,
    to_toml,
)
from hotreload.data.sheets import tree_path_problem
from hotreload.data.snapshot import Snapshot, SnapshotHolder
from hotreload.git.push import PushDaemon
from hotreload.git.repo import API_IDENTITY, BranchMoved, GitRepo, Signature, branch_ref
from hotreload.service.lock import DataLock
from hotreload.service.swap import build, swap

log = logging.getLogger(__name__)


class WriteError(Exception):
    """A rejected write. ``kind`` maps to the HTTP status; nothing was committed."""

    def __init__(self, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # bad_request | not_found | conflict | invalid | unavailable
        self.field = field


@dataclass(frozen=True)
class WritableSheet:
    sheet: str
    subject_type: str  # project | person
    record_type: type[Record]
    required: tuple[str, ...]
    editable: tuple[str, ...]


SHEETS: dict[str, WritableSheet] = {
    "projects": WritableSheet("projects", "project", Project, ("slug", "title"),
                              ("slug", "title", "summary", "overview", "stage")),
    "people": WritableSheet("people", "person", Person, ("slug", "fullName"),
                            ("slug", "fullName", "bio")),
}


Change = tuple[Record | None, Record, Mapping[str, Any]]
"""(the record before, or None for a create; the validated record after; the
fields the request changes, as stored TOML keys: None removes one)."""


def edit_toml(stored: bytes, edits: Mapping[str, Any]) -> bytes:
    """The stored record with only ``edits`` applied. Every other key, known to
    this service or not, keeps its value, and the file its layout and comments
    (``tomlkit`` edits the document in place), so a field a newer app added is
    never lost by a PATCH or DELETE from this one."""
    doc = tomlkit.parse(stored.decode("utf-8"))
    for key, value in edits.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return tomlkit.dumps(doc).encode("utf-8")


@dataclass(frozen=True)
class WriteResult:
    record: Record
    commit: str
    lock_held_ms: float


@dataclass(frozen=True)
class _Written:
    """A write prepared outside the lock: its record, and its commit on ``parent``."""

    record: Record
    parent: str
    commit: str


def _now() -> str:
    return format_timestamp(dt.datetime.now(dt.UTC))


@dataclass(eq=False)
class Writer:
    repo: GitRepo
    holder: SnapshotHolder
    lock: DataLock
    branch: str
    push_daemon: PushDaemon | None = None
    now: Callable[[], str] = _now

    # -- the three verbs ------------------------------------------------------------

    def create(self, sheet: str, body: Mapping[str, Any], request_path: str) -> WriteResult:
        spec = SHEETS[sheet]
        _check_keys(spec, body, create=True)

        def change(base: Snapshot) -> Change:
            if _find(base, spec, body["slug"]) is not None:
                raise WriteError("conflict", f"slug: {body['slug']!r} is already taken", "slug")
            ts = self.now()
            fields = {**body, "id": str(uuid.uuid4()), "createdAt": ts, "updatedAt": ts}
            return None, _validate(spec, fields), {}

        return self._commit(spec, "POST", request_path, "create", change)

    def update(self, sheet: str, slug: str, body: Mapping[str, Any], request_path: str) -> WriteResult:
        spec = SHEETS[sheet]
        _check_keys(spec, body, create=False)

        def change(base: Snapshot) -> Change:
            old = _live(base, spec, slug)
            new_slug = body.get("slug", slug)
            if new_slug != slug and _find(base, spec, new_slug) is not None:
                raise WriteError("conflict", f"slug: {new_slug!r} is already taken", "slug")
            edits = {**body, "updatedAt": self.now()}
            return old, _validate(spec, {**msgspec.to_builtins(old), **edits}), edits

        return self._commit(spec, "PATCH", request_path, "update", change)

    def delete(self, sheet: str, slug: str, request_path: str) -> WriteResult:
        spec = SHEETS[sheet]

        def change(base: Snapshot) -> Change:
            old = _live(base, spec, slug)
            ts = self.now()
            edits = {"deletedAt": ts, "updatedAt": ts}
            return old, _validate(spec, {**msgspec.to_builtins(old), **edits}), edits

        return self._commit(spec, "DELETE", request_path, "soft-delete", change)

    # -- the commit -------------------------------------------------------------------

    def _commit(self, spec: WritableSheet, method: str, request_path: str, action: str,
                change: Callable[[Snapshot], Change]) -> WriteResult:
        if self.holder.degraded:
            raise WriteError("unavailable", f"writes are refused while the branch head does not build "
                             f"({self.holder.degraded})")
        try:
            swapped = swap(self.lock, self.holder, "write",
                           lambda base, warm: self._prepare(base, warm, spec, method, request_path, action, change),
                           lambda written: self._move(written, action))
        except BranchMoved:  # under the lock, after the optimistic attempts: not one of ours
            raise WriteError("conflict", "the data branch moved outside this service; "
                             "try the request again") from None
        commit = swapped.prepared.commit
        log.info("committed %s %s", method, request_path,
                 extra={"commit": commit, "action": f"{spec.subject_type}.{action}",
                        "lockHeldMs": round(swapped.lock_held_ms, 3)})
        if self.push_daemon is not None:
            self.push_daemon.notify()
        return WriteResult(swapped.prepared.record, commit, swapped.lock_held_ms)

    def _prepare(self, base: Snapshot, warm: bool, spec: WritableSheet, method: str, request_path: str,
                 action: str, change: Callable[[Snapshot], Change]) -> tuple[Snapshot, _Written]:
        """Validate, write the objects and derive the snapshot, against ``base``."""
        old, new, edits = change(base)
        new_path = _record_path(base, spec, new)
        changes: dict[str, bytes | None] = {}
        if old is None:
            changes[new_path] = to_toml(new)
        else:  # edit the stored file: keys this service does not know survive
            old_path = base.table(spec.sheet).path_by_id[old.id]
            if old_path != new_path:
                changes[old_path] = None
            stored = self.repo.read_file(base.tree, old_path)
            if stored is None:  # the table says it is there: a snapshot not of its own tree
                raise RuntimeError(f"{old_path} is not in the tree of {base.commit}")
            changes[new_path] = edit_toml(stored, edits)
            changes.update(_slug_history(base, spec, old, new, self.now()))
        tree = self.repo.write_tree_changes(base.tree, changes)
        signature = Signature(API_IDENTITY, int(dt.datetime.now(dt.UTC).timestamp()), 0)
        commit = self.repo.write_commit(tree, [base.commit], _message(method, request_path, action, spec, new),
                                        signature)
        try:
            return build(self.repo, base, commit, warm), _Written(new, base.commit, commit)
        except RecordError as exc:
            raise WriteError("invalid", str(exc)) from None

    def _move(self, written: _Written, action: str) -> None:
        if not self.repo.cas_ref(branch_ref(self.branch), written.parent, written.commit,
                                 message=f"hotreload: {action}"):
            raise BranchMoved(f"{self.branch} moved away from {written.parent[:12]}")


def _check_keys(spec: WritableSheet, body: Mapping[str, Any], create: bool) -> None:
    unknown = sorted(set(body) - set(spec.editable))
    if unknown:
        raise WriteError("bad_request", f"{unknown[0]}: unknown field (allowed: "
                         f"{', '.join(spec.editable)})", unknown[0])
    for name, value in body.items():  # before any lookup uses a value
        if value is not None and not isinstance(value, str):
            raise WriteError("invalid", f"{name}: expected a string, not {type(value).__name__}", name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise WriteError("invalid", f"{name}: is not valid Unicode text (it holds a lone "
                                 "surrogate, such as \\ud800)", name) from None
    if create:
        for name in spec.required:
            if name not in body:
                raise WriteError("invalid", f"{name}: required field is missing", name)
    elif not body:
        raise WriteError("bad_request", "body: give at least one field to change", "body")
    for name in spec.required:
        if name in body and body[name] is None:
            raise WriteError("invalid", f"{name}: must not be null", name)


def _validate(spec: WritableSheet, fields: Mapping[str, Any]) -> Record:
    try:
        return msgspec.convert(dict(fields), type=spec.record_type)
    except msgspec.ValidationError as exc:
        message = describe_validation_error(spec.record_type, exc)
        name = message.split(":", 1)[0] if ":" in message else None
        raise WriteError("invalid", message, name) from None


def _find(base: Snapshot, spec: WritableSheet, slug: str) -> Record | None:
    return base.project_by_slug(slug) if spec.sheet == "projects" else base.person_by_slug(slug)


def _live(base: Snapshot, spec: WritableSheet, slug: str) -> Record:
    record = _find(base, spec, slug)
    if record is None or getattr(record, "deleted_at", None) is not None:
        raise WriteError("not_found", f"no {spec.subject_type} with slug {slug!r}")
    return record


def _record_path(base: Snapshot, spec: WritableSheet, record: Record) -> str:
    sheet = next((s for s in base.sheets if s.name == spec.sheet), None)
    if sheet is None:
        raise WriteError("invalid", f"the data repository has no .gitsheets/{spec.sheet}.toml")
    path = sheet.record_path(msgspec.to_builtins(record))
    if path is None:
        raise WriteError("invalid", f"cannot place a {spec.subject_type} with the path template "
                         f"{sheet.path_template}")
    problem = tree_path_problem(path)
    if problem is None and path.count("/") != f"{sheet.root}/{sheet.path_template}".count("/"):
        problem = f"a field used in the path holds a '/' ({path!r})"
    if problem is not None:  # a free-text field in the template rendered '..', '/', ...
        raise WriteError("invalid", f"the record's path {sheet.root}/{sheet.path_template}.toml "
                         f"cannot be used: {problem}")
    return path


SLUG_REDIRECT_DAYS = 90
"""How long a renamed record's old slug redirects (the seed's rule)."""


def _slug_history(base: Snapshot, spec: WritableSheet, old: Record, new: Record,
                  now: str) -> dict[str, bytes | None]:
    """A rename keeps the old slug answering, with a 301, for 90 days: the seed's
    ``slug-history`` record, in the same commit as the rename (when the data
    repository has the sheet). An entry *from* the new slug goes: the slug is live
    again, and no chain of redirects can then come back to where it started."""
    old_slug, new_slug = getattr(old, "slug", None), getattr(new, "slug", None)
    sheet = base.sheet("slug-history")
    if sheet is None or old_slug is None or old_slug == new_slug:
        return {}
    expires = format_timestamp(parse_timestamp(now) + dt.timedelta(days=SLUG_REDIRECT_DAYS))
    entry = SlugHistory(id=str(uuid.uuid4()), entity_type=spec.subject_type,  # type: ignore[arg-type]
                        old_slug=old_slug, new_slug=str(new_slug), entity_id=old.id, changed_at=now,
                        expires_at=expires)
    path = sheet.record_path(msgspec.to_builtins(entry))
    if path is None or tree_path_problem(path) is not None:
        return {}
    stale = base.indices["slug_history"].get((spec.subject_type, new_slug))
    changes: dict[str, bytes | None] = {path: to_toml(entry)}
    if stale is not None:
        changes[base.table("slug-history").path_by_id[stale]] = None
    return changes


_SAFE_PATH = re.compile(r"[^A-Za-z0-9/_.-]")


def _message(method: str, request_path: str, action: str, spec: WritableSheet, record: Record) -> str:
    """Subject ``<actor>: <METHOD> <path>`` and trailers, per the seed's storage
    spec; no request bodies, addresses or user agents."""
    slug = getattr(record, "slug", "")
    return (
        f"api: {method} {_SAFE_PATH.sub('', request_path)}\n\n"
        f"Action: {spec.subject_type}.{action}\n"
        f"Subject-Type: {spec.subject_type}\n"
        f"Subject-Id: {record.id}\n"
        f"Subject-Slug: {slug}\n"
    )
