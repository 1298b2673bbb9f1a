"""Sheet configurations read from ``.gitsheets/<sheet>.toml`` in the data tree.

A gitsheets config names the folder a sheet's records live in (``root``) and the
path template of one record below it (``path``), e.g.::

    [gitsheet]
    root = "tags"
    path = "${{ namespace }}/${{ slug }}"

so the tag ``{namespace = "topic", slug = "transit"}`` lives at
``tags/topic/transit.toml``. Both ``${{ field }}`` and ``${field}`` are accepted.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CONFIG_DIR = ".gitsheets"
PLACEHOLDER = re.compile(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SheetConfigError(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Sheet:
    name: str
    root: str
    path_template: str

    def owns(self, path: str) -> bool:
        """Is ``path`` (from the tree's root) a record file of this sheet?"""
        return path.endswith(".toml") and path.startswith(self.root + "/")

    def record_path(self, values: Mapping[str, Any]) -> str | None:
        """Where a record with these field values must live, or None when the
        template uses a field the record does not carry (e.g. ``projectSlug``)."""
        missing = False

        def fill(match: re.Match[str]) -> str:
            nonlocal missing
            value = values.get(match.group(1) or match.group(2))
            if value is None:
                missing = True
                return ""
            return str(value)

        rendered = PLACEHOLDER.sub(fill, self.path_template)
        return None if missing else f"{self.root}/{rendered}.toml"


def tree_path_problem(path: str) -> str | None:
    """Why git would refuse ``path`` as a file in a tree (``git fsck``: empty,
    ``.``, ``..`` or ``.git`` parts, NUL bytes), or None."""
    for part in path.split("/"):
        if part in ("", ".", ".."):
            return f"it has an empty, '.' or '..' part ({path!r})"
        if part.lower() == ".git":
            return f"it has a '.git' part ({path!r})"
        if "\0" in part:
            return "it holds a NUL character"
    return None


def parse_sheet_config(config_path: str, name: str, data: bytes) -> Sheet:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SheetConfigError(config_path, f"invalid TOML: {exc}") from None
    table = doc.get("gitsheet")
    if not isinstance(table, dict):
        raise SheetConfigError(config_path, "missing [gitsheet] table")
    root = table.get("root", name)
    template = table.get("path")
    if not isinstance(root, str) or not root.strip("/"):
        raise SheetConfigError(config_path, "gitsheet.root must be a non-empty string")
    if not isinstance(template, str) or not template:
        raise SheetConfigError(config_path, "gitsheet.path must be a non-empty string")
    return Sheet(name=name, root=root.strip("/"), path_template=template.strip("/"))
