"""``/api/sheets``: every sheet the data repository declares, typed or not, read-only.

A sheet the service has no schema for is loaded anyway (its TOML tables, path
template checked) and is served only here; the typed sheets are here too, as
stored, so one client can read any sheet the same way. A record's key is its
path below the sheet's root, without ``.toml`` (``tags/topic/transit.toml`` is
``/api/sheets/tags/topic/transit``)."""

from __future__ import annotations

from typing import Any

import falcon

from hotreload.api.errors import ApiError
from hotreload.api.read import _ok, _snapshot, cached_body, page_body, paging
from hotreload.data.records import RECORD_TYPES, Entry, to_json_dict
from hotreload.data.sheets import Sheet
from hotreload.data.snapshot import Snapshot, SnapshotHolder


def _sheet(snap: Snapshot, name: str) -> Sheet:
    sheet = snap.sheet(name)
    if sheet is None:
        known = ", ".join(s.name for s in snap.sheets)
        raise ApiError(404, "not_found", f"no sheet {name!r} (this commit has: {known})")
    return sheet


def _entry_json(sheet: Sheet, path: str, record: Entry) -> dict[str, Any]:
    return {"key": path[len(sheet.root) + 1 : -len(".toml")], "path": path, "data": to_json_dict(record)}


class SheetsResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        snap = _snapshot(self.holder, resp)
        _ok(resp, snap, [
            {"name": s.name, "root": s.root, "pathTemplate": s.path_template,
             "typed": s.name in RECORD_TYPES, "count": len(snap.table(s.name)),
             "changedInCommit": snap.changed_in.get(s.name)}
            for s in sorted(snap.sheets, key=lambda s: s.name)
        ])


class SheetResource:
    """Every record of one sheet, by path."""

    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, sheet: str) -> None:
        snap = _snapshot(self.holder, resp)
        pages = paging(req)
        _sheet(snap, sheet)  # 404 for a sheet this commit does not declare

        def body(s: Snapshot) -> dict[str, Any]:
            table, config = s.table(sheet), _sheet(s, sheet)
            paths = s.cached(("sheet-paths", sheet), lambda s: sorted(s.table(sheet).id_by_path), reads=(sheet,))
            return page_body(pages, paths, lambda p: _entry_json(config, p, table.by_id[table.id_by_path[p]]))

        cached_body(resp, snap, ("sheet", sheet, pages), body, (sheet,))


class SheetRecordResource:
    def __init__(self, holder: SnapshotHolder) -> None:
        self.holder = holder

    def on_get(self, req: falcon.Request, resp: falcon.Response, sheet: str, key: str) -> None:
        snap = _snapshot(self.holder, resp)
        found = _sheet(snap, sheet)
        table = snap.table(sheet)
        path = f"{found.root}/{key}.toml"
        record_key = table.id_by_path.get(path)
        if record_key is None:
            raise ApiError(404, "not_found", f"sheet {sheet!r} has no record {key!r} (looked for {path})")
        _ok(resp, snap, _entry_json(found, path, table.by_id[record_key]))
