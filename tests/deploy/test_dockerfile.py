"""The Dockerfile: hadolint finds nothing, and it builds what the deployment expects.

No Docker engine runs here, so what the image would run is run directly in
test_image_command.py; this file checks the Dockerfile's text and the build context.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.support import (
    DOCKERFILE,
    DOCKERIGNORE,
    EVERY_INTERFACE,
    ROOT,
    Stage,
    console_script,
    env_instructions,
    exec_form,
    healthcheck_command,
    parse_dockerfile,
    run,
)

BASE_IMAGE = "python:3.11-slim"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|make|build-essential|apt-get|apk)\b")


def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def final() -> Stage:
    return stages()[-1]


def hadolint(dockerfile: Path, cwd: Path) -> list[dict[str, object]]:
    """hadolint's findings (every level, inline ignores disabled, no config file read)."""
    done = run(
        [
            console_script("hadolint"),
            "--no-color",
            "--format",
            "json",
            "--failure-threshold",
            "style",
            "--disable-ignore-pragma",
            str(dockerfile),
        ],
        env={"HOME": str(cwd), "XDG_CONFIG_HOME": str(cwd), "PATH": "/usr/bin:/bin"},
        cwd=cwd,
    )
    assert done.stdout.strip(), f"hadolint printed nothing (exit {done.returncode}): {done.stderr}"
    findings = json.loads(done.stdout)
    assert isinstance(findings, list)
    return findings


def test_hadolint_reports_nothing(tmp_path: Path) -> None:
    findings = hadolint(DOCKERFILE, tmp_path)
    listed = "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    assert findings == [], f"hadolint:\n{listed}"


def test_hadolint_does_apply_its_rules(tmp_path: Path) -> None:
    # So that an empty report above means a clean file, not a linter that checked nothing.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n", encoding="utf-8")
    codes = {f["code"] for f in hadolint(bad, tmp_path)}
    assert {"DL3006", "DL3013", "DL3042"} <= codes


def test_every_stage_is_the_slim_python_base_pinned_by_tag() -> None:
    found = stages()
    assert len(found) >= 2, "multi-stage: a build stage and a runtime stage"
    names = {s.name for s in found if s.name}
    for stage in found:
        assert stage.image == BASE_IMAGE or stage.image in names, stage.image


def test_the_build_stage_makes_wheels_and_the_runtime_installs_only_those() -> None:
    build, runtime = stages()[0], final()
    assert build.name, "the build stage is named, for --from"
    assert any("pip wheel" in r.value and "/wheels" in r.value for r in build.all("RUN"))

    installs = [r.value for r in runtime.all("RUN") if "pip install" in r.value]
    assert len(installs) == 1, installs
    install = installs[0]
    # Mounted from the build stage (never a layer of the final image), installed offline.
    assert f"--mount=type=bind,from={build.name},source=/wheels,target=/wheels" in install
    assert "--no-index" in install
    assert "--find-links=/wheels" in install
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert f"/wheels/{project['name'].replace('-', '_')}-*.whl" in install
    # Nothing else comes from the build stage or the build context into the final image.
    assert runtime.all("COPY") == []
    assert runtime.all("ADD") == []


def test_no_compiler_or_package_manager_in_the_final_stage() -> None:
    for instruction in final().all("RUN"):
        assert not COMPILERS.search(instruction.value), instruction


def test_the_final_image_runs_as_a_non_root_numeric_user() -> None:
    user = final().last("USER").value
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: numeric, so runAsNonRoot can verify it"
    assert int(uid) != 0
    last_user = max(i.line for i in final().all("USER"))
    assert all(r.line < last_user for r in final().all("RUN")), "RUN after USER runs as it"


def test_cmd_serves_the_gateway_on_every_interface_at_the_exposed_port() -> None:
    runtime = final()
    cmd = exec_form(runtime.last("CMD").value)
    assert cmd[:2] == ["points-gateway", "serve"]
    assert cmd[cmd.index("--host") + 1] == EVERY_INTERFACE
    port = cmd[cmd.index("--port") + 1]
    assert runtime.last("EXPOSE").value.split("/")[0] == port
    assert runtime.all("ENTRYPOINT") == []
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert scripts["scripts"]["points-gateway"] == "app.cli:main"


def test_healthcheck_asks_healthz_with_python_urllib() -> None:
    runtime = final()
    options, command = healthcheck_command(runtime.last("HEALTHCHECK").value)
    assert {"interval", "timeout", "retries"} <= options.keys()
    assert command[:2] == ["python", "-c"]
    port = exec_form(runtime.last("CMD").value)[-1]
    assert "urllib.request" in command[2]
    assert f"http://127.0.0.1:{port}/healthz" in command[2]


def test_env_puts_the_venv_first_and_writes_no_bytecode() -> None:
    env = env_instructions(final())
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


# --- .dockerignore ------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it (`**` any depth, `*` and `?` within one
    path element)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def excluded(path: str) -> bool:
    """Whether the build context leaves `path` out (the last matching pattern decides; a
    pattern matches a path or any directory above it)."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negated
    return result


def copied_sources() -> list[str]:
    """What the Dockerfile's COPY lines take from the build context."""
    sources: list[str] = []
    for stage in stages():
        for copy in stage.all("COPY"):
            words = [w for w in copy.value.split() if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def test_the_build_context_holds_what_the_build_copies() -> None:
    sources = copied_sources()
    assert sources, "the build stage copies the project"
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [
            f
            for f in files
            if "__pycache__" not in f.parts and not excluded(str(f.relative_to(ROOT)))
        ]
        assert kept, f"{source}: .dockerignore leaves it out"
        if path.is_dir():
            assert all(
                not excluded(str(f.relative_to(ROOT)))
                for f in files
                if "__pycache__" not in f.parts and f.suffix in {".py", ".mako"}
            ), f"{source}: a source file is left out"


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        ".env",
        "data/points-gateway.db",
        "app/accounts/points-gateway.db",
        "app/__pycache__/cli.cpython-311.pyc",
        "tests/conftest.py",
        "docker-compose.yml",
        "deploy/k8s/secret.yaml",
        ".mypy_cache/3.11/app.json",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert excluded(path)
