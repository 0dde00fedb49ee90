"""The OpenAPI document: errors as application/problem+json, written deterministically."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.problems import PROBLEM_MEDIA_TYPE

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _problem_content(schema: dict[str, Any]) -> dict[str, Any]:
    content = schema.get("content", {})
    if "application/json" in content:
        content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    return schema


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with every 4xx/5xx answer re-typed as problem+json."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status[0] in "45":
                    _problem_content(response)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve the post-processed document at /openapi.json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render_openapi(app: FastAPI) -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
