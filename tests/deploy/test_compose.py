"""docker-compose.yml: valid by the Compose Specification, secrets required from the
environment, and every POINTS_* variable one the gateway reads.

The schema is the Compose Specification's compose-spec.json as vendored by the pinned
check-jsonschema test dependency (its builtin `vendor.compose-spec`), checked against the
SHA-256 that package records for it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest

from app.gateway import plan_gateway
from app.sandbox.serve import sandbox_gateway_env
from app.settings import Settings
from tests.deploy.support import (
    COMPOSE_FILE,
    EVERY_INTERFACE,
    MissingVariable,
    compose,
    dummy_secrets,
    interpolate,
    referenced_variables,
    service_command,
    service_env,
    setting_problem,
)

VENDOR = "check_jsonschema.builtin_schemas.vendor"
SECRETS = (
    "POINTS_PROVIDERS__BENEPIA__IMP_KEY",
    "POINTS_PROVIDERS__BENEPIA__IMP_SECRET",
    "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID",
    "POINTS_PROVIDERS__GAFAPAY__TOKEN",
    "POINTS_SECRET_KEYS",
    "POINTS_AUTH__JWT_SECRET",
    "POINTS_METRICS_TOKEN",
)


def compose_schema() -> dict[str, Any]:
    vendor = resources.files(VENDOR)
    raw = vendor.joinpath("compose-spec.json").read_bytes()
    recorded = vendor.joinpath("sha256", "compose-spec.sha256").read_text().strip()
    assert hashlib.sha256(raw).hexdigest() == recorded, "the vendored schema was altered"
    schema = json.loads(raw)
    assert isinstance(schema, dict)
    assert schema["title"] == "Compose Specification"
    return schema


def schema_errors(document: Any) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def interpolated(value: Any, env: dict[str, str]) -> Any:
    """The whole document with every string interpolated, as compose does before validating."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, dict):
        return {k: interpolated(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolated(v, env) for v in value]
    return value


def test_compose_file_is_valid_by_the_compose_specification() -> None:
    assert schema_errors(compose()) == []
    assert schema_errors(interpolated(compose(), dummy_secrets())) == []


def test_the_schema_does_reject_a_broken_file() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["gateway"]["enviroment"] = {"POINTS_LOG_LEVEL": "info"}
    broken["services"]["gateway"]["depends_on"]["migrate"]["condition"] = "when_it_feels_like_it"
    errors = schema_errors(broken)
    assert any("enviroment" in e for e in errors), errors
    assert any("when_it_feels_like_it" in e for e in errors), errors


def test_services_and_their_order_of_start() -> None:
    services = compose()["services"]
    assert {"gateway", "migrate", "postgres", "redis", "sandbox"} <= services.keys()
    for always in ("gateway", "migrate", "postgres", "redis"):
        assert "profiles" not in services[always], f"{always} runs without a profile"
    assert services["sandbox"]["profiles"] == ["sandbox"]

    gateway = services["gateway"]
    assert gateway["build"] == "."
    assert "command" not in gateway, "the gateway runs the image's CMD"
    assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service_command("migrate") == ["points-gateway", "db", "upgrade"]
    assert service_command("sandbox") == [
        "points-gateway",
        "sandbox",
        "--host",
        EVERY_INTERFACE,
        "--iamport-port",
        "8001",
        "--gafapay-port",
        "8002",
    ]
    for name in ("gateway", "migrate", "sandbox"):
        assert services[name]["cap_drop"] == ["ALL"]
        assert services[name]["read_only"] is True


def published(service: str, env: dict[str, str]) -> list[str]:
    return [interpolate(str(port), env) for port in compose()["services"][service]["ports"]]


def test_ports_are_published_on_the_loopback_unless_asked() -> None:
    for service in ("gateway", "sandbox"):
        for port in published(service, {}):
            assert port.startswith("127.0.0.1:"), f"{service}: {port}"
    assert published("gateway", {}) == ["127.0.0.1:8000:8000"]
    assert published("gateway", {"GATEWAY_BIND": EVERY_INTERFACE, "GATEWAY_PORT": "9000"}) == [
        f"{EVERY_INTERFACE}:9000:8000"
    ]
    for name, service in compose()["services"].items():
        if name not in ("gateway", "sandbox"):
            assert "ports" not in service, f"{name} is reached on the compose network only"


def test_gateway_and_migrate_share_the_database_of_the_postgres_service() -> None:
    env = dummy_secrets()
    gateway, migrate = service_env("gateway", env), service_env("migrate", env)
    postgres = service_env("postgres", env)
    url = (
        f"postgresql+asyncpg://{postgres['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert gateway["POINTS_DATABASE_URL"] == migrate["POINTS_DATABASE_URL"] == url
    assert gateway["POINTS_REDIS_URL"].startswith("redis://redis:")


@pytest.mark.parametrize("name", SECRETS)
def test_each_secret_is_required_from_the_environment(name: str) -> None:
    declared = str(compose()["services"]["gateway"]["environment"][name])
    assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", declared), f"{name}: {declared}"
    without = {k: v for k, v in dummy_secrets().items() if k != name}
    with pytest.raises(MissingVariable) as missing:
        service_env("gateway", without)
    assert missing.value.name == name


def test_the_database_password_is_required_and_never_defaulted() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert referenced_variables(text)["POSTGRES_PASSWORD"] == ":?"
    without = {k: v for k, v in dummy_secrets().items() if k != "POSTGRES_PASSWORD"}
    for service in ("gateway", "migrate", "postgres"):
        with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
            service_env(service, without)


def test_no_secret_has_a_default() -> None:
    secretive = re.compile(r"SECRET|TOKEN|PASSWORD|_KEYS?$")
    for name, op in referenced_variables(COMPOSE_FILE.read_text(encoding="utf-8")).items():
        if secretive.search(name) and not name.endswith("CHANNEL_KEY"):
            assert op in (":?", "?"), f"{name} must be required (${{{name}:?message}})"


def all_points_variables() -> set[str]:
    names: set[str] = set()
    for service in compose()["services"].values():
        names |= {str(k) for k in service.get("environment", {}) if str(k).startswith("POINTS_")}
    names |= {n for n in referenced_variables(COMPOSE_FILE.read_text()) if n.startswith("POINTS_")}
    return names


def test_every_points_variable_in_the_file_is_a_real_setting() -> None:
    names = all_points_variables()
    assert len(names) > 10
    problems = {name: setting_problem(name) for name in names}
    assert {n: p for n, p in problems.items() if p} == {}


def test_the_setting_check_does_catch_a_misspelt_name() -> None:
    assert setting_problem("POINTS_REDIS_URL") is None
    assert setting_problem("POINTS_CACHE__PROVIDER_TTL__BENEPIA") is None
    assert setting_problem("POINTS_REDIS_URI") is not None
    assert setting_problem("POINTS_AUTH__JWT_SECRETS") is not None
    assert setting_problem("POINTS_PROVIDERS__BENEPIA__API_KEY") is not None
    assert setting_problem("POINTS_PROVIDERS__NOPE__TOKEN") is not None


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings read from an environment holding exactly `env`'s POINTS_* variables."""
    for key in list(os.environ):
        if key.upper().startswith("POINTS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize("target", ["providers", "sandbox"])
def test_the_gateway_environment_is_a_valid_configuration(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = dummy_secrets()
    if target == "sandbox":
        given |= sandbox_gateway_env("http://sandbox:8001", "http://sandbox:8002")
    env = service_env("gateway", given)
    settings = settings_from(env, monkeypatch)
    plan = plan_gateway(settings)  # raises ConfigurationError naming what is wrong
    assert sorted(plan.providers) == ["benepia", "gafapay"]
    assert settings.sandbox is (target == "sandbox")
    assert settings.auth.mode == "required"
    assert settings.redis_url is not None


def test_the_sandbox_recipe_in_the_header_is_what_the_sandbox_command_prints() -> None:
    header = COMPOSE_FILE.read_text(encoding="utf-8").split("\nservices:")[0]
    recipe = dict(re.findall(r"^#\s+(?:export )?(POINTS_[A-Z_]+)=(\S+?)(?: \\)?$", header, re.M))
    assert recipe == sandbox_gateway_env("http://sandbox:8001", "http://sandbox:8002")


def test_the_stop_grace_period_covers_the_drain_and_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(service_env("gateway", dummy_secrets()), monkeypatch)
    declared = str(compose()["services"]["gateway"]["stop_grace_period"])
    match = re.fullmatch(r"(\d+)s", declared)
    assert match is not None, f"write stop_grace_period in seconds: {declared}"
    # No load balancer's pause before SIGTERM here: the gateway's own drain does that job.
    assert settings.shutdown_drain >= 5
    assert int(match.group(1)) > settings.shutdown_drain + settings.shutdown_grace
