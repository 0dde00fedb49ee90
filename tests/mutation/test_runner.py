"""The runner: a mutant is live in every process of its test run, and is judged by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mutation.operators import Mutant, mutants_of
from mutation.report import load_results, page, store_results, summarise
from mutation.runner import HOOK, KILLED, REPO, SURVIVED, Outcome, run_mutant, selected_tests
from mutation.targets import DRIFT, TARGETS, Target

STATUS_POLICY = Target("app/points/status_policy.py", ("tests/points/test_status_policy.py",), ())
POLICY = Target("app/security/policy.py", ("tests/security/test_bola.py",), ())
BREAKER = Target("app/resilience/breaker.py", ("tests/resilience/test_breaker.py",), ())


def mutant(target: Target, key: str) -> Mutant:
    source = (REPO / target.path).read_text(encoding="utf-8")
    (found,) = [m for m in mutants_of(target.path, source) if m.key == key]
    return found


def test_the_hook_serves_the_mutant_to_a_subprocess_and_only_with_its_variable(
    tmp_path: Path,
) -> None:
    target = Target("app/resilience/retry.py", (), ())
    slip = mutant(target, "<module>: 0.05 -> 1.05")
    spec = tmp_path / "mutant.json"
    source = (REPO / target.path).read_text(encoding="utf-8")
    spec.write_text(
        json.dumps(
            {"module": target.module, "path": str(REPO / target.path), "source": slip.apply(source)}
        ),
        encoding="utf-8",
    )
    code = "import app.resilience.retry as r; print(r.MIN_ATTEMPT_SECONDS, r.__file__)"
    base = {**os.environ, "PYTHONPATH": str(HOOK)}

    def run(env: dict[str, str]) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert run({**base, "POINTS_MUTANT": str(spec)}) == f"1.05 {REPO / target.path}"
    assert run(base) == f"0.05 {REPO / target.path}"
    assert source == (REPO / target.path).read_text(encoding="utf-8")


def test_a_mutant_the_tests_catch_is_killed() -> None:
    slip = mutant(
        POLICY, "authorize: raise Forbidden('This token may only act on its own user.') -> pass"
    )
    outcome = run_mutant(slip, POLICY, list(POLICY.tests))
    assert outcome.status == KILLED


def test_a_mutant_no_test_can_tell_apart_survives() -> None:
    # _opened_at is overwritten before it is ever read (an equivalent mutant).
    slip = mutant(BREAKER, "CircuitBreaker.__init__: 0.0 -> 1.0")
    outcome = run_mutant(slip, BREAKER, list(BREAKER.tests))
    assert outcome.status == SURVIVED


def test_a_line_no_test_reaches_in_process_runs_the_modules_own_tests() -> None:
    slip = mutant(STATUS_POLICY, "failure_problem: len(kinds) == 1 -> len(kinds) != 1")
    target = Target(STATUS_POLICY.path, (), ("tests/points/test_status_policy.py", DRIFT))
    here = "tests/points/test_status_policy.py::test_here"
    elsewhere = "tests/points/test_status_policy.py::test_elsewhere"
    lines = {target.path: {slip.line: [here], slip.line + 5: [elsewhere, here]}}
    assert selected_tests(slip, target, lines) == [here]
    served = "tests/api/test_a.py::test_served"
    both = {target.path: {slip.line: [served, elsewhere, here]}}
    assert selected_tests(slip, target, both) == [elsewhere, here, served]
    other_line = {target.path: {slip.line + 5: [here, elsewhere]}}
    assert selected_tests(slip, target, other_line) == list(target.own)
    assert selected_tests(slip, target, {}) == list(target.own)


def test_ratio_excludes_equivalents_and_the_list_stays_honest(tmp_path: Path) -> None:
    source = (REPO / STATUS_POLICY.path).read_text(encoding="utf-8")
    slips = mutants_of(STATUS_POLICY.path, source)[:4]
    outcomes = [
        Outcome(slips[0], KILLED, 1, 0.1),
        Outcome(slips[1], KILLED, 1, 0.1),
        Outcome(slips[2], SURVIVED, 1, 0.1),
        Outcome(slips[3], SURVIVED, 1, 0.1),
    ]
    listed = {
        STATUS_POLICY.path: {
            slips[1].key: "listed, yet killed",
            slips[2].key: "really equivalent",
            "gone: 1 -> 2": "the code changed",
        }
    }
    file = tmp_path / "results.json"
    file.write_text(json.dumps({POLICY.path: {"commit": "old", "when": "then", "mutants": []}}))
    stored = store_results(outcomes, commit="abc1234", when="now", file=file)
    assert set(stored) == {POLICY.path, STATUS_POLICY.path}
    assert load_results(file) == stored
    other = Target("app/resilience/breaker.py", (), ())
    (result, never_run), problems = summarise([STATUS_POLICY, other], stored, listed)
    assert (result.total, result.killed, len(result.equivalent), len(result.survived)) == (
        4,
        2,
        1,
        1,
    )
    assert result.ratio == 2 / 3
    assert not result.meets_target
    assert not never_run.meets_target
    assert problems == [
        f"{STATUS_POLICY.path}: {slips[1].key!r} is listed as equivalent but killed",
        f"{STATUS_POLICY.path}: equivalent entry 'gone: 1 -> 2' matches no mutant",
    ]
    text = page([result, never_run], problems)
    assert f"| `{STATUS_POLICY.path}` | 4 | 2 | 1 | 1 | 67% | **no** | now, `abc1234` |" in text
    assert "| `app/resilience/breaker.py` | 0 | 0 | 0 | 0 | 0% | **no** | not run |" in text
    assert "really equivalent" in text
    assert slips[3].key in text


def test_every_test_path_a_target_names_exists() -> None:
    for target in TARGETS:
        for path in (*target.tests, *target.own):
            assert (REPO / path).exists(), f"{target.path}: {path}"
