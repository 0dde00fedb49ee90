"""`serve` names every missing or invalid setting at once, and a failed start leaves nothing."""

from __future__ import annotations

from pathlib import Path

from app import __version__
from tests.support.processes import clean_env, free_ports, run

JWT_SECRET_TOO_SHORT = "short-sEcReT"


def serve(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    (port,) = free_ports(1)
    done = run(["serve", "--port", str(port)], env, cwd)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stderr


def test_a_bare_serve_names_every_problem_in_one_go(tmp_path: Path) -> None:
    code, err = serve(clean_env(), tmp_path)

    assert code == 2
    assert err.startswith("points-gateway: 4 configuration errors:\n"), err
    for expected in (
        "POINTS_PROVIDERS__BENEPIA__IMP_KEY: Field required",
        "POINTS_PROVIDERS__GAFAPAY__TOKEN: Field required",
        "POINTS_AUTH__MODE is required (the default) but no credentials are configured",
        "POINTS_SECRET_KEYS is required",
        "no account database at data/points-gateway.db: run `points-gateway db upgrade`",
    ):
        assert expected in err
    assert list(tmp_path.iterdir()) == [], "a failed start creates no data/points-gateway.db"


def test_invalid_settings_are_named_with_the_allowed_values_beside_the_rest(
    tmp_path: Path,
) -> None:
    env = {
        **clean_env(),
        "POINTS_LOG_LEVEL": "verbose",
        "POINTS_AUTH__JWT_SECRET": JWT_SECRET_TOO_SHORT,
    }
    code, err = serve(env, tmp_path)

    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("  - ")]
    assert lines[:2] == [
        "  - POINTS_AUTH__JWT_SECRET: Value error, an HS256 secret must be at least 32 bytes",
        "  - POINTS_LOG_LEVEL: Input should be 'debug', 'info', 'warning' or 'error'",
    ]
    assert "POINTS_PROVIDERS__BENEPIA__IMP_KEY" in err, "the other checks still ran"
    assert "POINTS_SECRET_KEYS is required" in err
    # The authentication default that stood in for the bad secret is not reported as well.
    assert "no credentials are configured" not in err
    assert JWT_SECRET_TOO_SHORT not in err
    assert list(tmp_path.iterdir()) == []


def test_a_configuration_error_alone_is_one_line(tmp_path: Path) -> None:
    done = run(["keys", "generate", "--key-id", "bad id"], clean_env(), tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        "points-gateway: configuration error: a key id is 1-32 letters, digits, _ or -\n"
    )


def test_cli_help_lists_every_command_and_option_defaults(tmp_path: Path) -> None:
    top = run(["--help"], clean_env(), tmp_path).stdout
    for name in ("serve", "demo", "sandbox", "openapi", "db", "keys", "providers", "accounts"):
        assert f"    {name}" in top, name
    serve_help = run(["serve", "--help"], clean_env(), tmp_path).stdout
    assert "POINTS_*" in serve_help, "serve --help points at the environment"
    assert "(default: 8000)" in serve_help
    version = run(["--version"], clean_env(), tmp_path)
    assert version.stdout.strip() == f"points-gateway {__version__}"


def test_zero_workers_is_refused(tmp_path: Path) -> None:
    done = run(["serve", "--workers", "0"], clean_env(), tmp_path)
    assert done.returncode == 2
    assert "--workers: must be 1 or more" in done.stderr
