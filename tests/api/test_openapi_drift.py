"""The committed openapi/openapi.json is exactly what `points-gateway openapi` writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.main import create_app
from app.openapi_doc import render_openapi
from app.sandbox.demo import DEMO_GAFAPAY_TOKEN, DEMO_IMP_SECRET
from tests.conftest import SECRETS, make_settings, make_store, serve_in_process

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
REGENERATE = "run: points-gateway openapi --output openapi/openapi.json"
OPERATION_IDS = {"get_user_points", "get_benepia_points", "list_providers", "get_health"}
PROBLEM = "application/problem+json"
# Not problems: /readyz answers 503 with its Readiness report (application/json).
NOT_PROBLEMS = {("/readyz", "get", "503")}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    assert main(["openapi", "--output", str(path)]) == 0
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def doc(generated: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(generated)
    return parsed


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_committed_document_matches_the_generated_one(generated: str) -> None:
    assert COMMITTED.is_file(), f"openapi/openapi.json is missing; {REGENERATE}"
    committed = COMMITTED.read_text(encoding="utf-8")
    assert committed == generated, f"openapi/openapi.json is out of date; {REGENERATE}"


def test_document_is_openapi_json(doc: dict[str, Any]) -> None:
    assert str(doc["openapi"]).startswith("3.")
    assert doc["info"]["title"] == "points-gateway"


def test_operation_ids(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    assert set(ids) >= OPERATION_IDS


def test_every_error_response_is_problem_json(doc: dict[str, Any]) -> None:
    checked = 0
    for path, method, operation in operations(doc):
        for status, response in operation["responses"].items():
            if status[0] in "45" and (path, method, status) not in NOT_PROBLEMS:
                content = response.get("content", {})
                assert list(content) == [PROBLEM], f"{method.upper()} {path} {status}: {content}"
                checked += 1
    assert checked > 0


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    schemas = doc.get("components", {}).get("schemas", {})
    prefix = "#/components/schemas/"
    for ref in set(refs(doc)):
        assert ref.startswith(prefix), ref
        assert ref.removeprefix(prefix) in schemas, f"dangling {ref}"


def test_no_secrets_in_the_document(generated: str) -> None:
    for secret in (*SECRETS, DEMO_IMP_SECRET, DEMO_GAFAPAY_TOKEN):
        assert secret not in generated


async def test_served_document_is_the_committed_one(generated: str) -> None:
    # The document must not depend on configuration: a configured app serves the same one.
    app = create_app(make_settings(), store=make_store())
    assert render_openapi(app) == generated
    async with serve_in_process(app) as client:
        resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    assert resp.json() == json.loads(generated)
    for secret in SECRETS:
        assert secret not in resp.text
