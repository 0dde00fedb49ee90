"""The committed openapi/openapi.json is a valid OpenAPI 3.1 document, complete per operation."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from app import __version__
from app.openapi_doc import problem_codes

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
PROBLEM = "application/problem+json"
PROGRAMS = ("benepia", "gafapay")
PER_PROGRAM = ("get_{}_points", "query_{}_points_once", "link_{}_account", "unlink_{}_account")
USER_SCOPED = {"get_user_points", "list_accounts"} | {
    op.format(name) for name in PROGRAMS for op in PER_PROGRAM
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
        elif op["operationId"] == "list_providers":
            # Public, with more for services: credentials optional (`{}` first).
            assert op["security"] == [{}, *expected]
        else:
            # Public, said outright: an operation without `security` leaves it unspecified.
            assert op["security"] == [], op["operationId"]


def test_account_bodies_are_exactly_one_programs_schema(doc: dict[str, Any]) -> None:
    bodies = {op["operationId"]: op for op in _operations(doc) if "requestBody" in op}
    expected = {
        f"{verb}_{name}_{what}"
        for name in PROGRAMS
        for verb, what in (("query", "points_once"), ("link", "account"))
    }
    assert set(bodies) == expected
    for name in PROGRAMS:
        model = f"{name.capitalize()}Account"
        for op_id in (f"query_{name}_points_once", f"link_{name}_account"):
            content = bodies[op_id]["requestBody"]["content"]["application/json"]
            assert content["schema"] == {"$ref": f"#/components/schemas/{model}"}, op_id
            assert set(content["examples"]) == {name}


def test_no_templated_path_overlaps_a_programs_path(doc: dict[str, Any]) -> None:
    # A `{provider}` path would also match `.../benepia`, with other methods than it documents.
    assert not [path for path in doc["paths"] if "{provider}" in path]


def test_secrets_are_write_only_and_bounded(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    password = schemas["BenepiaAccount"]["properties"]["benepia_password"]
    assert password["writeOnly"] is True
    assert (password["minLength"], password["maxLength"]) == (1, 256)
    token = schemas["GafapayAccount"]["properties"]["token"]["anyOf"][0]
    assert token["writeOnly"] is True
    # A JWT (three base64url parts), whose `sub` must be the account's id (described, not a rule
    # JSON Schema can state).
    assert token["pattern"] == r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$"
    assert token["maxLength"] == 4096
    assert "`sub` is `gafapay_user_id`" in token["description"]


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
    # Every field the answer always sends, nulls included (FastAPI drops nulls from a document).
    required = set(doc["components"]["schemas"]["Balance"]["required"])
    for example in examples.values():
        for balance in example["value"]["balances"]:
            assert required <= set(balance), balance


def test_every_tag_is_declared_and_described(doc: dict[str, Any]) -> None:
    used = {tag for op in _operations(doc) for tag in op["tags"]}
    declared = {tag["name"]: tag["description"] for tag in doc["tags"]}
    assert set(declared) == used
    assert all(declared.values())


def test_info_names_the_license_and_a_contact(doc: dict[str, Any]) -> None:
    pyproject = tomllib.loads((COMMITTED.parents[1] / "pyproject.toml").read_text("utf-8"))
    spdx = pyproject["project"]["license"]
    assert doc["info"]["license"] == {"name": spdx, "identifier": spdx}
    assert doc["info"]["contact"]["name"]


def test_servers_name_the_serving_origin_first_and_the_demo(doc: dict[str, Any]) -> None:
    assert [server["url"] for server in doc["servers"]] == ["/", "http://127.0.0.1:8000"]


def test_fields_always_sent_are_required(doc: dict[str, Any]) -> None:
    """Only fields left out of the JSON when empty are optional (generated types follow)."""
    schemas = doc["components"]["schemas"]
    optional = {
        name: sorted(set(schema.get("properties", {})) - set(schema.get("required", ())))
        for name, schema in schemas.items()
        if "properties" in schema and not name.endswith("Account")
    }
    problem_members = [
        "errors",
        "instance",
        "provider",
        "request_id",
        "retry_after",
        "upstream_code",
        "upstream_status",
    ]
    assert optional == {
        "Balance": ["details"],
        "CircuitInfo": [],
        "FieldError": [],
        "Health": [],
        "LinkedAccountInfo": [],
        "LinkedAccountList": [],
        "PointsAnswer": [],
        "PointsProblem": problem_members,
        "Problem": problem_members,
        "ProviderInfo": ["circuit"],
        "ProviderList": [],
        "Readiness": [],
    }


def test_enums_are_named_schemas(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["Balance"]["properties"]["status"] == {
        "$ref": "#/components/schemas/BalanceStatus"
    }
    assert schemas["Readiness"]["properties"]["status"] == {
        "$ref": "#/components/schemas/ReadinessStatus"
    }
    for name in ("BalanceStatus", "ReadinessStatus", "CheckStatus", "CircuitState"):
        assert schemas[name]["type"] == "string"
        assert schemas[name]["enum"]
