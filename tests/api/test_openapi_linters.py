"""The committed document is clean under the linters API teams run: Redocly and Spectral.

Both are pinned npm packages installed once a session into a tmp project (as the TypeScript
client tests install theirs). They lint `openapi/openapi.json` as committed with their stock
rulesets, Redocly's `recommended` and Spectral's `spectral:oas`, and must report nothing, not
even a warning. After the install nothing goes to the network: Redocly's telemetry and update
check are off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import (
    NPM_ENV,
    NPM_INSTALL_TIMEOUT,
    NPX_TIMEOUT,
    OPENAPI,
    npm_project,
    output,
    run,
)

# The first test pays for the session's npm install (bounded by NPM_INSTALL_TIMEOUT) in its setup.
pytestmark = pytest.mark.timeout(NPM_INSTALL_TIMEOUT + 3 * NPX_TIMEOUT)

# Exact versions, the newest whose `engines` allow Node 20 (@redocly/cli: >=20.19.0 <21).
LINTER_PACKAGES = {"@redocly/cli": "2.77.0", "@stoplight/spectral-cli": "6.16.3"}
REDOCLY_CONFIG = "extends:\n  - recommended\ntelemetry: off\n"
SPECTRAL_RULESET = 'extends: ["spectral:oas"]\n'
LINT_ENV = {**NPM_ENV, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}


@pytest.fixture(scope="session")
def linters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tmp npm project with both linters installed and their configuration files."""
    root = tmp_path_factory.mktemp("openapi-linters")
    npm_project(root, "points-gateway-openapi-lint", LINTER_PACKAGES, why="the OpenAPI linters")
    # Written out, so neither picks up a configuration of its own from anywhere else.
    (root / "redocly.yaml").write_text(REDOCLY_CONFIG)
    (root / ".spectral.yaml").write_text(SPECTRAL_RULESET)
    return root


def redocly(root: Path, document: Path) -> dict[str, Any]:
    """`redocly lint`'s JSON report: `totals` and `problems`."""
    proc = run(
        [
            "npx",
            "--no-install",
            "redocly",
            "lint",
            str(document),
            "--config",
            "redocly.yaml",
            "--format=json",
            "--max-problems=1000",
        ],
        cwd=root,
        timeout=NPX_TIMEOUT,
        env=LINT_ENV,
    )
    # Exit 1 is "problems found", which the report itemizes; anything else is the tool failing.
    assert proc.returncode in (0, 1), output(proc)
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def spectral(root: Path, document: Path) -> list[dict[str, Any]]:
    """`spectral lint`'s findings, every severity."""
    results = root / "spectral.json"
    results.unlink(missing_ok=True)
    proc = run(
        [
            "npx",
            "--no-install",
            "spectral",
            "lint",
            str(document),
            "--ruleset",
            ".spectral.yaml",
            "--format",
            "json",
            "--output",
            str(results),
            "--fail-severity",
            "hint",
        ],
        cwd=root,
        timeout=NPX_TIMEOUT,
        env=LINT_ENV,
    )
    assert proc.returncode in (0, 1), output(proc)
    assert results.is_file(), output(proc)
    findings: list[dict[str, Any]] = json.loads(results.read_text(encoding="utf-8"))
    assert bool(findings) == (proc.returncode == 1), output(proc)
    return findings


def _redocly_lines(report: dict[str, Any]) -> list[str]:
    return [
        f"{p['severity']} {p['ruleId']} at {p['location'][0]['pointer']}: {p['message']}"
        for p in report["problems"]
    ]


def _spectral_lines(findings: list[dict[str, Any]]) -> list[str]:
    return [f"{f['code']} at {'.'.join(map(str, f['path']))}: {f['message']}" for f in findings]


def test_redocly_recommended_finds_nothing(linters: Path) -> None:
    report = redocly(linters, OPENAPI)
    problems = _redocly_lines(report)
    assert report["totals"]["errors"] == 0, problems
    assert report["totals"]["warnings"] == 0, problems
    assert problems == []


def test_spectral_oas_finds_nothing(linters: Path) -> None:
    findings = spectral(linters, OPENAPI)
    assert _spectral_lines(findings) == []


def test_the_linters_catch_what_they_are_here_for(linters: Path) -> None:
    # A document with a public operation's `security` and the top-level `tags` taken away, so a
    # linter that silently checked nothing (a wrong ruleset, a changed report format) fails here.
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    del doc["paths"]["/healthz"]["get"]["security"]
    del doc["tags"]
    broken = linters / "broken.json"
    broken.write_text(json.dumps(doc), encoding="utf-8")
    redocly_rules = {problem["ruleId"] for problem in redocly(linters, broken)["problems"]}
    assert "security-defined" in redocly_rules
    spectral_rules = {finding["code"] for finding in spectral(linters, broken)}
    assert "operation-tag-defined" in spectral_rules
