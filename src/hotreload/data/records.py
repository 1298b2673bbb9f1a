"""Record schemas: frozen msgspec Structs following the seed repo's data model,
and :func:`parse_record`, which turns one TOML blob into one validated record or
raises :class:`RecordError` carrying the record's path and a human message
(``projects/foo.toml: stage: expected one of commenting, ...``).

Fields are camelCase in TOML and JSON, snake_case in Python. An absent optional
field is None. Fields the service does not know are ignored when reading the
repository (a newer data repo stays loadable), but rejected by the write API.
"""

from __future__ import annotations

import datetime as dt
import re
import typing
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import tomli
from msgspec import Meta

from hotreload.data.sheets import Sheet
from hotreload.git.repo import readable

Uuid = Annotated[
    str, Meta(pattern=r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
]
Timestamp = Annotated[
    str,
    Meta(pattern=r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
                 r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"),
]


def parse_timestamp(text: str) -> dt.datetime:
    """A :data:`Timestamp` (validated RFC 3339 text) as an aware datetime."""
    return dt.datetime.fromisoformat(text.upper())


def format_timestamp(when: dt.datetime) -> str:
    """An aware datetime as the service writes timestamps: UTC, seconds, ``Z``."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ProjectSlug = Annotated[str, Meta(pattern=r"\A[a-z0-9][a-z0-9_-]{1,79}\Z")]
PersonSlug = Annotated[str, Meta(pattern=r"\A[a-z0-9][a-z0-9-]{1,49}\Z")]
TagSlug = Annotated[str, Meta(pattern=r"\A[a-z0-9][a-z0-9._-]{0,79}\Z")]
LegacyId = Annotated[int, Meta(ge=1)]

Stage = Literal[
    "commenting", "bootstrapping", "prototyping", "testing", "maintaining", "drifting", "hibernating"
]
STAGES: tuple[str, ...] = typing.get_args(Stage)
TagNamespace = Literal["topic", "tech", "event"]
TAG_NAMESPACES: tuple[str, ...] = typing.get_args(TagNamespace)


class Entry(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """One stored record of any sheet. ``key`` identifies it within its sheet: the
    field ``KEY_FIELD`` (named in duplicate-key errors)."""

    KEY_FIELD: ClassVar[str] = "id"

    @property
    def key(self) -> str:
        key: str = getattr(self, self.KEY_FIELD)
        return key


class Record(Entry, frozen=True, kw_only=True, rename="camel", gc=False):
    id: Uuid


class Project(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    legacy_id: LegacyId | None = None
    slug: ProjectSlug
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    summary: Annotated[str, Meta(max_length=280)] | None = None
    overview: Annotated[str, Meta(max_length=50_000)] | None = None
    stage: Stage = "commenting"
    maintainer_id: Uuid | None = None
    users_url: str | None = None
    developers_url: str | None = None
    chat_channel: Annotated[str, Meta(pattern=r"\A[a-z0-9][a-z0-9_-]{0,40}\Z")] | None = None
    featured: bool = False
    featured_image_key: str | None = None
    deleted_at: Timestamp | None = None
    created_at: Timestamp
    updated_at: Timestamp


class Person(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    legacy_id: LegacyId | None = None
    slug: PersonSlug
    full_name: Annotated[str, Meta(min_length=1, max_length=120)]
    first_name: str | None = None
    last_name: str | None = None
    bio: Annotated[str, Meta(max_length=10_000)] | None = None
    avatar_key: str | None = None
    slack_handle: Annotated[str, Meta(pattern=r"\A[a-z0-9][a-z0-9._-]{0,80}\Z")] | None = None
    account_level: Literal["user", "staff", "administrator"] = "user"
    deleted_at: Timestamp | None = None
    created_at: Timestamp
    updated_at: Timestamp


class Tag(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    legacy_id: LegacyId | None = None
    namespace: TagNamespace
    slug: TagSlug
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    created_at: Timestamp
    updated_at: Timestamp

    @property
    def handle(self) -> str:
        return f"{self.namespace}.{self.slug}"


class TagAssignment(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    tag_id: Uuid
    taggable_type: Literal["project", "person", "help_wanted_role"]
    taggable_id: Uuid
    assigned_by_id: Uuid | None = None
    created_at: Timestamp


class ProjectMembership(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    project_id: Uuid
    person_id: Uuid
    role: Annotated[str, Meta(max_length=200)] | None = None
    is_maintainer: bool = False
    joined_at: Timestamp
    created_at: Timestamp
    updated_at: Timestamp


class ProjectUpdate(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    legacy_id: int | None = None
    project_id: Uuid
    author_id: Uuid | None = None
    body: Annotated[str, Meta(min_length=1)]
    number: Annotated[int, Meta(ge=1)]
    created_at: Timestamp
    updated_at: Timestamp


class ProjectBuzz(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    legacy_id: int | None = None
    project_id: Uuid
    posted_by_id: Uuid | None = None
    slug: Annotated[str, Meta(min_length=1)]
    headline: Annotated[str, Meta(min_length=1, max_length=200)]
    url: Annotated[str, Meta(pattern=r"\A[A-Za-z][A-Za-z0-9+.-]*:[^\s]+\Z")]
    published_at: Timestamp
    summary: str | None = None
    image_key: str | None = None
    created_at: Timestamp
    updated_at: Timestamp


RoleStatus = Literal["open", "filled", "closed"]
ROLE_STATUSES: tuple[str, ...] = typing.get_args(RoleStatus)


class HelpWantedRole(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    project_id: Uuid
    posted_by_id: Uuid
    title: Annotated[str, Meta(min_length=1, max_length=120)]
    description: Annotated[str, Meta(min_length=1)]
    commitment_hours_per_week: Annotated[int, Meta(ge=0)] | None = None
    status: RoleStatus = "open"
    filled_by_id: Uuid | None = None
    filled_at: Timestamp | None = None
    closed_at: Timestamp | None = None
    created_at: Timestamp
    updated_at: Timestamp


class HelpWantedInterest(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    role_id: Uuid
    person_id: Uuid
    message: Annotated[str, Meta(max_length=2_000)] | None = None
    created_at: Timestamp


SlugEntity = Literal["project", "person", "tag", "buzz"]


class SlugHistory(Record, frozen=True, kw_only=True, rename="camel", gc=False):
    """``oldSlug`` of an ``entityType`` now answers as ``newSlug`` until ``expiresAt``."""

    entity_type: SlugEntity
    # the widest slug pattern (every project, person and tag slug matches it): these go into
    # a path and a Location header, so never a CR/LF, a '/' or a leading '.'
    old_slug: TagSlug
    new_slug: TagSlug
    entity_id: Uuid
    changed_at: Timestamp
    expires_at: Timestamp


class Revocation(Entry, frozen=True, kw_only=True, rename="camel", gc=False):
    """A revoked session token (its ``jti``), kept until the token would expire."""

    KEY_FIELD: ClassVar[str] = "jti"
    jti: Annotated[str, Meta(min_length=1)]
    person_id: Uuid
    revoked_at: Timestamp
    expires_at: Timestamp


class Untyped(Entry, frozen=True, kw_only=True, gc=False):
    """A record of a sheet the service has no schema for: its TOML table as JSON
    values, keyed by its path below the sheet's root (without ``.toml``)."""

    KEY_FIELD: ClassVar[str] = "path_key"
    path_key: str
    data: dict[str, Any]


RECORD_TYPES: dict[str, type[Entry]] = {
    "projects": Project,
    "people": Person,
    "tags": Tag,
    "tag-assignments": TagAssignment,
    "project-memberships": ProjectMembership,
    "project-updates": ProjectUpdate,
    "project-buzz": ProjectBuzz,
    "help-wanted-roles": HelpWantedRole,
    "help-wanted-interest": HelpWantedInterest,
    "slug-history": SlugHistory,
    "revocations": Revocation,
}
"""The seed's eleven sheets (CodeForPhilly/codeforphilly-ng ``packages/shared/src/schemas``).
Any other sheet a repository declares is served as :class:`Untyped`."""


class RecordError(Exception):
    """A record that does not parse or validate. ``str()`` is ``path: message``."""

    def __init__(self, path: str, message: str, tree_path: str | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.tree_path = tree_path or path
        """The path as it is in the tree (``path`` is escaped for display)."""


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<loc>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_REGEX = re.compile(r"^Expected `str` matching regex '(?P<rx>.*)'$", re.S)


def describe_validation_error(record_type: type[Entry], error: msgspec.ValidationError) -> str:
    """msgspec's message rewritten as ``field: what is wrong``."""
    match = _AT.match(str(error))
    assert match is not None
    msg, loc = match.group("msg"), (match.group("loc") or "").lstrip(".")
    missing = _MISSING.match(msg)
    if missing:
        return f"{missing.group('field')}: required field is missing"
    field = loc.split(".")[0].split("[")[0] if loc else ""
    choices = _literal_choices(record_type, field)
    if choices and msg.startswith("Invalid enum value"):
        got = msg[len("Invalid enum value ") :]
        return f"{field}: expected one of {', '.join(choices)}, got {got}"
    regex = _REGEX.match(msg)
    if regex:
        msg = f"must match {regex.group('rx')}"
    return f"{loc}: {msg}" if loc else msg


def _literal_choices(record_type: type[Entry], encoded_name: str) -> tuple[str, ...]:
    info = msgspec.inspect.type_info(record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        if f.encode_name == encoded_name:
            t = f.type
            if isinstance(t, msgspec.inspect.UnionType):
                t = next((x for x in t.types if isinstance(x, msgspec.inspect.LiteralType)), t)
            if isinstance(t, msgspec.inspect.LiteralType):
                return tuple(str(v) for v in t.values)
    return ()


def _normalise(value: Any) -> Any:
    """TOML may hold an offset date-time natively; records store RFC 3339 strings."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return value


def parse_toml(data: bytes) -> dict[str, Any]:
    """A record's TOML table, by ``tomli`` (the compiled parser the standard library's
    ``tomllib`` came from: 1.7x faster, decision 52)."""
    return {key: _normalise(value) for key, value in tomli.loads(data.decode("utf-8")).items()}


def parse_record(sheet: Sheet, path: str, data: bytes) -> Entry:
    """Read one record; any failure, whatever its kind, is a :class:`RecordError`
    naming the path (bytes that are not UTF-8 shown as ``\\xNN``): one odd file
    makes a 422 for the tree that holds it, never a 500 or a failed start.
    A sheet without a schema here gives :class:`Untyped` records."""
    shown = readable(path)
    if shown != path:
        raise RecordError(shown, "the file name is not UTF-8; rename the file", tree_path=path)
    record_type = RECORD_TYPES.get(sheet.name, Untyped)
    try:
        raw = parse_toml(data)
    except UnicodeDecodeError:
        raise RecordError(path, "not UTF-8 text") from None
    except RecursionError:
        raise RecordError(path, "invalid TOML: nested too deeply") from None
    except ValueError as exc:  # tomli's TOMLDecodeError, or e.g. an integer of more than 4,300 digits
        raise RecordError(path, f"invalid TOML: {exc}") from None
    try:
        if record_type is Untyped:
            key = path[len(sheet.root) + 1 : -len(".toml")]
            # its TOML table as JSON: date-times, dates and times as RFC 3339 / ISO 8601 strings
            record: Entry = Untyped(path_key=key, data=msgspec.to_builtins(raw))
        else:
            record = msgspec.convert(raw, type=record_type)
    except msgspec.ValidationError as exc:
        raise RecordError(path, describe_validation_error(record_type, exc)) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise RecordError(path, f"cannot be read as a {sheet.name} record: {exc}") from None
    try:
        expected = sheet.record_path(raw)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RecordError(path, f"its path template cannot be filled: {exc}") from None
    if expected is not None and expected != path:
        raise RecordError(path, f"record belongs at {expected} (its path template is "
                                f"{sheet.root}/{sheet.path_template}.toml)")
    return record


def to_toml(record: Entry) -> bytes:
    """Serialise a record the way the service writes it (None fields omitted)."""
    lines = []
    for key, value in msgspec.to_builtins(record).items():
        if value is None:
            continue
        lines.append(f"{key} = {toml_value(value)}")
    return ("\n".join(lines) + "\n").encode()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_string(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        .replace("\r", "\\r").replace("\t", "\\t")
    )
    escaped = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'


def to_json_dict(record: Entry) -> dict[str, Any]:
    if isinstance(record, Untyped):
        return record.data
    result: dict[str, Any] = msgspec.to_builtins(record)
    return result
