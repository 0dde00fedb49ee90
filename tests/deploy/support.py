"""Helpers for the deployment tests: read the Dockerfile, the compose file and the manifests the
way their tools would, and run the image's commands as local processes."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast, get_origin

import httpx
import pytest
import yaml
from pydantic import BaseModel

from app.accounts.sealing import Keyring
from app.providers.registry import discover_plugins
from app.settings import Settings
from tests.conftest import require_services

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S_DIR = ROOT / "deploy" / "k8s"
MONITORING_DIR = K8S_DIR / "monitoring"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
README = ROOT / "README.md"

HOST = "127.0.0.1"
# What the image and the compose services listen on, replaced by HOST here.
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104
START_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0
RUN_TIMEOUT = 30.0


# --- Dockerfile ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    value: str
    line: int


@dataclass
class Stage:
    """One FROM ... and the instructions after it."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Every instruction of that keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        """The instruction of that keyword that takes effect (the last one)."""
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.image}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile (backslash continuations; comment lines skipped)."""
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, value = joined.partition(" ")
        instruction = Instruction(keyword.upper(), value.strip(), start)
        if instruction.keyword == "FROM":
            words = [w for w in instruction.value.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"line {start}: {instruction.keyword} before any FROM"
            stages[-1].instructions.append(instruction)
    assert not pending, "the Dockerfile ends inside a continued line"
    return stages


def exec_form(value: str) -> list[str]:
    """A JSON-array (exec form) argument list; shell form is refused."""
    assert value.startswith("["), f"not exec (JSON) form: {value}"
    loaded = json.loads(value)
    assert isinstance(loaded, list), value
    assert all(isinstance(a, str) for a in loaded), value
    return cast(list[str], loaded)


def healthcheck_command(value: str) -> tuple[dict[str, str], list[str]]:
    """HEALTHCHECK's options and its CMD (exec form)."""
    options_text, found, command = value.partition("CMD ")
    assert found, f"HEALTHCHECK without CMD: {value}"
    options = dict(opt.removeprefix("--").split("=", 1) for opt in options_text.split())
    return options, exec_form(command.strip())


def env_instructions(stage: Stage) -> dict[str, str]:
    """The ENV key=value pairs a stage sets (values as written, nothing expanded)."""
    values: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.value):
            key, sep, val = word.partition("=")
            assert sep, f"line {instruction.line}: use ENV key=value, not the legacy form"
            values[key] = val
    return values


# --- docker-compose.yml ------------------------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is not set (compose refuses the file)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?message}, ${VAR?message} and $$."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and unset:
            return arg
        if op in (":?", "?") and unset:
            raise MissingVariable(name, arg)
        return value or ""

    return _REFERENCE.sub(substitute, text)


def referenced_variables(text: str) -> dict[str, str | None]:
    """Every variable a text refers to, with its operator (`:?`, `:-`, ... or None)."""
    return {
        (m["name"] or m["bare"]): m["op"] for m in _REFERENCE.finditer(text) if not m["escaped"]
    }


def load_yaml(path: Path) -> dict[str, Any]:
    """One YAML document that is a mapping."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path.name}: not a mapping"
    return cast(dict[str, Any], loaded)


def load_yaml_all(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file (empty ones dropped), each a mapping."""
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert all(isinstance(d, dict) for d in documents), f"{path.name}: a document is no mapping"
    return cast(list[dict[str, Any]], documents)


def compose() -> dict[str, Any]:
    """docker-compose.yml as parsed YAML (anchors resolved, nothing interpolated)."""
    return load_yaml(COMPOSE_FILE)


def service_env(service: str, env: Mapping[str, str]) -> dict[str, str]:
    """A compose service's `environment`, interpolated from `env` as compose would."""
    declared = compose()["services"][service].get("environment", {})
    assert isinstance(declared, dict), f"{service}: write environment as a mapping"
    return {str(k): interpolate(str(v), env) for k, v in declared.items()}


def service_command(service: str) -> list[str]:
    """A compose service's `command` (exec form)."""
    command = compose()["services"][service]["command"]
    assert isinstance(command, list), f"{service}: write command as a list"
    return [str(c) for c in command]


# --- settings ----------------------------------------------------------------------------------


def setting_problem(name: str) -> str | None:
    """Why `name` is not a setting the gateway reads (None when it is one).

    pydantic-settings ignores an unknown top-level POINTS_* variable, so a misspelt name in a
    deployment file would pass unnoticed: this walks the settings models instead.
    """
    if not name.startswith("POINTS_"):
        return "not a POINTS_ variable"
    parts = name.removeprefix("POINTS_").lower().split("__")
    model: type[BaseModel] = Settings
    for index, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            return f"{part!r} is not a setting of {model.__name__}"
        rest = parts[index + 1 :]
        if model is Settings and part == "providers":
            if len(rest) != 2:
                return "provider settings are POINTS_PROVIDERS__<NAME>__<FIELD>"
            plugin = discover_plugins().get(rest[0])
            if plugin is None:
                return f"no provider {rest[0]!r}"
            if rest[1] not in plugin.settings_model.model_fields:
                return f"{rest[1]!r} is not a setting of provider {rest[0]!r}"
            return None
        annotation = fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        if get_origin(annotation) is dict:
            return None if len(rest) == 1 else f"{part!r} takes one key below it"
        return None if not rest else f"{part!r} has no settings below it"
    return "a section, not a setting"


def dummy_secrets() -> dict[str, str]:
    """Well-formed stand-ins for every secret the deployment files ask for."""
    return {
        "POSTGRES_PASSWORD": "dummy-database-password",
        "POINTS_SECRET_KEYS": Keyring.generate_entry("kdeploytest"),
        "POINTS_AUTH__JWT_SECRET": "dummy-jwt-secret-of-at-least-32-bytes!!",
        "POINTS_DATABASE_URL": "postgresql+asyncpg://points:pw@db.example:5432/points",
        "POINTS_REDIS_URL": "redis://cache.example:6379/0",
        "POINTS_PROVIDERS__BENEPIA__IMP_KEY": "dummy-imp-key",
        "POINTS_PROVIDERS__BENEPIA__IMP_SECRET": "dummy-imp-secret",
        "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID": "59388167894b4d10a04fe5da3b8a2104",
        "POINTS_PROVIDERS__GAFAPAY__TOKEN": "dummy.gafapay.token",
        "POINTS_METRICS_TOKEN": "dummy-metrics-token-0123456789",
    }


def project_version() -> str:
    """The package's version in pyproject.toml: the image's tag everywhere."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    version = project["version"]
    assert isinstance(version, str)
    return version


def unavailable(reason: str) -> NoReturn:
    """A tool this test needs is missing: fail under POINTS_REQUIRE_SERVICES=1 (CI), else skip."""
    if require_services():
        pytest.fail(f"POINTS_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


# --- processes ---------------------------------------------------------------------------------


def console_script(name: str) -> str:
    """An installed console script of this environment (the image's /opt/venv/bin)."""
    script = Path(sysconfig.get_path("scripts")) / name
    if script.exists():
        return str(script)
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed: pip install -e '.[test,dev]'"
    return found


def local_argv(argv: list[str]) -> list[str]:
    """An image command as this machine runs it: the provider from this venv."""
    provider = {"python": sys.executable}.get(argv[0]) or console_script(argv[0])
    return [provider, *argv[1:]]


def replace_option(argv: list[str], option: str, expected: str, value: str) -> list[str]:
    """`argv` with `option`'s value (asserted to be `expected`) replaced by `value`."""
    assert option in argv, f"{option} missing from {argv}"
    index = argv.index(option) + 1
    assert argv[index] == expected, f"{option} {argv[index]}, expected {expected}"
    return [*argv[:index], value, *argv[index + 1 :]]


def base_env() -> dict[str, str]:
    """This process's environment without any POINTS_* setting."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("POINTS_")}


def free_ports(count: int) -> list[int]:
    """Distinct ports free right now (held together while picked, then released)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Process:
    """A started command and the files its output goes to."""

    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """What it printed so far (for failure messages)."""
        out = self.stdout.read_text(errors="replace")
        err = self.stderr.read_text(errors="replace")
        return f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"


@contextmanager
def started(argv: list[str], env: Mapping[str, str], cwd: Path, name: str) -> Iterator[Process]:
    """Run `argv` in the background; it is killed when the block ends, whatever happens."""
    stdout, stderr = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        popen = subprocess.Popen(argv, stdout=out, stderr=err, env=dict(env), cwd=cwd)
    process = Process(popen, stdout, stderr)
    try:
        yield process
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(EXIT_TIMEOUT)


def wait_until_ok(process: Process, urls: list[str]) -> None:
    """Wait (bounded) until every URL answers 200; fail at once if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(urls)
    with httpx.Client(timeout=2.0) as client:
        while pending:
            if process.popen.poll() is not None:
                pytest.fail(f"exited with {process.popen.returncode}:\n{process.output()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{pending} did not answer within {START_TIMEOUT} s:\n{process.output()}"
                )
            try:
                if client.get(pending[0]).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.TransportError:
                pass
            time.sleep(0.1)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `condition` (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.05)


def stop(process: Process, signal_number: int) -> int:
    """Send a signal and wait (bounded) for the exit code."""
    process.popen.send_signal(signal_number)
    try:
        return process.popen.wait(EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not exit within {EXIT_TIMEOUT} s of signal {signal_number}")


def run(argv: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command to its end (bounded), capturing its text."""
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=dict(env),
            cwd=cwd,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv[:3]} did not exit within {RUN_TIMEOUT} s")
