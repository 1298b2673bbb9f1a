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
    _param("page", {"type": "integer", "minimum": 1, "default": 1}, "Page number"),
    _param("perPage", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size"),
]
SLUG = _param("slug", {"type": "string"}, "The record's slug", "path")
DATA_COMMIT = {"X-Data-Commit": {"description": "Commit of the snapshot that answered",
                                 "schema": {"type": "string"}}}


def _ok(description: str) -> dict[str, Any]:
    return {"description": description, "headers": DATA_COMMIT,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Success"}}}}


ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
WRITE_ERRORS = {code: {"description": text, **ERROR} for code, text in (
    ("400", "Malformed body or unknown field"), ("401", "Authentication required"),
    ("404", "No such record"), ("409", "Slug already taken"), ("422", "Invalid field value"),
    ("503", "Writes not configured"))}


def document() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"writeToken": []}]
    paths: dict[str, Any] = {
        "/api/health": {"get": {"summary": "Service health, served and head commits, last reload",
                                "responses": {"200": _ok("Health")}}},
        "/api/projects": {
            "get": {"summary": "List projects with facets",
                    "parameters": [
                        _param("q", {"type": "string"}, "Full-text search (title, summary, overview)"),
                        _param("stage", {"type": "string", "enum": list(STAGES)}, "Stage filter"),
                        _param("tag", {"type": "array", "items": {"type": "string"}},
                               "Tag handle namespace.slug; repeatable, all must match",
                               style="form", explode=True),
                        *PAGING],
                    "responses": {"200": _ok("Projects, meta.total and meta.facets"),
                                  "400": {"description": "Bad parameter", **ERROR}}},
            "post": {"summary": "Create a project (one commit)", "security": bearer,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/ProjectInput"}}}},
                     "responses": {"201": _ok("The new project"), **WRITE_ERRORS}},
        },
        "/api/projects/{slug}": {
            "parameters": [SLUG],
            "get": {"summary": "One project with its tags and members",
                    "responses": {"200": _ok("Project"), "404": {"description": "Not found", **ERROR}}},
            "patch": {"summary": "Edit a project (renaming moves its file)", "security": bearer,
                      "requestBody": {"required": True, "content": {"application/json": {
                          "schema": {"$ref": "#/components/schemas/ProjectInput"}}}},
                      "responses": {"200": _ok("The project"), **WRITE_ERRORS}},
            "delete": {"summary": "Soft-delete a project (sets deletedAt)", "security": bearer,
                       "responses": {"200": _ok("The deleted project"), **WRITE_ERRORS}},
        },
        "/api/people": {
            "get": {"summary": "List people",
                    "parameters": [_param("q", {"type": "string"}, "Full-text search (fullName, bio)"),
                                   *PAGING],
                    "responses": {"200": _ok("People and meta.total")}},
            "post": {"summary": "Create a person (one commit)", "security": bearer,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"$ref": "#/components/schemas/PersonInput"}}}},
                     "responses": {"201": _ok("The new person"), **WRITE_ERRORS}},
        },
        "/api/people/{slug}": {
            "parameters": [SLUG],
            "get": {"summary": "One person with tags and projects",
                    "responses": {"200": _ok("Person"), "404": {"description": "Not found", **ERROR}}},
            "patch": {"summary": "Edit a person", "security": bearer,
                      "requestBody": {"required": True, "content": {"application/json": {
                          "schema": {"$ref": "#/components/schemas/PersonInput"}}}},
                      "responses": {"200": _ok("The person"), **WRITE_ERRORS}},
            "delete": {"summary": "Soft-delete a person", "security": bearer,
                       "responses": {"200": _ok("The deleted person"), **WRITE_ERRORS}},
        },
        "/api/tags": {"get": {"summary": "All tags with assignment counts",
                              "parameters": [_param("namespace", {"type": "string",
                                                                  "enum": ["topic", "tech", "event"]},
                                                    "Namespace filter")],
                              "responses": {"200": _ok("Tags")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {}}}}}},
        "/api/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "hotreload", "version": __version__,
                 "description": "Public records of a gitsheets data repository, served from memory."},
        "paths": paths,
        "components": {
            "securitySchemes": {"writeToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Success": {"type": "object", "required": ["success", "data"],
                            "properties": {"success": {"const": True}, "data": {},
                                           "meta": {"type": "object"}}},
                "Error": {"type": "object", "required": ["success", "error"], "properties": {
                    "success": {"const": False},
                    "error": {"type": "object", "required": ["code", "message", "traceId"],
                              "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                                             "traceId": {"type": "string"},
                                             "details": {"type": "object"}}}}},
                "ProjectInput": {"type": "object", "additionalProperties": False, "properties": {
                    "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{1,79}$"},
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "summary": {"type": ["string", "null"], "maxLength": 280},
                    "overview": {"type": ["string", "null"]},
                    "stage": {"type": "string", "enum": list(STAGES)}}},
                "PersonInput": {"type": "object", "additionalProperties": False, "properties": {
                    "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,49}$"},
                    "fullName": {"type": "string", "minLength": 1, "maxLength": 120},
                    "bio": {"type": ["string", "null"], "maxLength": 10000}}},
            },
        },
    }


class OpenApiResource:
    def __init__(self) -> None:
        self.doc = document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.doc
