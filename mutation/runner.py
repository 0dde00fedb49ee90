"""Runs each mutant against the tests that execute its lines, in a fresh pytest process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mutation.operators import Mutant
from mutation.targets import Target

REPO = Path(__file__).resolve().parent.parent
HOOK = REPO / "mutation" / "hook"
# A mutant that makes a test hang (a retry loop that never ends) is killed by pytest-timeout.
TEST_TIMEOUT = 60
MUTANT_TIMEOUT = 600

KILLED = "killed"
TIMEOUT = "timeout"
SURVIVED = "survived"


@dataclass(frozen=True, slots=True)
class Outcome:
    mutant: Mutant
    status: str
    tests: int
    seconds: float

    @property
    def killed(self) -> bool:
        return is_killed(self.status)


def is_killed(status: str) -> bool:
    return status in (KILLED, TIMEOUT)


LineTests = dict[str, dict[int, list[str]]]


def _pytest(args: Iterable[str], env: dict[str, str], timeout: float) -> int:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    done = subprocess.run(  # noqa: S603  (our own interpreter and arguments)
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return done.returncode


def line_tests(targets: Iterable[Target]) -> LineTests:
    """One run of every target's tests, unmutated, recording which tests reach which lines.

    Doubles as the baseline: a failing test here would kill every mutant, so the run stops.
    """
    targets = list(targets)
    tests = sorted({path for target in targets for path in target.tests})
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "lines.json"
        env = {
            **os.environ,
            "POINTS_MUTATION_FILES": os.pathsep.join(str(REPO / t.path) for t in targets),
            "POINTS_MUTATION_LINES": str(out),
        }
        command = ["-p", "mutation.line_tests", *tests]
        code = _pytest(command, env, timeout=3600)
        if code != 0:
            raise SystemExit(
                f"the unmutated tests fail (pytest exit {code}): "
                f"run `pytest {' '.join(tests)}` and fix them first"
            )
        raw: dict[str, dict[str, list[str]]] = json.loads(out.read_text(encoding="utf-8"))
    return {
        str(Path(path).relative_to(REPO)): {int(line): ids for line, ids in lines.items()}
        for path, lines in raw.items()
    }


def selected_tests(mutant: Mutant, target: Target, lines: LineTests) -> list[str]:
    """The tests that execute the mutant's lines in-process, else the module's own tests.

    The module's own tests go first: with `-x`, a mutant they kill stops there, rather than after
    hundreds of integration tests that merely pass through the line.
    """
    by_line = lines.get(target.path, {})
    ids = {i for line in range(mutant.line, mutant.end_line + 1) for i in by_line.get(line, ())}

    def own_first(node: str) -> tuple[bool, str]:
        return (not node.startswith(tuple(f"{path}::" for path in target.own)), node)

    return sorted(ids, key=own_first) or [
        path for path in target.own if (REPO / path.split("::")[0]).exists()
    ]


def run_mutant(mutant: Mutant, target: Target, tests: list[str]) -> Outcome:
    source = (REPO / target.path).read_text(encoding="utf-8")
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as spec:
        json.dump(
            {
                "module": target.module,
                "path": str(REPO / target.path),
                "source": mutant.apply(source),
            },
            spec,
        )
        spec.flush()
        path = os.environ.get("PYTHONPATH")
        env = {
            **os.environ,
            "POINTS_MUTANT": spec.name,
            "PYTHONPATH": os.pathsep.join(p for p in (str(HOOK), path) if p),
        }
        args = ["-x", f"--timeout={TEST_TIMEOUT}", *tests]
        try:
            code = _pytest(args, env, timeout=MUTANT_TIMEOUT)
        except subprocess.TimeoutExpired:
            return Outcome(mutant, TIMEOUT, len(tests), time.monotonic() - started)
    # Exit 4 is also how pytest reports a conftest that failed to import: a mutant that breaks
    # what the tests import is killed. The node ids come from the unmutated run, so they exist.
    if code == 5:
        raise SystemExit(f"pytest collected no tests for {mutant.key}")
    status = SURVIVED if code == 0 else KILLED
    return Outcome(mutant, status, len(tests), time.monotonic() - started)


def run_all(
    work: list[tuple[Mutant, Target]],
    lines: LineTests,
    *,
    jobs: int,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    """Every mutant, `jobs` at a time (each is its own pytest process)."""

    def one(item: tuple[Mutant, Target]) -> Outcome:
        mutant, target = item
        outcome = run_mutant(mutant, target, selected_tests(mutant, target, lines))
        report(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, work))
