"""``GET /api/openapi.json``: OpenAPI 3.1 of every public route. The internal
webhook (``/api/_internal/*``) is deliberately absent."""

from __future__ import annotations

from typing import Any

import falcon

from hotreload import __version__
from hotreload.data.records import ROLE_STATUSES, STAGES


def _param(name: str, schema: dict[str, Any], description: str, where: str = "query",
           **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, "description": description,
            "required": where == "path", **extra}


PAGING = [
    _param("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1}, "Page number"),
    _param("perPage", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size"),
]
SLUG = _param("slug", {"type": "string"}, "The record's slug", "path")
STRING = {"type": "string"}
NULLABLE = {"type": ["string", "null"]}
REQUEST_ID = {"X-Request-Id": {"description": "The request's trace id (the error's traceId)", "schema": STRING}}
DATA_COMMIT = {"X-Data-Commit": {"description": "Commit of the snapshot that answered", "schema": STRING}}
HEADERS = {**REQUEST_ID, **DATA_COMMIT}


def _ok(description: str, data: dict[str, Any], meta: bool = False) -> dict[str, Any]:
    properties: dict[str, Any] = {"success": {"const": True}, "data": data}
    required = ["success", "data"]
    if meta:
        properties["meta"] = {"$ref": "#/components/schemas/Meta"}
        required.append("meta")
    return {"description": description, "headers": HEADERS, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "headers": {**REQUEST_ID, **(headers or {})},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(item: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(item)}


READ_ERRORS = {"400": _error("A query parameter is malformed (the message names it)")}
NOT_FOUND = {"404": _error("No live record with that slug")}
MOVED = {"301": _error("Renamed: the slug-history entry says where it answers now (details.location)",
                       {"Location": {"description": "The new URL, the rest of the path and query kept",
                                     "schema": STRING},
                        "Cache-Control": {"description": "public, max-age=300", "schema": STRING},
                        **DATA_COMMIT})}
LEGACY = [
    _param("legacyId", {"type": "integer", "minimum": 1, "maximum": 999_999_999},
           "The record with this legacy id (the original site's numeric id), as a list of 0 or 1"),
    _param("ID", {"type": "integer", "minimum": 1, "maximum": 999_999_999},
           "The original site's link form: 301 to the record with this legacy id (404 when none)"),
]
TAG_HANDLE_SCHEMA = {"type": "string", "pattern": r"^(topic|tech|event)\.[a-z0-9][a-z0-9._-]{0,79}$"}
WRITE_ERRORS = {
    "400": _error("Malformed JSON, too deep, not an object, or an unknown field (the message names it)"),
    "401": _error("Authentication required (a bearer token)",
                  {"WWW-Authenticate": {"description": "Bearer", "schema": STRING}}),
    "413": _error("Body larger than 256 KiB"),
    "415": _error("Content-Type is not application/json"),
    "422": _error("A field fails validation (the message names it); nothing was committed"),
    "429": _error("Too many failed authentications from this address",
                  {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}),
    "503": _error("Writes not configured, or refused while the branch head does not build"),
}
CONFLICT = {"409": _error("The slug is already taken")}
MIN_COMMIT = _param(
    "X-Data-Min-Commit", {"type": "string", "pattern": "^[0-9a-fA-F]{40}$"},
    "Read-your-writes across replicas: answer only from a snapshot that contains this commit (it or a "
    "descendant), such as the X-Data-Commit of your write. A replica that does not serve it yet reloads and "
    "waits (CFP_DATA_MIN_COMMIT_WAIT_SECONDS), else answers 503 with Retry-After", "header")
NOT_YET = _error("This replica does not serve X-Data-Min-Commit yet, even after reloading: retry",
                 {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
                  **DATA_COMMIT})
ITEM_WRITE_ERRORS = {**WRITE_ERRORS, **NOT_FOUND, **CONFLICT}
CACHING = {
    "ETag": {"description": '"<commit>-<hash of path and query>": the commit answered from (as '
                            "X-Data-Commit) and the request; a reload or write changes it", "schema": STRING},
    "Cache-Control": {"description": "public, no-cache: keep it, and revalidate with If-None-Match",
                      "schema": STRING},
    "Vary": {"description": "X-Data-Min-Commit", "schema": STRING}}
IF_NONE_MATCH = _param("If-None-Match", STRING, "An ETag this route gave (or *): 304, no body, when the "
                       "answer would be the same", "header")
NOT_MODIFIED = {"description": "Not modified: the served commit answers this request as the ETag given said",
                "headers": {**HEADERS, **CACHING}}


def _write(operation_id: str, summary: str, body: str | None, ok: dict[str, Any],
           errors: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary,
                                 "security": [{"writeToken": []}], "responses": {**ok, **errors}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return operation


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/health": {"get": {"operationId": "getHealth",
                                "summary": "Service health, served and head commits, last reload",
                                "responses": {"200": _ok("Health", _ref("Health")), "503": _error(
                                    "Not serving: `starting` (loading the data) or `stopping` (after SIGTERM)")}}},
        "/api/projects": {
            "get": {"operationId": "listProjects", "summary": "List projects with facets",
                    "parameters": [
                        _param("q", STRING, "Full-text search (title, summary, overview)"),
                        _param("stage", {"type": "string", "enum": list(STAGES)}, "Stage filter"),
                        _param("tag", {"type": "array", "items": TAG_HANDLE_SCHEMA},
                               "Tag handle namespace.slug; repeatable, all must match",
                               style="form", explode=True),
                        *LEGACY, *PAGING],
                    "responses": {"200": _ok("Projects, meta.total and meta.facets", _list("Project"), meta=True),
                                  **MOVED, **READ_ERRORS, "404": _error("No project with that legacy id (ID)")}},
            "post": _write("createProject", "Create a project (one commit)", "ProjectCreate",
                           {"201": _ok("The new project", _ref("Project"))}, {**WRITE_ERRORS, **CONFLICT}),
        },
        "/api/projects/{slug}": {
            "parameters": [SLUG],
            "get": {"operationId": "getProject", "summary": "One project with its tags",
                    "responses": {"200": _ok("Project", _ref("Project")), **MOVED, **NOT_FOUND}},
            "patch": _write("updateProject", "Edit a project (renaming moves its file)", "ProjectUpdate",
                            {"200": _ok("The project", _ref("Project"))}, ITEM_WRITE_ERRORS),
            "delete": _write("deleteProject", "Soft-delete a project (sets deletedAt)", None,
                             {"200": _ok("The deleted project", _ref("Project"))}, ITEM_WRITE_ERRORS),
        },
        "/api/people": {
            "get": {"operationId": "listPeople", "summary": "List people",
                    "parameters": [_param("q", STRING, "Full-text search (fullName, bio)"), *LEGACY, *PAGING],
                    "responses": {"200": _ok("People and meta.total", _list("Person"), meta=True),
                                  **MOVED, **READ_ERRORS, "404": _error("No person with that legacy id (ID)")}},
            "post": _write("createPerson", "Create a person (one commit)", "PersonCreate",
                           {"201": _ok("The new person", _ref("Person"))}, {**WRITE_ERRORS, **CONFLICT}),
        },
        "/api/people/{slug}": {
            "parameters": [SLUG],
            "get": {"operationId": "getPerson", "summary": "One person with tags",
                    "responses": {"200": _ok("Person", _ref("Person")), **MOVED, **NOT_FOUND}},
            "patch": _write("updatePerson", "Edit a person", "PersonUpdate",
                            {"200": _ok("The person", _ref("Person"))}, ITEM_WRITE_ERRORS),
            "delete": _write("deletePerson", "Soft-delete a person", None,
                             {"200": _ok("The deleted person", _ref("Person"))}, ITEM_WRITE_ERRORS),
        },
        "/api/tags": {"get": {"operationId": "listTags", "summary": "All tags with assignment counts",
                              "parameters": [_param("namespace", {"type": "string",
                                                                  "enum": ["topic", "tech", "event"]},
                                                    "Namespace filter")],
                              "responses": {"200": _ok("Tags", _list("Tag")), **READ_ERRORS}}},
        "/api/tags/{handle}": {"get": {
            "operationId": "getTag", "summary": "One tag with its live projects and people",
            "parameters": [_param("handle", TAG_HANDLE_SCHEMA, "namespace.slug", "path")],
            "responses": {"200": _ok("Tag", _ref("TagDetail")), **MOVED, **READ_ERRORS,
                          "404": _error("No such tag")}}},
        "/api/projects/{slug}/updates": {"get": {
            "operationId": "listProjectUpdates", "summary": "A project's updates, highest number first",
            "parameters": [SLUG, *PAGING],
            "responses": {"200": _ok("Updates", _list("ProjectUpdateEntry"), meta=True), **MOVED, **READ_ERRORS,
                          **NOT_FOUND}}},
        "/api/projects/{slug}/updates/{number}": {"get": {
            "operationId": "getProjectUpdate", "summary": "One update of a project",
            "parameters": [SLUG, _param("number", {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"},
                                         "The update's number (1, 2, ...)", "path")],
            "responses": {"200": _ok("Update", _ref("ProjectUpdateEntry")), **MOVED, **READ_ERRORS,
                          "404": _error("No such project or update")}}},
        "/api/projects/{slug}/buzz": {"get": {
            "operationId": "listProjectBuzz", "summary": "Press about a project, newest first",
            "parameters": [SLUG, *PAGING],
            "responses": {"200": _ok("Buzz", _list("ProjectBuzz"), meta=True), **MOVED, **READ_ERRORS,
                          **NOT_FOUND}}},
        "/api/projects/{slug}/help-wanted": {"get": {
            "operationId": "listProjectHelpWanted", "summary": "A project's help-wanted roles, newest first",
            "parameters": [SLUG, _param("status", {"type": "string", "enum": list(ROLE_STATUSES)},
                                        "Only roles with this status (default: every role)"), *PAGING],
            "responses": {"200": _ok("Roles", _list("HelpWantedRole"), meta=True), **MOVED, **READ_ERRORS,
                          **NOT_FOUND}}},
        "/api/help-wanted": {"get": {
            "operationId": "searchHelpWanted", "summary": "Help-wanted roles of live projects",
            "parameters": [
                _param("q", STRING, "Full-text search (title, description); best match first"),
                _param("status", {"type": "string", "enum": list(ROLE_STATUSES), "default": "open"}, "Status"),
                _param("tag", {"type": "array", "items": TAG_HANDLE_SCHEMA},
                       "Tag handle; repeatable, all must match", style="form", explode=True),
                _param("commitmentMax", {"type": "integer", "minimum": 0, "maximum": 168},
                       "At most this many hours per week"),
                *PAGING],
            "responses": {"200": _ok("Roles", _list("HelpWantedRole"), meta=True), **READ_ERRORS}}},
        "/api/sheets": {"get": {
            "operationId": "listSheets", "summary": "Every sheet the data repository declares",
            "responses": {"200": _ok("Sheets", _list("Sheet"))}}},
        "/api/sheets/{sheet}": {"get": {
            "operationId": "listSheetRecords", "summary": "The records of one sheet, typed or not, by path",
            "parameters": [_param("sheet", STRING, "The sheet's name", "path"), *PAGING],
            "responses": {"200": _ok("Records", _list("SheetRecord"), meta=True), **READ_ERRORS,
                          "404": _error("No such sheet")}}},
        "/api/sheets/{sheet}/{key}": {"get": {
            "operationId": "getSheetRecord",
            "summary": "One record: key is its path below the sheet's root, without .toml (may hold '/')",
            "parameters": [_param("sheet", STRING, "The sheet's name", "path"),
                           _param("key", STRING, "The record's path below the root, without .toml", "path")],
            "responses": {"200": _ok("Record", _ref("SheetRecord")), "404": _error("No such sheet or record")}}},
        "/metrics": {"get": {"operationId": "getMetrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Prometheus text format", "headers": REQUEST_ID,
                                                   "content": {"text/plain": {"schema": STRING}}}}}},
        "/api/openapi.json": {"get": {"operationId": "getOpenApi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1", "headers": REQUEST_ID,
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
    }
    for path, item in paths.items():  # read-your-writes across replicas, on every data read
        if path in ("/metrics", "/api/openapi.json"):
            continue
        get = item["get"]
        get["parameters"] = [*get.get("parameters", []), MIN_COMMIT]
        get["responses"].setdefault("400", _error("A query parameter or header is malformed (the message "
                                                  "names it)"))
        get["responses"]["503"] = NOT_YET
        if path == "/api/health":
            continue
        get["parameters"].append(IF_NONE_MATCH)  # conditional reads (api/conditional.py)
        get["responses"]["200"] = {**get["responses"]["200"], "headers": {**HEADERS, **CACHING}}
        get["responses"]["304"] = NOT_MODIFIED
    project_fields = {"slug": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_-]{1,79}$"},
                      "title": {"type": "string", "minLength": 1, "maxLength": 200},
                      "summary": {"type": ["string", "null"], "maxLength": 280},
                      "overview": NULLABLE,
                      "stage": {"type": "string", "enum": list(STAGES)}}
    person_fields = {"slug": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]{1,49}$"},
                     "fullName": {"type": "string", "minLength": 1, "maxLength": 120},
                     "bio": {"type": ["string", "null"], "maxLength": 10000}}
    record = {"id": STRING, "createdAt": STRING, "updatedAt": STRING}
    return {
        "openapi": "3.1.0",
        "info": {"title": "hotreload", "version": __version__,
                 "description": "Public records of a gitsheets data repository, served from memory. "
                                "Every data response names the commit it was answered from (X-Data-Commit)."},
        "paths": paths,
        "components": {
            "securitySchemes": {"writeToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["success", "error"], "properties": {
                    "success": {"const": False},
                    "error": {"type": "object", "required": ["code", "message", "traceId"],
                              "properties": {"code": STRING, "message": STRING, "traceId": STRING,
                                             "details": {"type": "object"}}}}},
                "Meta": {"type": "object", "required": ["total", "page", "perPage"], "properties": {
                    "total": {"type": "integer", "minimum": 0}, "page": {"type": "integer", "minimum": 1},
                    "perPage": {"type": "integer", "minimum": 1, "maximum": 100},
                    "facets": {"type": "object"}}},
                "Project": {"type": "object", "required": ["id", "slug", "title", "stage"], "properties": {
                    **record, **{k: v for k, v in project_fields.items() if k != "slug"}, "slug": STRING,
                    "legacyId": {"type": ["integer", "null"]}, "deletedAt": NULLABLE,
                    "tags": {"type": "array", "items": STRING}}},
                "Person": {"type": "object", "required": ["id", "slug", "fullName"], "properties": {
                    **record, "slug": STRING, "fullName": STRING, "bio": NULLABLE,
                    "legacyId": {"type": ["integer", "null"]}, "deletedAt": NULLABLE,
                    "tags": {"type": "array", "items": STRING}}},
                "Tag": {"type": "object", "required": ["namespace", "slug", "title"], "properties": {
                    "namespace": STRING, "slug": STRING, "title": STRING}},
                "TagDetail": {"type": "object", "required": ["handle", "projects", "people"], "properties": {
                    "handle": STRING, "namespace": STRING, "slug": STRING, "title": STRING,
                    "projects": {"type": "array", "items": {"type": "object"}},
                    "people": {"type": "array", "items": {"type": "object"}}}},
                "ProjectUpdateEntry": {"type": "object", "required": ["id", "projectId", "number", "body", "project"],
                                  "properties": {**record, "projectId": STRING, "number": {"type": "integer"},
                                                 "body": STRING, "authorId": NULLABLE, "project": STRING}},
                "ProjectBuzz": {"type": "object", "required": ["id", "slug", "headline", "url", "publishedAt"],
                                "properties": {**record, "projectId": STRING, "slug": STRING, "headline": STRING,
                                               "url": STRING, "publishedAt": STRING, "summary": NULLABLE,
                                               "project": STRING}},
                "HelpWantedRole": {"type": "object", "required": ["id", "title", "status", "project"],
                                   "properties": {**record, "projectId": STRING, "title": STRING,
                                                  "description": STRING,
                                                  "status": {"enum": list(ROLE_STATUSES)},
                                                  "commitmentHoursPerWeek": {"type": ["integer", "null"]},
                                                  "project": STRING, "tags": {"type": "array", "items": STRING},
                                                  "interestCount": {"type": "integer", "minimum": 0}}},
                "Sheet": {"type": "object", "required": ["name", "root", "pathTemplate", "typed", "count"],
                          "properties": {"name": STRING, "root": STRING, "pathTemplate": STRING,
                                         "typed": {"type": "boolean"}, "count": {"type": "integer"},
                                         "changedInCommit": NULLABLE}},
                "SheetRecord": {"type": "object", "required": ["key", "path", "data"], "properties": {
                    "key": STRING, "path": STRING, "data": {"type": "object"}}},
                "Health": {"type": "object", "required": ["status", "branch", "servedCommit", "records"],
                           "properties": {"status": {"enum": ["ok", "degraded"]}, "branch": STRING,
                                          "servedCommit": STRING, "headCommit": NULLABLE,
                                          "records": {"type": "object",
                                                      "additionalProperties": {"type": "integer"}},
                                          "degraded": {"type": "array", "items": STRING},
                                          "lastReload": {"type": ["object", "null"]},
                                          "reloading": {"type": ["object", "null"]},
                                          "push": {"type": "object"},
                                          "poll": {"type": "object", "properties": {
                                              "enabled": {"type": "boolean"}, "intervalS": {"type": "number"},
                                              "lastAt": NULLABLE, "lastResult": NULLABLE,
                                              "lastError": STRING}},
                                          "revocations": {"type": "object", "properties": {
                                              "count": {"type": "integer"}, "latestRevokedAt": NULLABLE,
                                              "changedInCommit": NULLABLE}}}},
                "ProjectCreate": {"type": "object", "additionalProperties": False,
                                  "required": ["slug", "title"], "properties": project_fields},
                "ProjectUpdate": {"type": "object", "additionalProperties": False, "minProperties": 1,
                                  "properties": project_fields},
                "PersonCreate": {"type": "object", "additionalProperties": False,
                                 "required": ["slug", "fullName"], "properties": person_fields},
                "PersonUpdate": {"type": "object", "additionalProperties": False, "minProperties": 1,
                                 "properties": person_fields},
            },
        },
    }


class OpenApiResource:
    def __init__(self) -> None:
        self.doc = document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.doc
