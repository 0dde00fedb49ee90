"""What the shipped definitions promise beyond one answer: they load, they are documented in the
OpenAPI document like any provider, their accounts are ids only, and their defaults are the
documented ones."""

from __future__ import annotations

import pytest

from app.cli import main
from app.definitions.loader import read_definition
from app.security.api_keys import hash_key
from tests.definitions.shipped import (
    CASES,
    SHIPPED,
    SQUARE,
    TALON,
    YOTPO,
    Case,
    gateway_settings,
    serve_shipped,
)
from tests.support.problems import assert_problem

SHIPPED_CASES = pytest.mark.parametrize("case", CASES, ids=str)
WRITER_KEY = "pgk-shipped-writer-0123456789abcdef0123"
TRUSTED_KEY = "pgk-shipped-trusted-0123456789abcdef012"
KEYS = [
    {"name": "writer", "sha256": hash_key(WRITER_KEY), "scopes": ["points:read", "accounts:write"]},
    {
        "name": "trusted",
        "sha256": hash_key(TRUSTED_KEY),
        "scopes": ["points:read", "accounts:write", "accounts:link_trusted"],
    },
]


def test_providers_check_passes_on_the_shipped_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "check", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    for case in CASES:
        assert f"points-gateway: {case.name}: ok" in out


@SHIPPED_CASES
def test_each_file_names_its_sources_and_says_it_is_unverified(case: Case) -> None:
    text = (SHIPPED / f"{case.name}.yaml").read_text()
    first, *rest = text.splitlines()
    assert first == "# yaml-language-server: $schema=../../../docs/provider-definition.schema.json"
    header = "\n".join(line for line in rest if line.startswith("#"))
    assert "Unverified against the live API" in header
    assert "https://" in header


@SHIPPED_CASES
def test_the_default_base_url_is_the_documented_one(case: Case) -> None:
    settings = read_definition(SHIPPED / f"{case.name}.yaml").settings_model
    field = settings.model_fields["base_url"]
    if case.default_base_url is None:
        assert field.is_required()
    else:
        assert str(field.default) == case.default_base_url


@SHIPPED_CASES
async def test_the_openapi_document_has_the_providers_operations(case: Case) -> None:
    async with serve_shipped(case) as gw:
        doc = (await gw.client.get("/openapi.json")).json()
    operations = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    assert {
        f"get_{case.name}_points",
        f"query_{case.name}_points_once",
        f"link_{case.name}_account",
        f"unlink_{case.name}_account",
    } <= operations
    schema = doc["components"]["schemas"][case.schema]
    assert set(schema["properties"]) == set(case.account)
    assert not any(p.get("writeOnly") for p in schema["properties"].values())


@SHIPPED_CASES
async def test_ids_are_linked_only_by_a_trusted_service(case: Case) -> None:
    settings = gateway_settings(case, auth={"mode": "required", "api_keys": KEYS})
    async with serve_shipped(case, settings) as gw:
        link = f"/users/zed/accounts/{case.name}"
        refused = await gw.client.put(link, json=case.account, headers={"x-api-key": WRITER_KEY})
        linked = await gw.client.put(link, json=case.account, headers={"x-api-key": TRUSTED_KEY})
        read = await gw.client.get(
            f"/users/zed/points/{case.name}", headers={"x-api-key": TRUSTED_KEY}
        )
        calls = gw.sandbox.balance_calls
    assert_problem(refused, 403, "ownership_proof_required")
    assert linked.status_code == 201, linked.text
    assert read.json()["points"] == case.points
    # Linking asks the provider nothing; the one read does.
    assert calls == 1


@SHIPPED_CASES
async def test_a_one_shot_query_reads_the_given_ids(case: Case) -> None:
    async with serve_shipped(case) as gw:
        response = await gw.client.post(f"/users/zed/points/{case.name}", json=case.account)
    assert response.status_code == 200, response.text
    assert response.json()["points"] == case.points


async def test_talon_one_reads_an_unknown_program_as_a_refusal() -> None:
    """Talon.One answers 404 for an unknown program as for an unknown profile (a documented
    ambiguity, written down in the definition's header)."""
    async with serve_shipped(TALON, gateway_settings(TALON, {"program_id": "34"})) as gw:
        response = await gw.client.get("/users/alice/points/talon_one")
    assert_problem(response, 422, "provider_rejected")


async def test_yotpo_emails_are_linked_lowercased_and_checked() -> None:
    async with serve_shipped(YOTPO) as gw:
        linked = await gw.client.put("/users/zed/accounts/yotpo", json={"email": "Jane@Doe.COM"})
        response = await gw.client.get("/users/zed/points/yotpo")
        sent = gw.upstream.requests[-1]
    assert linked.status_code == 201, linked.text
    assert response.json()["points"] == YOTPO.points
    assert sent.url.params["customer_email"] == "jane@doe.com"


async def test_square_pins_the_api_version_of_its_documented_example() -> None:
    async with serve_shipped(SQUARE) as gw:
        response = await gw.client.get("/users/alice/points/square_loyalty")
        sent = gw.upstream.requests[-1]
    assert response.status_code == 200, response.text
    assert sent.headers["square-version"] == "2023-01-19"
    assert sent.url.path == f"/v2/loyalty/accounts/{SQUARE.account['loyalty_account_id']}"
