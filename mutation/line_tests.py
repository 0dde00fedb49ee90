"""A pytest plugin that records which tests execute which lines of the mutated files.

Loaded with `-p mutation.line_tests`; `POINTS_MUTATION_FILES` (os.pathsep-separated absolute
paths) names the files and `POINTS_MUTATION_LINES` the JSON file it writes:
`{path: {line: [test node ids]}}`. Each mutant then runs only the tests that reach its lines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator

import coverage
import pytest

_coverage: coverage.Coverage | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _coverage
    files = os.environ.get("POINTS_MUTATION_FILES", "")
    if not files:
        return
    _coverage = coverage.Coverage(
        data_file=None, include=files.split(os.pathsep), config_file=False
    )
    _coverage.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    if _coverage is not None:
        _coverage.switch_context(item.nodeid)
    try:
        return (yield)
    finally:
        if _coverage is not None:
            _coverage.switch_context("")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _coverage is None:
        return
    _coverage.stop()
    data = _coverage.get_data()
    lines: dict[str, dict[int, list[str]]] = {}
    for path in data.measured_files():
        by_line = data.contexts_by_lineno(path)
        lines[path] = {line: sorted(c for c in contexts if c) for line, contexts in by_line.items()}
    with open(os.environ["POINTS_MUTATION_LINES"], "w", encoding="utf-8") as file:
        json.dump(lines, file)
