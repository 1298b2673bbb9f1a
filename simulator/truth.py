"""What the API should answer for a record, read straight from git with ``tomllib``
and this module's own field list: an oracle independent of the service's parser,
schemas and serialiser (a bug there cannot agree with itself here).

The field lists follow the seed repository's schemas (packages/shared/src/schemas
there) for every sheet the simulator reads back: every field the read API returns,
with the default it takes when the TOML omits it. A sheet without a list is one
the service serves untyped: its whole table, dates as ISO 8601 strings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import tomllib
from typing import Any

FIELDS: dict[str, dict[str, Any]] = {
    "projects": {
        "id": None, "legacyId": None, "slug": None, "title": None, "summary": None, "overview": None,
        "stage": "commenting", "maintainerId": None, "usersUrl": None, "developersUrl": None,
        "chatChannel": None, "featured": False, "featuredImageKey": None, "deletedAt": None,
        "createdAt": None, "updatedAt": None,
    },
    "people": {
        "id": None, "legacyId": None, "slug": None, "fullName": None, "firstName": None, "lastName": None,
        "bio": None, "avatarKey": None, "slackHandle": None, "accountLevel": "user", "deletedAt": None,
        "createdAt": None, "updatedAt": None,
    },
    "tags": {"id": None, "legacyId": None, "namespace": None, "slug": None, "title": None,
             "createdAt": None, "updatedAt": None},
    "tag-assignments": {"id": None, "tagId": None, "taggableType": None, "taggableId": None,
                        "assignedById": None, "createdAt": None},
    "project-memberships": {"id": None, "projectId": None, "personId": None, "role": None,
                            "isMaintainer": False, "joinedAt": None, "createdAt": None, "updatedAt": None},
    "project-updates": {"id": None, "legacyId": None, "projectId": None, "authorId": None, "body": None,
                        "number": None, "createdAt": None, "updatedAt": None},
    "project-buzz": {"id": None, "legacyId": None, "projectId": None, "postedById": None, "slug": None,
                     "headline": None, "url": None, "publishedAt": None, "summary": None, "imageKey": None,
                     "createdAt": None, "updatedAt": None},
    "help-wanted-roles": {"id": None, "projectId": None, "postedById": None, "title": None,
                          "description": None, "commitmentHoursPerWeek": None, "status": "open",
                          "filledById": None, "filledAt": None, "closedAt": None, "createdAt": None,
                          "updatedAt": None},
    "help-wanted-interest": {"id": None, "roleId": None, "personId": None, "message": None, "createdAt": None},
    "slug-history": {"id": None, "entityType": None, "oldSlug": None, "newSlug": None, "entityId": None,
                     "changedAt": None, "expiresAt": None},
    "revocations": {"jti": None, "personId": None, "revokedAt": None, "expiresAt": None},
}


def stored(sheet: str, data: bytes) -> dict[str, Any]:
    """What ``/api/sheets/<sheet>/<key>`` answers as ``data`` for one record file."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise NotARecord(f"not TOML: {exc}") from None
    if sheet in FIELDS:
        return {key: _json(doc.get(key, default)) for key, default in FIELDS[sheet].items()}
    result: dict[str, Any] = _json(doc)
    return result


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return value


def redirect_target(history: dict[str, dict[str, Any]], live: set[str], slug: str, now: dt.datetime) -> str | None:
    """Where ``slug`` should answer from, by the seed's slug-handles rule: a live
    slug stays; else follow unexpired ``oldSlug -> newSlug`` entries (at most 8
    hops) to the first live slug. A path that meets a slug twice, runs out, or ends
    at a slug that is not live answers nowhere (404). ``history`` maps oldSlug to its entry's table."""
    if slug in live:
        return None
    path = [slug]
    while len(path) <= 8:
        entry = history.get(path[-1])
        if entry is None or entry["newSlug"] in path:
            return None
        if dt.datetime.fromisoformat(str(entry["expiresAt"]).replace("Z", "+00:00")) <= now:
            return None
        path.append(entry["newSlug"])
        if path[-1] in live:
            return path[-1]
    return None


class NotARecord(Exception):
    """The file is not a record the API could serve (bad TOML, no slug)."""


def expected(sheet: str, data: bytes) -> dict[str, Any]:
    """The API's view of one record file: every field, defaults filled in, TOML
    date-times as RFC 3339 text."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise NotARecord(f"not TOML: {exc}") from None
    if not isinstance(doc.get("slug"), str) or not isinstance(doc.get("id"), str):
        raise NotARecord("no string id and slug")
    return {key: _json(doc.get(key, default)) for key, default in FIELDS[sheet].items()}


def to_toml(fields: dict[str, Any]) -> bytes:
    """A flat TOML table (strings, numbers, booleans, date-times, lists of those)."""
    return "".join(f"{key} = {_value(value)}\n" for key, value in fields.items() if value is not None).encode()


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()  # TOML's own date-time forms are RFC 3339's
    raise TypeError(f"cannot write {type(value).__name__} as TOML here")


def github_signature(secret: str, raw: bytes) -> str:
    """``X-Hub-Signature-256`` as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
