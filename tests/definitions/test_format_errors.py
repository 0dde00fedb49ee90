"""A bad definition is named by file, line and key, all problems at once; the gateway won't start.

One case per kind of key: a wrong value, a missing key, an unknown key, a bad template, a bad
path, a bad status, a cross-reference (identifies, base_url, ownership fields), a name clash,
YAML that is not YAML, aliases.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from app.cli import main
from app.definitions.loader import DefinitionsInvalid, definition_schema, load_folder
from tests.definitions.conftest import ACME_YAML, write_definitions
from tests.support.processes import RUN_TIMEOUT, clean_env, command

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "provider-definition.schema.json"
VALID = textwrap.dedent(ACME_YAML)


def problems_of(tmp_path: Path, *texts: str) -> list[str]:
    with pytest.raises(DefinitionsInvalid) as raised:
        load_folder(write_definitions(tmp_path / "defs", *texts))
    return raised.value.problems


def edited(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new)


def line_of(text: str, marker: str) -> int:
    """The 1-based line of `text` that holds `marker`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if marker in line)


SESSION_BOTH_EXPIRIES = (
    "auth:\n  kind: session\n  login: {path: /t}\n  token: t\n  expires_at: a\n"
    "  expires_in: b\n  apply: {header: A}\nrequest:\n"
)
# (the definition, a text on the line the problem is at, a fragment of the problem)
CASES = {
    "wrong value": (edited("type: decimal}", "type: float}"), "balance:", "balance.type: Input"),
    "missing key": (
        edited("display_name: ACME Rewards\n", ""),
        "name: acme",
        "display_name: Field required",
    ),
    "unknown key": (
        edited("cache_ttl: 0", "cache_ttl: 0\ncache_tll: 5"),
        "cache_tll",
        "cache_tll: Extra",
    ),
    "bad name": (edited("name: acme", "name: Acme!"), "name: Acme!", "name: String should match"),
    "template names nothing": (
        edited('"{account.member_pin}"', '"{account.pin}"'),
        "X-Member-Pin",
        "request.headers.X-Member-Pin: '{account.pin}': {account.pin} names nothing",
    ),
    "template unmatched brace": (edited("/balance", "/balance{"), "path: /v1", "request.path: "),
    "bad path": (edited("path: data.points", "path: data..points"), "balance:", "balance.path: "),
    "bad status": (
        edited("status: 404,", "status: 4000,"),
        "status: 4000",
        "errors.0.when.status: Input should be less than or equal to 599",
    ),
    "bad code": (
        edited(
            "code: provider_rejected\n    message: message\n    upstream",
            "code: teapot\n    message: message\n    upstream",
        ),
        "code: teapot",
        "errors.0.code: Input should be",
    ),
    "no identifying field": (edited(", identifies: true", ""), "account:", "account: exactly one"),
    "no base_url": (
        edited('  base_url: {type: url, default: "https://api.acme.test"}\n', ""),
        "settings:",
        "settings: a `base_url` setting",
    ),
    "two expiries": (
        edited("request:\n", SESSION_BOTH_EXPIRIES),
        "auth:",
        "auth: Value error, name exactly one of `expires_at` and `expires_in`",
    ),
    "a rule's path without equals": (
        edited("path: status, equals: PIN_MISMATCH}", "path: status}"),
        "when: {status: 200",
        "errors.1.when: Value error, `path` and `equals` go together",
    ),
    "a secret in the URL path": (
        edited(
            "/v1/members/{account.member_id}/balance", "/v1/members/{account.member_pin}/balance"
        ),
        "path: /v1",
        "request.path: {account.member_pin} is a secret: send it in a header or the body",
    ),
    "a secret setting in the query": (
        edited("query: {currency: KRW}", 'query: {currency: KRW, key: "{settings.api_key}"}'),
        "query:",
        "request.query.key: {settings.api_key} is a secret",
    ),
    "user_token without field": (
        edited(
            "ownership: secret", "ownership: {kind: user_token, token: jwt, subject: member_id}"
        ),
        "ownership:",
        "ownership.token: no account field 'jwt'",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_problem_names_file_line_and_key(tmp_path: Path, case: str) -> None:
    text, marker, fragment = CASES[case]
    found = problems_of(tmp_path, text)
    line = line_of(text, marker)
    assert any(f"def-0.yaml:{line}: {fragment}" in p for p in found), (line, found)


def test_every_problem_of_every_file_at_once(tmp_path: Path) -> None:
    broken = edited("type: decimal}", "type: float}").replace("cache_ttl: 0", "cache_ttl: -1")
    other = edited("name: acme", "name: acme_two").replace("method: GET", "method: PATCH")
    found = problems_of(tmp_path, broken, other)
    assert len(found) == 3, found
    assert {p.split(":")[0].rsplit("/", 1)[1] for p in found} == {"def-0.yaml", "def-1.yaml"}


def test_two_definitions_of_one_name(tmp_path: Path) -> None:
    found = problems_of(tmp_path, VALID, VALID)
    assert len(found) == 1
    assert "def-1.yaml:1: name: 'acme' is also defined in" in found[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: [unclosed", ":1: not YAML"),
        ("- a list\n- of things\n", ":1: a definition is a mapping"),
        ("a: &x [1, 2]\nb: *x\n", "anchors and aliases"),
    ],
    ids=["not-yaml", "not-a-mapping", "aliases"],
)
def test_files_that_are_not_definitions(tmp_path: Path, text: str, fragment: str) -> None:
    found = problems_of(tmp_path, text)
    assert any(fragment in p for p in found), found


def test_a_definition_may_not_take_a_built_in_name(tmp_path: Path) -> None:
    folder = write_definitions(tmp_path / "defs", edited("name: acme", "name: gafapay"))
    code = main(["providers", "check", str(folder)])
    assert code == 0  # valid on its own; the clash is the gateway's to refuse
    from app.errors import ConfigurationError
    from app.providers.registry import discover_plugins

    with pytest.raises(ConfigurationError, match="'gafapay' clashes with a built-in"):
        discover_plugins(folder)


def test_check_prints_the_problems_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_definitions(tmp_path / "defs", edited("type: decimal}", "type: float}"))
    assert main(["providers", "check", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "invalid provider definitions" in err
    assert f"def-0.yaml:{line_of(VALID, 'balance:')}: balance.type" in err


def test_check_names_each_valid_definition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_definitions(tmp_path / "defs", VALID)
    assert main(["providers", "check", str(folder)]) == 0
    assert "acme: ok (ACME Rewards)" in capsys.readouterr().out


def test_the_gateway_refuses_to_start_with_the_same_lines(tmp_path: Path) -> None:
    folder = write_definitions(tmp_path / "defs", edited("type: decimal}", "type: float}"))
    env = {
        **clean_env(),
        "POINTS_PROVIDERS_DIR": str(folder),
        "POINTS_ENABLED_PROVIDERS": "acme",
        "POINTS_PROVIDERS__ACME__API_KEY": "k",
        "POINTS_AUTH__MODE": "disabled",
        "POINTS_SECRET_KEYS": "k1:" + "A" * 43 + "=",
        "POINTS_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [*command(), "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"def-0.yaml:{line_of(VALID, 'balance:')}: balance.type" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_committed_schema_is_the_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["providers", "schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == definition_schema()
    assert json.loads(SCHEMA.read_text()) == json.loads(printed), (
        "docs/provider-definition.schema.json is stale: points-gateway providers schema > it"
    )


def test_the_shipped_definitions_are_valid() -> None:
    shipped = Path(__file__).resolve().parents[2] / "app" / "definitions" / "shipped"
    names = {plugin.name for plugin in load_folder(shipped)}
    assert "gafapay_declared" in names
