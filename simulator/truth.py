"""What the API should answer for a record, read straight from git with ``tomllib``
and this module's own field list: an oracle independent of the service's parser,
schemas and serialiser (a bug there cannot agree with itself here).

The field list follows the seed repository's schema for the two sheets the
simulator reads back (projects, people): every field the read API returns, with
the default it takes when the TOML omits it.
"""

from __future__ import annotations

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
}


class NotARecord(Exception):
    """The file is not a record the API could serve (bad TOML, no slug)."""


def expected(sheet: str, data: bytes) -> dict[str, Any]:
    """The API's view of one record file: every field, defaults filled in."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise NotARecord(f"not TOML: {exc}") from None
    if not isinstance(doc.get("slug"), str) or not isinstance(doc.get("id"), str):
        raise NotARecord("no string id and slug")
    return {key: doc.get(key, default) for key, default in FIELDS[sheet].items()}


def to_toml(fields: dict[str, Any]) -> bytes:
    """A flat TOML table (strings, numbers, booleans, lists of those)."""
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
    raise TypeError(f"cannot write {type(value).__name__} as TOML here")


def github_signature(secret: str, raw: bytes) -> str:
    """``X-Hub-Signature-256`` as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
