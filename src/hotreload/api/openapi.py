"""``GET /api/openapi.json``: OpenAPI 3.1 of every public route. The internal
webhook (``/api/_internal/*``) is deliberately absent."""

from __future__ import annotations

from typing import Any

import falcon
import msgspec

from hotreload import __version__
from hotreload.data import records
from hotreload.data.records import ROLE_STATUSES, STAGES
from hotreload.service.writer import SHEETS as WRITABLE_SHEETS


def _param(name: str, schema: dict[str, Any], description: str, where: str = "query", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, "description": description, "required": where == "path",
            **extra}


PAGING = [_param("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1}, "Page number"),
          _param("perPage", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size")]
SLUG = _param("slug", {"type": "string"}, "The record's slug", "path")
STRING = {"type": "string"}
NULLABLE = {"type": ["string", "null"]}
STRINGS = {"type": "array", "items": STRING}
INTEGER = {"type": "integer"}
OBJECT = {"type": "object"}
REQUEST_ID = {"X-Request-Id": {"description": "The request's trace id (the error's traceId)", "schema": STRING}}
DATA_COMMIT = {"X-Data-Commit": {"description": "Commit of the snapshot that answered", "schema": STRING}}
HEADERS = {**REQUEST_ID, **DATA_COMMIT}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}


def _object(properties: dict[str, Any], *required: str, **extra: Any) -> dict[str, Any]:
    return {"type": "object", **extra, **({"required": list(required)} if required else {}), "properties": properties}


def _ok(description: str, data: dict[str, Any], meta: str | None = None) -> dict[str, Any]:
    schema = _object({"success": {"const": True}, "data": data, **({"meta": _ref(meta)} if meta else {})},
                     "success", "data", *(["meta"] if meta else []))
    return {"description": description, "headers": HEADERS, "content": {"application/json": {"schema": schema}}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "headers": {**REQUEST_ID, **(headers or {})},
            "content": {"application/json": {"schema": _ref("Error")}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(item: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(item)}


READ_ERRORS = {"400": _error("A query parameter is malformed (the message names it)")}
NOT_FOUND = {"404": _error("No live record with that slug")}
MOVED = {"301": _error(
    "Renamed: the slug-history entry says where it answers now (details.location)",
    {"Location": {"description": "The new URL, the rest of the path and query kept", "schema": STRING},
     "Cache-Control": {"description": "public, max-age=300", "schema": STRING}, **DATA_COMMIT})}
LEGACY = [_param(name, {"type": "integer", "minimum": 1, "maximum": 999_999_999}, text) for name, text in (
    ("legacyId", "The record with this legacy id (the original site's numeric id), as a list of 0 or 1"),
    ("ID", "The original site's link form: 301 to the record with this legacy id (404 when none)"))]
TAG_HANDLE_SCHEMA = {"type": "string", "pattern": r"^(topic|tech|event)\.[a-z0-9][a-z0-9._-]{0,79}$"}
WRITE_ERRORS = {
    "400": _error("Malformed JSON, too deep, not an object, or an unknown field (the message names it)"),
    "401": _error("Authentication required (a bearer token)",
                  {"WWW-Authenticate": {"description": "Bearer", "schema": STRING}}),
    "413": _error("Body larger than 256 KiB"),
    "415": _error("Content-Type is not application/json"),
    "422": _error("A field fails validation (the message names it); nothing was committed"),
    "429": _error("Too many failed authentications from this address", RETRY_AFTER),
    "503": _error("Writes not configured, or refused while the branch head does not build; with "
                  "CFP_WRITE_ACK=remote, the remote did not take the write in time (details.outcome: refused, "
                  "nothing was saved; unknown, it may have been or may still be: read before retrying), or a "
                  "quarter of the worker threads already wait for the remote (refused)", RETRY_AFTER),
}
CONFLICT = {"409": _error("The slug is already taken (details.current: the record that holds it)")}
EDIT_CONFLICT = {"409": _error("The new slug is taken, or (CFP_WRITE_ACK=remote) a field this write changes was "
                               "changed by someone else since the write began (details.field, details.current); "
                               "nothing was saved")}
IF_MATCH = _param("If-Match", STRING, "The record's ETag (from its GET, or any response answered from a commit): "
                  "the write applies only if the record's file is as it was at that commit, else 412 (also when the "
                  "header holds no tag)", "header")
CREATE_IF_NONE_MATCH = _param("If-None-Match", {"const": "*"}, "*: refuse (412) to create over an existing "
                              "slug, where a plain create answers 409", "header")
STALE = {"412": _error("If-Match: the record changed since the ETag's commit (or the commit is unknown here); "
                       "details.current holds it now; nothing was saved")}
TAKEN = {"412": _error("If-None-Match: *: the slug is taken (details.current); nothing was saved")}
MIN_COMMIT = _param(
    "X-Data-Min-Commit", {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"},
    "Read-your-writes across replicas: answer only from a snapshot that contains this commit (it or a "
    "descendant), such as the X-Data-Commit of your write. A replica that does not serve it yet reloads and "
    "waits (CFP_DATA_MIN_COMMIT_WAIT_SECONDS), else answers 503 with Retry-After", "header")
NOT_YET = _error("This replica does not serve X-Data-Min-Commit yet, even after reloading: retry",
                 {**RETRY_AFTER, **DATA_COMMIT})
ITEM_WRITE_ERRORS = {**WRITE_ERRORS, **NOT_FOUND, **EDIT_CONFLICT, **STALE}
CREATE_ERRORS = {**WRITE_ERRORS, **CONFLICT, **TAKEN}
CACHING = {
    "ETag": {"description": '"<commit>-<hash of path and query>": the commit answered from (as '
                            "X-Data-Commit) and the request; a reload or write changes it", "schema": STRING},
    "Cache-Control": {"description": "public, no-cache: keep it, and revalidate with If-None-Match", "schema": STRING},
    "Vary": {"description": "X-Data-Min-Commit", "schema": STRING}}
IF_NONE_MATCH = _param("If-None-Match", STRING, "An ETag this route gave (or *): 304, no body, when the "
                       "answer would be the same", "header")
NOT_MODIFIED = {"description": "Not modified: the served commit answers this request as the ETag given said",
                "headers": {**HEADERS, **CACHING}}


def _write(operation_id: str, summary: str, body: str | None, status: str, record: str) -> dict[str, Any]:
    """A write: one commit; its answer names the commit and says whether the remote holds it yet."""
    create = status == "201"
    operation: dict[str, Any] = {
        "operationId": operation_id, "summary": summary, "security": [{"writeToken": []}],
        "parameters": [CREATE_IF_NONE_MATCH if create else IF_MATCH],
        "responses": {status: _ok(f"The {record.lower()}; meta.pushed: the remote's branch holds meta.commit "
                                  "(CFP_WRITE_ACK=remote), or not yet (local)", _ref(record), "WriteMeta"),
                      **(CREATE_ERRORS if create else ITEM_WRITE_ERRORS)}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return operation


def _get(operation_id: str, summary: str, responses: dict[str, Any], *parameters: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if parameters:
        operation["parameters"] = list(parameters)
    return {"get": {**operation, "responses": responses}}


def _health() -> dict[str, Any]:
    return {"/api/health": _get("getHealth", "Service health, served and head commits, last reload", {
        "200": _ok("Health", _ref("Health")),
        "503": _error("Not serving: `starting` (loading the data) or `stopping` (after SIGTERM)")})}


def _records() -> dict[str, Any]:
    """Projects and people: lists, details and the writes."""
    tag = _param("tag", {"type": "array", "items": TAG_HANDLE_SCHEMA},
                 "Tag handle namespace.slug; repeatable, all must match", style="form", explode=True)
    search = {"Project": [_param("q", STRING, "Full-text search (title, summary, overview)"),
                          _param("stage", {"type": "string", "enum": list(STAGES)}, "Stage filter"), tag],
              "Person": [_param("q", STRING, "Full-text search (fullName, bio)")]}
    paths: dict[str, Any] = {}
    for name, plural, path, listed, found, one, edit, delete in (
            ("Project", "Projects", "/api/projects", "List projects with facets",
             "Projects, meta.total and meta.facets", "One project with its tags",
             "Edit a project (renaming moves its file)", "Soft-delete a project (sets deletedAt)"),
            ("Person", "People", "/api/people", "List people", "People and meta.total", "One person with tags",
             "Edit a person", "Soft-delete a person")):
        kind = name.lower()
        paths[path] = {
            **_get(f"list{plural}", listed, {"200": _ok(found, _list(name), meta="Meta"), **MOVED, **READ_ERRORS,
                                             "404": _error(f"No {kind} with that legacy id (ID)")},
                   *search[name], *LEGACY, *PAGING),
            "post": _write(f"create{name}", f"Create a {kind} (one commit)", f"{name}Create", "201", name)}
        paths[f"{path}/{{slug}}"] = {
            "parameters": [SLUG],
            **_get(f"get{name}", one, {"200": _ok(name, _ref(name)), **MOVED, **NOT_FOUND}),
            "patch": _write(f"update{name}", edit, f"{name}Update", "200", name),
            "delete": _write(f"delete{name}", delete, None, "200", name)}
    return paths


def _tags() -> dict[str, Any]:
    return {
        "/api/tags": _get("listTags", "All tags with assignment counts",
                          {"200": _ok("Tags", _list("Tag")), **READ_ERRORS},
                          _param("namespace", {"type": "string", "enum": ["topic", "tech", "event"]},
                                 "Namespace filter")),
        "/api/tags/{handle}": _get("getTag", "One tag with its live projects and people",
                                   {"200": _ok("Tag", _ref("TagDetail")), **MOVED, **READ_ERRORS,
                                    "404": _error("No such tag")},
                                   _param("handle", TAG_HANDLE_SCHEMA, "namespace.slug", "path")),
    }


def _activity() -> dict[str, Any]:
    """What happens around a project: updates, buzz, help wanted."""
    return {
        **{f"/api/projects/{{slug}}/{what}": _get(
            op, summary, {"200": _ok(title, _list(item), meta="Meta"), **MOVED, **READ_ERRORS, **NOT_FOUND},
            SLUG, *filters, *PAGING)
           for what, op, summary, title, item, filters in (
               ("updates", "listProjectUpdates", "A project's updates, highest number first", "Updates",
                "ProjectUpdateEntry", []),
               ("buzz", "listProjectBuzz", "Press about a project, newest first", "Buzz", "ProjectBuzz", []),
               ("help-wanted", "listProjectHelpWanted", "A project's help-wanted roles, newest first", "Roles",
                "HelpWantedRole", [_param("status", {"type": "string", "enum": list(ROLE_STATUSES)},
                                          "Only roles with this status (default: every role)")]))},
        "/api/projects/{slug}/updates/{number}": _get(
            "getProjectUpdate", "One update of a project",
            {"200": _ok("Update", _ref("ProjectUpdateEntry")), **MOVED, **READ_ERRORS,
             "404": _error("No such project or update")},
            SLUG, _param("number", {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"},
                         "The update's number (1, 2, ...)", "path")),
        "/api/projects/{slug}/buzz/{buzz}": _get(
            "getProjectBuzz", "One buzz item of a project; a renamed one answers 301",
            {"200": _ok("Buzz", _ref("ProjectBuzz")), **MOVED, "404": _error("No such project or buzz")},
            SLUG, _param("buzz", STRING, "The buzz item's slug", "path")),
        **{f"/api/project-{what}": _get(
            op, f"Every live project's {what}, newest first", {"200": _ok(what, _list(item), "Meta"), **READ_ERRORS},
            _param("since", {"type": "string", "format": "date-time"}, "Only items at or after this time (or date)"),
            _param("tag", {"type": "array", "items": TAG_HANDLE_SCHEMA}, "Repeatable: projects with any", style="form",
                   explode=True), PAGING[0], {**PAGING[1], "schema": {**PAGING[1]["schema"], "default": 30}})
           for what, op, item in (("updates", "listAllProjectUpdates", "ProjectUpdateEntry"),
                                  ("buzz", "listAllProjectBuzz", "ProjectBuzz"))},
        "/api/help-wanted": _get(
            "searchHelpWanted", "Help-wanted roles of live projects",
            {"200": _ok("Roles", _list("HelpWantedRole"), meta="Meta"), **READ_ERRORS},
            _param("q", STRING, "Full-text search (title, description); best match first"),
            _param("status", {"type": "string", "enum": list(ROLE_STATUSES), "default": "open"}, "Status"),
            _param("tag", {"type": "array", "items": TAG_HANDLE_SCHEMA},
                   "Tag handle; repeatable, all must match", style="form", explode=True),
            _param("commitmentMax", {"type": "integer", "minimum": 0, "maximum": 168},
                   "At most this many hours per week"),
            *PAGING),
    }


def _sheets() -> dict[str, Any]:
    sheet = _param("sheet", STRING, "The sheet's name", "path")
    return {
        "/api/sheets": _get("listSheets", "Every sheet the data repository declares",
                            {"200": _ok("Sheets", _list("Sheet"))}),
        "/api/sheets/{sheet}": _get("listSheetRecords", "The records of one sheet, typed or not, by path",
                                    {"200": _ok("Records", _list("SheetRecord"), meta="Meta"), **READ_ERRORS,
                                     "404": _error("No such sheet")}, sheet, *PAGING),
        "/api/sheets/{sheet}/{key}": _get(
            "getSheetRecord", "One record: key is its path below the sheet's root, without .toml (may hold '/')",
            {"200": _ok("Record", _ref("SheetRecord")), "404": _error("No such sheet or record")},
            sheet, _param("key", STRING, "The record's path below the root, without .toml", "path")),
    }


COMMIT_PARAM = {"type": "string", "pattern": "^[0-9a-fA-F]{4,40}$"}


def _changes() -> dict[str, Any]:
    """The change feed (specs/downstream.md)."""
    ok = _ok("The changes, in path order; meta.next is the next page's link (null: the last)", _list("Change"),
             meta="ChangesMeta")
    return {"/api/changes": _get(
        "listChanges", "The records that differ between a commit and the served one, in path order, paged",
        {"200": ok,
         **READ_ERRORS, "404": _error("since or to names no commit this service has"),
         "409": _error("since is not in the served history (the branch was rewritten): read everything again")},
        _param("since", COMMIT_PARAM, "The last commit you have (an event's id, a page's meta.to)", required=True),
        _param("to", COMMIT_PARAM, "Answer up to this commit (default: the served one; meta.next keeps it)"),
        _param("after", STRING, "The cursor: entries after this path (meta.next sets it)"),
        _param("include", {"type": "string", "enum": ["records"]}, "records: each record's JSON as read"),
        _param("perPage", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size"))}


def _events() -> dict[str, Any]:
    """The event stream: not a data read (no ETag, no X-Data-Min-Commit)."""
    stream = {"description": "Server-sent events: retry, then per swap `id: <commit>`, `event: reload|write`, "
                             "`data: {event, from, to, outcome, counts, at}`; `event: catch-up` with "
                             "`data: {from, to, changes}` for a Last-Event-ID too old; `: heartbeat` every 15 s",
              "headers": HEADERS, "content": {"text/event-stream": {"schema": STRING}}}
    return {"/api/events": _get(
        "getEvents", "One event per reload or write, as they happen (text/event-stream)",
        {"200": stream, "400": _error("Last-Event-ID is not an event id"),
         "503": _error("CFP_EVENTS_MAX_SUBSCRIBERS streams are open", RETRY_AFTER)},
        _param("Last-Event-ID", {"type": "string", "pattern": "^[0-9a-f]{40}$"},
               "Resume after this event (EventSource sends it when it reconnects)", "header"))}


def _not_data() -> dict[str, Any]:
    """The routes that do not answer from the data: no X-Data-Min-Commit, no ETag."""
    def plain(description: str, media: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"200": {"description": description, "headers": REQUEST_ID, "content": {media: {"schema": schema}}}}
    return {"/metrics": _get("getMetrics", "Prometheus metrics", plain("Prometheus text format", "text/plain", STRING)),
            "/api/openapi.json": _get("getOpenApi", "This document", plain("OpenAPI 3.1", "application/json", OBJECT))}


def _data_reads(paths: dict[str, Any]) -> None:
    """What every read of the data adds: read-your-writes across replicas (X-Data-Min-Commit,
    503 until served) and, but on health, conditional reads (api/conditional.py)."""
    for path, item in paths.items():
        get = item["get"]
        get["parameters"] = [*get.get("parameters", []), MIN_COMMIT]
        get["responses"].setdefault("400", _error("A query parameter or header is malformed (the message names it)"))
        get["responses"]["503"] = NOT_YET
        if path == "/api/health":
            continue
        get["parameters"].append(IF_NONE_MATCH)
        get["responses"]["200"] = {**get["responses"]["200"], "headers": {**HEADERS, **CACHING}}
        get["responses"]["304"] = NOT_MODIFIED


READ_AS: dict[str, tuple[type[msgspec.Struct], dict[str, Any]]] = {
    "Project": (records.Project, {"tags": STRINGS}),
    "Person": (records.Person, {"tags": STRINGS}),
    "Tag": (records.Tag, {"handle": STRING, "count": INTEGER}),
    "TagDetail": (records.Tag, {"handle": STRING, "projects": {"type": "array", "items": OBJECT},
                                "people": {"type": "array", "items": OBJECT}}),
    "ProjectUpdateEntry": (records.ProjectUpdate, {"project": STRING}),
    "ProjectBuzz": (records.ProjectBuzz, {"project": STRING}),
    "HelpWantedRole": (records.HelpWantedRole, {"project": STRING, "tags": STRINGS,
                                                "interestCount": {"type": "integer", "minimum": 0}}),
}
"""Each record as the read API renders it: every field of its Struct (data/records.py; all are
always present), and what the API adds."""


def _portable(schema: Any) -> Any:
    """A schema msgspec generated, with its patterns in the regex syntax JSON Schema
    specifies (ECMA-262 has no ``\\A`` or ``\\Z``)."""
    if isinstance(schema, list):
        return [_portable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: value.replace("\\A", "^").replace("\\Z", "$") if key == "pattern" else _portable(value)
            for key, value in schema.items()}


def _record_schemas() -> dict[str, Any]:
    """The records as read and the write bodies (the writable fields, service/writer.py), generated
    from data/records.py's Structs. Write bodies carry no defaults: a PATCH leaves out what stays."""
    _, generated = msgspec.json.schema_components(dict.fromkeys(struct for struct, _ in READ_AS.values()))
    fields = {name: _portable(schema["properties"]) for name, schema in generated.items()}
    schemas: dict[str, Any] = {}
    for name, (struct, added) in READ_AS.items():
        properties = {**fields[struct.__name__], **added}
        schemas[name] = _object(properties, *properties)
    for spec in WRITABLE_SHEETS.values():
        name = spec.record_type.__name__
        editable = {key: {k: v for k, v in fields[name][key].items() if k != "default"} for key in spec.editable}
        schemas[f"{name}Create"] = _object(editable, *spec.required, additionalProperties=False)
        schemas[f"{name}Update"] = _object(editable, additionalProperties=False, minProperties=1)
    return schemas


SCHEMAS = {
    "Error": _object({"success": {"const": False}, "error": _object(
        {"code": STRING, "message": STRING, "traceId": STRING, "details": OBJECT}, "code", "message", "traceId")},
        "success", "error"),
    "Meta": _object({"total": {"type": "integer", "minimum": 0}, "page": {"type": "integer", "minimum": 1},
                     "perPage": {"type": "integer", "minimum": 1, "maximum": 100}, "facets": OBJECT},
                    "total", "page", "perPage"),
    "WriteMeta": _object({"commit": STRING, "pushed": {"type": "boolean"}}, "commit", "pushed"),
    "Sheet": _object({"name": STRING, "root": STRING, "pathTemplate": STRING, "typed": {"type": "boolean"},
                      "count": INTEGER, "changedInCommit": NULLABLE}, "name", "root", "pathTemplate", "typed", "count"),
    "SheetRecord": _object({"key": STRING, "path": STRING, "data": OBJECT}, "key", "path", "data"),
    "Change": _object({"path": STRING, "change": {"enum": ["added", "changed", "removed"]}, "sheet": NULLABLE,
                       "key": NULLABLE, "record": {"type": ["object", "null"]}}, "path", "change", "sheet", "key"),
    "ChangesMeta": _object({"from": STRING, "to": STRING, "commits": STRINGS, "commitCount": INTEGER,
                            "perPage": INTEGER, "next": NULLABLE}, "from", "to", "commits", "commitCount", "next"),
    "Health": _object({
        "status": {"enum": ["ok", "degraded"]}, "branch": STRING, "servedCommit": STRING, "headCommit": NULLABLE,
        "records": {"type": "object", "additionalProperties": INTEGER}, "degraded": STRINGS,
        "lastReload": {"type": ["object", "null"]}, "reloading": {"type": ["object", "null"]}, "push": OBJECT,
        "poll": _object({"enabled": {"type": "boolean"}, "intervalS": {"type": "number"}, "lastAt": NULLABLE,
                         "lastResult": NULLABLE, "lastError": STRING}),
        "revocations": _object({"count": INTEGER, "latestRevokedAt": NULLABLE, "changedInCommit": NULLABLE}),
        "diverted": STRINGS, "writeAck": {"enum": ["local", "remote"]},
        "notify": _object({"enabled": {"type": "boolean"}, "receivers": {"type": "array", "items": _object(
            {"url": STRING, "pending": INTEGER, "lastError": NULLABLE, "lastDeliveredAt": NULLABLE})}})},
        "status", "branch", "servedCommit", "records"),
}
"""The components' schemas but the records': the envelope, the metas, sheets, changes, health."""


def document() -> dict[str, Any]:
    """The routes by group, then what every data read shares, then the schemas."""
    data = {**_health(), **_records(), **_tags(), **_activity(), **_sheets(), **_changes()}
    _data_reads(data)
    return {
        "openapi": "3.1.0",
        "info": {"title": "hotreload", "version": __version__,
                 "description": "Public records of a gitsheets data repository, served from memory. "
                                "Every data response names the commit it was answered from (X-Data-Commit)."},
        "paths": {**data, **_events(), **_not_data()},
        "components": {"securitySchemes": {"writeToken": {"type": "http", "scheme": "bearer"}},
                       "schemas": {**SCHEMAS, **_record_schemas()}},
    }


class OpenApiResource:
    def __init__(self) -> None:
        self.doc = document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.doc
