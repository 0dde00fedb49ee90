"""`python -m mutation`: mutate the decision modules, run the tests, write docs/mutation.md."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from mutation import equivalents
from mutation.operators import Mutant, mutants_of
from mutation.report import load_results, page, store_results, summarise
from mutation.runner import REPO, Outcome, line_tests, run_all
from mutation.targets import TARGETS, Target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument(
        "--only", nargs="+", metavar="PATH", help="just these modules (their rows are replaced)"
    )
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument(
        "--report",
        action="store_true",
        help="rewrite the page from mutation/results.json and equivalents.toml, running nothing",
    )
    parser.add_argument("--page", default="docs/mutation.md", help="where the report goes")
    args = parser.parse_args(argv)

    if args.report:
        return _write_page(args.page, load_results(), equivalents.load(), list(TARGETS))
    targets = [t for t in TARGETS if not args.only or t.path in args.only]
    if args.only and len(targets) != len(set(args.only)):
        known = ", ".join(t.path for t in TARGETS)
        parser.error(f"--only takes decision modules: {known}")
    work: list[tuple[Mutant, Target]] = [
        (mutant, target)
        for target in targets
        for mutant in mutants_of(target.path, (REPO / target.path).read_text(encoding="utf-8"))
    ]
    if args.list:
        for mutant, _ in work:
            print(f"{mutant.path}:{mutant.line} [{mutant.operator}] {mutant.key}")
        return 0

    known_equivalents = equivalents.load()
    print(f"recording which tests reach which lines ({len(targets)} modules) ...", flush=True)
    lines = line_tests(targets)
    done = 0
    lock = threading.Lock()

    def report(outcome: Outcome) -> None:
        nonlocal done
        with lock:
            done += 1
            m = outcome.mutant
            listed = m.key in known_equivalents.get(m.path, {})
            note = " (equivalent)" if listed and not outcome.killed else ""
            print(
                f"[{done}/{len(work)}] {outcome.status:8} {m.path}:{m.line} {m.key}{note} "
                f"({outcome.tests} tests, {outcome.seconds:.1f} s)",
                flush=True,
            )

    outcomes = run_all(work, lines, jobs=args.jobs, report=report)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    stored = store_results(outcomes, commit=commit, when=when)
    return _write_page(args.page, stored, known_equivalents, targets)


def _write_page(
    where: str,
    stored: dict[str, dict[str, Any]],
    known_equivalents: dict[str, dict[str, str]],
    checked: list[Target],
) -> int:
    """Print the checked modules' ratios, write the page; 0 if they all meet the target."""
    results, problems = summarise(TARGETS, stored, known_equivalents)
    mine = [r for r in results if r.target in checked]
    for r in mine:
        print(
            f"{r.target.path}: {r.ratio:.0%} ({r.killed}/{r.total - len(r.equivalent)} "
            f"killed, {len(r.equivalent)} equivalent, {len(r.survived)} survived)"
        )
    for problem in problems:
        print(f"equivalents.toml: {problem}", file=sys.stderr)
    (REPO / where).write_text(page(results, problems), encoding="utf-8")
    print(f"wrote {where}")
    return 0 if all(r.meets_target for r in mine) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
