"""``GET /api/openapi.json``: OpenAPI 3.1 of every public route. The internal
webhook (``/api/_internal/*``) is deliberately absent."""

from __future__ import annotations

from typing import Any

import falcon

from hotreload import __version__
from hotreload.data.records import STAGES


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
ITEM_WRITE_ERRORS = {**WRITE_ERRORS, **NOT_FOUND, **CONFLICT}


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
                                "responses": {"200": _ok("Health", _ref("Health"))}}},
        "/api/projects": {
            "get": {"operationId": "listProjects", "summary": "List projects with facets",
                    "parameters": [
                        _param("q", STRING, "Full-text search (title, summary, overview)"),
                        _param("stage", {"type": "string", "enum": list(STAGES)}, "Stage filter"),
                        _param("tag", {"type": "array", "items": {
                                   "type": "string", "pattern": r"^(topic|tech|event)\.[a-z0-9][a-z0-9._-]{0,79}$"}},
                               "Tag handle namespace.slug; repeatable, all must match",
                               style="form", explode=True),
                        *PAGING],
                    "responses": {"200": _ok("Projects, meta.total and meta.facets", _list("Project"), meta=True),
                                  **READ_ERRORS}},
            "post": _write("createProject", "Create a project (one commit)", "ProjectCreate",
                           {"201": _ok("The new project", _ref("Project"))}, {**WRITE_ERRORS, **CONFLICT}),
        },
        "/api/projects/{slug}": {
            "parameters": [SLUG],
            "get": {"operationId": "getProject", "summary": "One project with its tags",
                    "responses": {"200": _ok("Project", _ref("Project")), **NOT_FOUND}},
            "patch": _write("updateProject", "Edit a project (renaming moves its file)", "ProjectUpdate",
                            {"200": _ok("The project", _ref("Project"))}, ITEM_WRITE_ERRORS),
            "delete": _write("deleteProject", "Soft-delete a project (sets deletedAt)", None,
                             {"200": _ok("The deleted project", _ref("Project"))}, ITEM_WRITE_ERRORS),
        },
        "/api/people": {
            "get": {"operationId": "listPeople", "summary": "List people",
                    "parameters": [_param("q", STRING, "Full-text search (fullName, bio)"), *PAGING],
                    "responses": {"200": _ok("People and meta.total", _list("Person"), meta=True),
                                  **READ_ERRORS}},
            "post": _write("createPerson", "Create a person (one commit)", "PersonCreate",
                           {"201": _ok("The new person", _ref("Person"))}, {**WRITE_ERRORS, **CONFLICT}),
        },
        "/api/people/{slug}": {
            "parameters": [SLUG],
            "get": {"operationId": "getPerson", "summary": "One person with tags",
                    "responses": {"200": _ok("Person", _ref("Person")), **NOT_FOUND}},
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
        "/metrics": {"get": {"operationId": "getMetrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Prometheus text format", "headers": REQUEST_ID,
                                                   "content": {"text/plain": {"schema": STRING}}}}}},
        "/api/openapi.json": {"get": {"operationId": "getOpenApi", "summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1", "headers": REQUEST_ID,
                                                            "content": {"application/json": {
                                                                "schema": {"type": "object"}}}}}}},
    }
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
                "Health": {"type": "object", "required": ["status", "branch", "servedCommit", "records"],
                           "properties": {"status": {"enum": ["ok", "degraded"]}, "branch": STRING,
                                          "servedCommit": STRING, "headCommit": NULLABLE,
                                          "records": {"type": "object",
                                                      "additionalProperties": {"type": "integer"}},
                                          "degraded": {"type": "array", "items": STRING},
                                          "lastReload": {"type": ["object", "null"]},
                                          "push": {"type": "object"}}},
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
