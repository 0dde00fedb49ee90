"""The OpenAPI document: errors as application/problem+json, written deterministically."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

import app.security.hardening  # noqa: F401  (its 413/431 errors belong to the known codes)
from app.api.docs import PROBLEM_DESCRIPTIONS, account_schemas
from app.api.security_deps import (
    OPTIONAL_SECURITY,
    SECURITY_REQUIREMENT,
    SECURITY_SCHEMES,
    is_secured,
    takes_credentials,
)
from app.errors import GatewayError
from app.problems import PROBLEM_MEDIA_TYPE
from app.providers.base import ProviderPlugin
from app.route_walk import leaf_routes

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# Paths the load shedder never refuses (app/resilience/shedding.py).
_NEVER_SHED = ("/healthz", "/readyz")


# The first is what generated clients default to: the origin serving the document (a frontend
# behind the same host, Swagger UI's "Try it out"); the demo's address is there to pick.
SERVERS: list[dict[str, str]] = [
    {"url": "/", "description": "The gateway serving this document."},
    {"url": "http://127.0.0.1:8000", "description": "The demo (`make demo`)."},
]
_PROBLEM_SCHEMAS = ("#/components/schemas/Problem", "#/components/schemas/PointsProblem")
# pyproject.toml's license; an SPDX `identifier` (OpenAPI 3.1) since no LICENSE file has a URL.
LICENSE = {"name": "Apache-2.0", "identifier": "Apache-2.0"}
# A name only: the project publishes no repository, issue tracker or address to point at.
CONTACT = {"name": "points-gateway maintainers"}
# Every tag an operation uses, in the order the docs pages list them.
TAGS: list[dict[str, str]] = [
    {"name": "points", "description": "Balances: merged across providers, or one provider's."},
    {"name": "accounts", "description": "Link, list and unlink a user's provider accounts."},
    {"name": "providers", "description": "The providers this gateway serves and their state."},
    {"name": "health", "description": "Liveness and readiness probes; public."},
]


def _problem_content(schema: dict[str, Any]) -> dict[str, Any]:
    # Only problem bodies: /readyz's 503 is its Readiness report, served as application/json.
    content = schema.get("content", {})
    json_body = content.get("application/json", {})
    if json_body.get("schema", {}).get("$ref") in _PROBLEM_SCHEMAS:
        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    return schema


def problem_codes() -> list[str]:
    """Every problem `code` the gateway can answer with, sorted."""
    codes: set[str] = set()
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("app."):
            codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return sorted(codes)


def _common_problems(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    # Answers of the middleware in front of every route: header/body caps, shedding, bugs.
    statuses = [431, 500]
    if "requestBody" in operation:
        statuses.append(413)
    if path not in _NEVER_SHED:
        statuses.append(503)
    return {
        str(status): {
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": dict(_PROBLEM_REF)}},
        }
        for status in statuses
    }


def _only_account_schema(operation: dict[str, Any]) -> None:
    # An account body is exactly the provider's schema: drop the generic dict FastAPI merges in.
    for media in operation.get("requestBody", {}).get("content", {}).values():
        schema = media.get("schema", {})
        if "$ref" in schema:
            media["schema"] = {"$ref": schema["$ref"]}


def _restore_examples(route: APIRoute, operation: dict[str, Any]) -> None:
    # get_openapi drops every null (exclude_none), also inside examples: an ok balance's
    # `error: null` would vanish, and the example would contradict its own schema.
    for status, response in route.responses.items():
        for media_type, media in response.get("content", {}).items():
            if "examples" in media:
                content = operation["responses"][str(status)]["content"]
                content[media_type]["examples"] = media["examples"]


def build_openapi(app: FastAPI, plugins: Iterable[ProviderPlugin]) -> dict[str, Any]:
    """FastAPI's document with every 4xx/5xx answer re-typed as problem+json."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=SERVERS,
        tags=TAGS,
        contact=CONTACT,
        license_info=LICENSE,
    )
    paths = doc.get("paths", {})
    for route in leaf_routes(app.routes):
        if not (isinstance(route, APIRoute) and route.include_in_schema):
            continue
        if is_secured(route):
            security = SECURITY_REQUIREMENT
        elif takes_credentials(route):
            security = OPTIONAL_SECURITY
        else:
            security = []  # public, said outright: no requirement would read as "unspecified"
        for method in route.methods or ():
            operation = paths[route.path_format][method.lower()]
            operation["security"] = security
            _restore_examples(route, operation)
    for path, path_item in paths.items():
        for operation in path_item.values():
            _only_account_schema(operation)
            responses = operation.setdefault("responses", {})
            for status, response in _common_problems(path, operation).items():
                responses.setdefault(status, response)
            for status, response in responses.items():
                if status[0] in "45":
                    _problem_content(response)
    doc.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    schemas = doc["components"].setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(account_schemas(plugins))
    codes = problem_codes()
    for name in ("Problem", "PointsProblem"):
        # Listed, not an `enum`: new codes are an additive change, and a generated client must
        # not fail on one it does not know yet (it falls back on the HTTP status).
        code = schemas[name]["properties"]["code"]
        code["examples"] = codes
        code["description"] = (
            "Stable machine-readable error code; branch on this. Known codes: "
            + ", ".join(codes)
            + ". The set may grow within a major version: treat an unknown code by its status."
        )
    return doc


def install_openapi(app: FastAPI, plugins: Iterable[ProviderPlugin]) -> None:
    """Serve the post-processed document at /openapi.json (with these providers' accounts)."""
    known = list(plugins)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, known)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render_openapi(app: FastAPI) -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
