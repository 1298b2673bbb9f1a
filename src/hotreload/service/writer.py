"""The write use case: one commit per successful request, and a snapshot that includes it,
swapped in the same critical section as the ref move, by the protocol reloads share
(:mod:`~hotreload.service.swap`): a write that loses the race to a reload or another write
applies again on the new snapshot, so nothing is lost.

What a 2xx waits for is ``CFP_WRITE_ACK`` (specs/writes.md): ``local``, the commit is on the
branch here and the push daemon delivers it; ``remote``, the commit is pushed (a
compare-and-swap) *before* the local branch moves, so readers never see a write the remote
refused; re-applied after a rejection, it never overwrites a field someone else changed (409).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
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
from hotreload.git.errors import PushOutcomeUnknown, PushRejected
from hotreload.git.push import PushDaemon
from hotreload.git.repo import API_IDENTITY, BranchMoved, GitError, GitRepo, Remote, Signature, branch_ref, tracking_ref
from hotreload.service.lock import DataLock
from hotreload.service.swap import ATTEMPTS, Swapped, build, commit_prepared, swap

log = logging.getLogger(__name__)


class WriteError(Exception):
    """A rejected write. ``kind`` maps to the HTTP status; nothing was committed (but for
    ``outcome="unknown"``: the remote went away after it was sent the commit)."""

    def __init__(self, kind: str, message: str, field: str | None = None, current: Record | None = None,
                 retry_after: int | None = None, outcome: str = "refused", seen_in: Snapshot | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # bad_request | not_found | conflict | precondition | invalid | unavailable
        self.field = field
        self.current = current
        """The record as it is now, for a 409 or 412 (None: there is none), in the snapshot ``seen_in``."""
        self.seen_in = seen_in
        self.retry_after = retry_after
        self.outcome = outcome


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
    pushed: bool = False
    """The remote's branch holds ``commit`` (``CFP_WRITE_ACK=remote``)."""
    snapshot: Snapshot | None = None
    """The snapshot of ``commit``, to answer from (a reload may have swapped since)."""


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
    ack: str = "local"
    """``CFP_WRITE_ACK``; ``remote`` needs ``remote``, ``push_daemon`` and ``reconcile``."""
    remote: str | Remote | None = None
    reconcile: Callable[[], object] | None = None
    """Bring the branch in line with the remote (a reload), after a rejected push."""
    ack_timeout_s: float = 30.0
    """``remote``: how long a write keeps trying (rejections, a busy remote lock) before 503."""

    # -- the three verbs ------------------------------------------------------------

    def create(self, sheet: str, body: Mapping[str, Any], request_path: str,
               if_none_match: bool = False) -> WriteResult:
        """``if_none_match`` (``If-None-Match: *``): a slug taken is a failed precondition."""
        spec = SHEETS[sheet]
        _check_keys(spec, body, create=True)

        def change(base: Snapshot) -> Change:
            if (taken := _find(base, spec, body["slug"])) is not None:
                raise WriteError("precondition" if if_none_match else "conflict",
                                 f"slug: {body['slug']!r} is already taken", "slug", current=taken,
                                 seen_in=base)
            ts = self.now()
            fields = {**body, "id": str(uuid.uuid4()), "createdAt": ts, "updatedAt": ts}
            return None, _validate(spec, fields), {}

        return self._commit(spec, "POST", request_path, "create", change)

    def update(self, sheet: str, slug: str, body: Mapping[str, Any], request_path: str,
               if_match: Sequence[str] | None = None) -> WriteResult:
        """``if_match``: the commits of the client's ETags; the record must be as it was at one."""
        spec = SHEETS[sheet]
        _check_keys(spec, body, create=False)

        def change(base: Snapshot) -> Change:
            old = self._matching(base, spec, _live(base, spec, slug), if_match)
            new_slug = body.get("slug", slug)
            if new_slug != slug and _find(base, spec, new_slug) is not None:
                raise WriteError("conflict", f"slug: {new_slug!r} is already taken", "slug")
            edits = {**body, "updatedAt": self.now()}
            return old, _validate(spec, {**msgspec.to_builtins(old), **edits}), edits

        return self._commit(spec, "PATCH", request_path, "update", change)

    def delete(self, sheet: str, slug: str, request_path: str, if_match: Sequence[str] | None = None) -> WriteResult:
        spec = SHEETS[sheet]

        def change(base: Snapshot) -> Change:
            old = self._matching(base, spec, _live(base, spec, slug), if_match)
            ts = self.now()
            edits = {"deletedAt": ts, "updatedAt": ts}
            return old, _validate(spec, {**msgspec.to_builtins(old), **edits}), edits

        return self._commit(spec, "DELETE", request_path, "soft-delete", change)

    def _matching(self, base: Snapshot, spec: WritableSheet, record: Record,
                  if_match: Sequence[str] | None) -> Record:
        """``record``, if its file is what it was at one of the ``if_match`` commits (412 if not,
        or if this clone has none of them): only a change to *this* record fails the check."""
        if if_match is None:
            return record
        path = base.table(spec.sheet).path_by_id[record.id]
        now = self.repo.blob_at(base.tree, path)
        for commit in if_match:
            try:
                if self.repo.has_object(commit) and self.repo.blob_at(self.repo.tree_of(commit), path) == now:
                    return record
            except GitError:  # not a commit
                continue
        raise WriteError("precondition", f"If-Match: the {spec.subject_type} changed since the ETag's commit "
                         "(or the service does not know that commit); read it again", current=record,
                         seen_in=base)

    # -- the commit -------------------------------------------------------------------

    def _commit(self, spec: WritableSheet, method: str, request_path: str, action: str,
                change: Callable[[Snapshot], Change]) -> WriteResult:
        if self.holder.degraded:
            raise WriteError("unavailable", f"writes are refused while the branch head does not build "
                             f"({self.holder.degraded})")
        first: list[Change] = []

        def change_once(base: Snapshot) -> Change:
            """``change``, which on a later base must not overwrite what someone else changed."""
            now = change(base)
            if not first:
                first.append(now)
            elif (name := _overwritten(first[0], now)) is not None:
                raise WriteError("conflict", f"{name}: changed by someone else since this write began; "
                                 "nothing was saved", name, current=now[0], seen_in=base)
            return now

        def prepare(base: Snapshot, warm: bool) -> tuple[Snapshot, _Written]:  # local: a lost race re-applies (147)
            return self._prepare(base, warm, spec, method, request_path, action,
                                 change_once if self.ack == "remote" else change)

        if self.ack == "remote":
            swapped = self._commit_acknowledged(prepare, action)
        else:
            try:
                swapped = swap(self.lock, self.holder, "write", prepare, lambda w: self._move(w, action))
            except BranchMoved:  # under the lock, after the optimistic attempts: not one of ours
                raise WriteError("conflict", "the data branch moved outside this service; "
                                 "try the request again") from None
        written = swapped.prepared
        log.info("committed %s %s", method, request_path,
                 extra={"commit": written.commit, "action": f"{spec.subject_type}.{action}",
                        "lockHeldMs": round(swapped.lock_held_ms, 3), "pushed": self.ack == "remote"})
        if self.push_daemon is not None:
            self.push_daemon.notify()
        return WriteResult(written.record, written.commit, swapped.lock_held_ms, self.ack == "remote",
                           swapped.snapshot)

    def _commit_acknowledged(self, prepare: Callable[[Snapshot, bool], tuple[Snapshot, _Written]],
                             action: str) -> Swapped[_Written, None]:
        """``CFP_WRITE_ACK=remote``. Under the push daemon's remote lock (no reconcile and no
        daemon push interleaves): prepare on the served snapshot, push the commit expecting
        the remote where this clone last saw it, and only once the remote holds it move the
        local branch and swap. A rejected push: reconcile (outside the remote lock), then
        re-apply on the new snapshot, where :func:`_overwritten` answers 409 for a field
        someone else changed. Nothing is committed locally unless the remote took it."""
        assert self.push_daemon is not None and self.remote is not None and self.reconcile is not None
        deadline = time.monotonic() + self.ack_timeout_s
        remote_lock = self.push_daemon.remote_lock
        for attempt in range(1, ATTEMPTS + 1):
            if not remote_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise WriteError("unavailable", "the remote is busy (another write or a reconcile holds it "
                                 f"after {self.ack_timeout_s:g} s); nothing was saved", retry_after=1)
            try:
                base = self.holder.current
                snapshot, written = prepare(base, True)
                pushed = self._push(written.commit)
                if pushed:
                    swapped = commit_prepared(self.lock, self.holder, "write", base, snapshot, written,
                                              lambda w: self._move(w, action))
                    behind = self.repo.resolve(tracking_ref(self.branch)) != written.commit
            finally:
                remote_lock.release()
            if pushed:
                if behind:  # others built on it before we saw it land: catch up now
                    try:
                        self.reconcile()
                    except Exception:  # the poll catches up: the tracking ref must not say it has
                        self.repo.set_ref(tracking_ref(self.branch), written.commit)
                return swapped
            log.info("a write's push was rejected (attempt %d): reconciling, then applying it again", attempt,
                     extra={"commit": written.commit, "attempt": attempt})
            if time.monotonic() >= deadline:
                break
            try:
                self.reconcile()
            except Exception as exc:  # recorded by the reload (health, metrics, log)
                raise WriteError("unavailable", f"the remote could not be caught up with: {exc}; "
                                 "nothing was saved", retry_after=5) from None
        raise WriteError("unavailable", f"the remote's branch kept moving ({attempt} attempts); nothing was "
                         "saved; try again", retry_after=1)

    def _push(self, commit: str) -> bool:
        """Push ``commit`` as the branch, a compare-and-swap from the last remote tip seen (call
        under the remote lock): True once the remote holds it, False if it refused (moved)."""
        assert self.remote is not None
        expected = self.repo.resolve(tracking_ref(self.branch))
        try:
            self.repo.push_ref(self.remote, commit, branch_ref(self.branch), expect=expected)
        except PushRejected:
            return False
        except PushOutcomeUnknown as exc:  # did the remote move its ref before the connection went?
            try:
                tip = self.repo.fetch_branch(self.remote, self.branch)  # the tracking ref follows
            except GitError:
                tip = expected  # cannot be asked: as unknown as a remote that has not moved yet
            if tip is not None and self.repo.is_ancestor(commit, tip):
                return True
            if expected is not None:  # a tip fetched but not served: the poll must still see it move
                self.repo.set_ref(tracking_ref(self.branch), expected)
            if tip == expected:  # a remote slow to apply may still: its old-value check would pass (decision 145)
                raise WriteError("unavailable", f"{exc}; the write may have been saved, or may still "
                                 "be: read the record before trying again", retry_after=5, outcome="unknown") from None
            raise WriteError("unavailable", f"{exc}; the remote's branch moved elsewhere, so it can never take "
                             "the write: nothing was saved", retry_after=5) from None
        except GitError as exc:
            raise WriteError("unavailable", f"the remote did not take the write: {exc}; nothing was saved",
                             retry_after=5) from None
        self.repo.set_ref(tracking_ref(self.branch), commit)
        return True

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


def _overwritten(first: Change, now: Change) -> str | None:
    """A field this write changes (but ``updatedAt``, which every write sets) whose value
    before the write differs between its first base (``first``) and this one (``now``)."""
    before, current = first[0], now[0]
    if before is None or current is None:  # a create: a slug taken meanwhile is its own 409
        return None
    was, now_is = msgspec.to_builtins(before), msgspec.to_builtins(current)
    return next((key for key in now[2] if key != "updatedAt" and was.get(key) != now_is.get(key)), None)


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


_TRAILER = re.compile(r"^(Action|Subject-Type|Subject-Id|Subject-Slug): (.*)$", re.MULTILINE)


def write_trailers(message: str) -> dict[str, str]:
    """What :func:`_message` put in a commit's trailers (empty: not an API write)."""
    return dict(_TRAILER.findall(message))
