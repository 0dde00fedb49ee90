"""The README's walk-through, run as written against `points-gateway demo`: every command's output
matches what the README shows (`...` and `…` stand for anything; timestamps vary)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.demo import Demo, printed_tokens
from tests.support.processes import clean_env, wait_healthy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND_TIMEOUT = 20.0
ELISION = re.compile(r"\.\.\.|…")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
# A step with no output shown may name the answer it expects: `# 404 unknown_provider`.
NAMED_ANSWER = re.compile(r"#\s*(\d{3}) ([a-z_]+)")
CARRIED = re.compile(r"^(?:[A-Z_]+=|\w+\(\) \{)")  # assignments and functions later steps use


@dataclass
class Step:
    command: str
    notes: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)


def walkthrough_steps() -> list[Step]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Walk-through") : text.index("\n## API")]
    steps: list[Step] = []
    for block in re.findall(r"```console\n(.*?)```", section, re.DOTALL):
        continued = False
        for line in block.splitlines():
            if continued:
                steps[-1].command += "\n" + line
            elif line.startswith("$ "):
                steps.append(Step(line[2:]))
            elif line.startswith("#"):
                steps[-1].notes.append(line)
            elif line.strip():
                steps[-1].expected.append(line)
            continued = line.endswith("\\")
    return steps


def matcher(expected: str) -> re.Pattern[str]:
    """The shown output as a pattern over the real one, whitespace ignored on both sides."""
    parts = []
    for piece in ELISION.split(re.sub(r"\s+", "", expected)):
        stamps = TIMESTAMP.split(piece)
        parts.append(r"[0-9T:.Z-]+".join(re.escape(s) for s in stamps))
    return re.compile(".*?".join(parts), re.DOTALL)


def test_the_matcher_holds_outputs_to_what_is_shown() -> None:
    shown = '{"user_id":"alice", ... "as_of":"2026-11-22T02:02:14.743735Z","cached":false}'
    assert matcher(shown).fullmatch(
        '{"user_id":"alice","x":1,"as_of":"2027-01-01T00:00:00Z","cached":false}'
    )
    assert not matcher(shown).fullmatch('{"user_id":"alice","as_of":"x","cached":true}')


def test_the_walkthrough_is_found_whole() -> None:
    steps = walkthrough_steps()
    assert len(steps) >= 30
    assert any("__sandbox/faults" in s.command for s in steps)
    assert sum(bool(s.expected) for s in steps) >= 12


def on_demo_ports(command: str, demo: Demo) -> str:
    for shown, real in (
        ("127.0.0.1:8000", demo.base),
        ("127.0.0.1:8001", demo.iamport),
        ("127.0.0.1:8002", demo.gafapay),
        ("127.0.0.1:8003", demo.smile),
    ):
        command = command.replace(shown, real.removeprefix("http://"))
    return command


def test_the_readme_walkthrough_runs_as_written(demo: Demo, tmp_path: Path) -> None:
    tokens = printed_tokens(demo.stdout)
    wait_healthy(demo.proc, demo.base, demo.stdout)
    env = {**clean_env(), **{f"DEMO_TOKEN_{user.upper()}": t for user, t in tokens.items()}}
    carried: list[str] = []
    for step in walkthrough_steps():
        if step.command.startswith("DEMO_TOKEN_"):
            continue  # the demo printed these: `env` has them
        command = on_demo_ports(step.command, demo)
        done = subprocess.run(
            ["bash", "-c", "\n".join([*carried, command])],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, (step.command, done.stderr)
        if CARRIED.match(step.command):
            carried.append(command)
        if step.expected:
            shown = "\n".join(step.expected)
            actual = re.sub(r"\s+", "", done.stdout)
            assert matcher(shown).fullmatch(actual), (
                f"{step.command}\nshown:\n{shown}\ngot:\n{done.stdout}"
            )
            continue
        named = NAMED_ANSWER.search(" ".join([step.command, *step.notes]))
        if named is not None:
            answer = json.loads(done.stdout)
            assert (answer["status"], answer["code"]) == (int(named[1]), named[2]), step.command

    console = demo.stdout.read_text() + (demo.stdout.parent / "stderr.txt").read_text()
    assert "Started server process" not in console, "uvicorn's start-up lines are left out"
    request_ids = re.findall(r"\[points_gateway\.access\].*request_id=(\S+)", console)
    assert request_ids, "the gateway logs each request"
    assert len(request_ids) == len(set(request_ids)), "one line per request"
    assert '"GET /users/' not in console, "no uvicorn access line beside the gateway's own"
