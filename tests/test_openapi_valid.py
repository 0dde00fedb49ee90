"""The committed openapi/openapi.json is a valid OpenAPI 3.1 document, complete per operation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from app import __version__
from app.openapi_doc import problem_codes

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
PROBLEM = "application/problem+json"
USER_SCOPED = {
    "get_user_points",
    "get_user_provider_points",
    "list_accounts",
    "link_account",
    "unlink_account",
    "query_points_once",
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return parsed


def _operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in doc["paths"].values() for op in item.values()]


def test_document_validates_as_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_document_carries_the_package_version(doc: dict[str, Any]) -> None:
    assert doc["info"]["version"] == __version__


def test_every_operation_is_documented(doc: dict[str, Any]) -> None:
    for op in _operations(doc):
        assert op["operationId"].isidentifier()
        assert op["operationId"].islower()
        assert len(op["tags"]) == 1, op["operationId"]
        assert op["summary"], op["operationId"]
        assert op["description"], op["operationId"]
        assert {"431", "500"} <= set(op["responses"]), op["operationId"]


def test_errors_share_the_problem_schema(doc: dict[str, Any]) -> None:
    problem = "#/components/schemas/Problem"
    allowed = {problem, "#/components/schemas/PointsProblem"}
    for op in _operations(doc):
        for status, response in op["responses"].items():
            if status[0] in "45" and (op["operationId"], status) != ("get_readiness", "503"):
                assert response["content"][PROBLEM]["schema"]["$ref"] in allowed
    code = doc["components"]["schemas"]["Problem"]["properties"]["code"]
    assert code["examples"] == problem_codes()
    assert "enum" not in code  # an open set: a new code must not break generated clients


def test_user_scoped_operations_need_credentials(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT: `sub` is the user id.",
    }
    assert schemes["APIKeyHeader"]["type"] == "apiKey"
    for op in _operations(doc):
        expected: list[dict[str, list[str]]] = [{"HTTPBearer": []}, {"APIKeyHeader": []}]
        if op["operationId"] in USER_SCOPED:
            assert op["security"] == expected, op["operationId"]
        else:
            assert "security" not in op, op["operationId"]


def test_account_bodies_are_named_schemas(doc: dict[str, Any]) -> None:
    bodies = [op for op in _operations(doc) if "requestBody" in op]
    assert {op["operationId"] for op in bodies} == {"link_account", "query_points_once"}
    for op in bodies:
        content = op["requestBody"]["content"]["application/json"]
        assert content["schema"] == {
            "oneOf": [
                {"$ref": "#/components/schemas/BenepiaAccount"},
                {"$ref": "#/components/schemas/GafapayAccount"},
            ]
        }
        assert set(content["examples"]) == {"benepia", "gafapay"}


def test_decimals_are_strings(doc: dict[str, Any]) -> None:
    found = 0
    for schema in doc["components"]["schemas"].values():
        for prop in schema.get("properties", {}).values():
            for variant in [prop, *prop.get("anyOf", [])]:
                if variant.get("format") == "decimal":
                    assert variant["type"] == "string"
                    assert variant["pattern"]
                    found += 1
    assert found >= 1


def test_points_examples(doc: dict[str, Any]) -> None:
    ok = doc["paths"]["/users/{user_id}/points"]["get"]["responses"]["200"]
    examples = ok["content"]["application/json"]["examples"]
    assert examples["complete"]["value"]["complete"] is True
    assert examples["partial"]["value"]["complete"] is False
