"""The mutants the mutator makes, and the ones it must not make."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mutation import equivalents
from mutation.operators import mutants_of
from mutation.targets import TARGETS

REPO = Path(__file__).resolve().parents[2]

SAMPLE = '''\
"""A docstring: never mutated."""
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    LIMIT_FOR_TYPES = 3

LIMIT = 10


def decide(a: int, b: int = 2) -> bool:
    """Not mutated either."""
    assert isinstance(a, int)
    note = f"{a > b}"
    if a < b and not a:
        raise ValueError("no")
    return min(a, b) == LIMIT
'''


def keys(source: str) -> list[str]:
    return [m.key for m in mutants_of("sample.py", source)]


def test_every_operator_on_a_sample() -> None:
    assert keys(SAMPLE) == [
        "<module>: 10 -> 11",
        "<module>: 10 -> 9",
        "<module>: 2 -> 3",
        "<module>: 2 -> 1",
        "decide: a < b -> a <= b",
        "decide: a < b -> a >= b",
        "decide: a < b and (not a) -> a < b or not a",
        "decide: not a -> a",
        "decide: raise ValueError('no') -> pass",
        "decide: return min(a, b) == LIMIT -> return None",
        "decide: min -> max",
        "decide: min(a, b) == LIMIT -> min(a, b) != LIMIT",
    ]


def test_left_alone_docstrings_annotations_asserts_fstrings_type_checking() -> None:
    changed_lines = {m.line for m in mutants_of("sample.py", SAMPLE)}
    untouched = ("docstring", "LIMIT_FOR_TYPES", "assert", 'f"', "def decide")
    for number, text in enumerate(SAMPLE.splitlines(), start=1):
        if any(word in text for word in untouched) and "b: int = 2" not in text:
            assert number not in changed_lines, text


def test_a_mutant_changes_only_its_span_even_after_non_ascii_text() -> None:
    source = 'MESSAGE = "포인트"  # 한국어\nLIMIT = 1 if MESSAGE else 2\n'
    mutants = mutants_of("sample.py", source)
    first = mutants[0]
    assert first.key == "<module>: 1 -> 2"
    assert first.apply(source) == 'MESSAGE = "포인트"  # 한국어\nLIMIT = (2) if MESSAGE else 2\n'


def test_same_change_twice_in_one_scope_gets_numbered_keys() -> None:
    assert keys("def f(x):\n    return x + 1, x - 1\n")[-4:] == [
        "f: 1 -> 2",
        "f: 1 -> 0",
        "f: 1 -> 2 #2",
        "f: 1 -> 0 #2",
    ]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.path)
def test_every_mutant_of_every_decision_module_compiles_and_differs(target: object) -> None:
    from mutation.targets import Target

    assert isinstance(target, Target)
    source = (REPO / target.path).read_text(encoding="utf-8")
    original = ast.dump(ast.parse(source))
    mutants = mutants_of(target.path, source)
    assert mutants
    assert len({m.key for m in mutants}) == len(mutants)
    for mutant in mutants:
        mutated = mutant.apply(source)
        assert ast.dump(ast.parse(mutated)) != original, mutant.key


def test_equivalent_entries_name_current_mutants_with_reasons() -> None:
    listed = equivalents.load()
    targets = {t.path: t for t in TARGETS}
    for path, entries in listed.items():
        assert path in targets, f"{path} is not a decision module"
        source = (REPO / path).read_text(encoding="utf-8")
        current = {m.key for m in mutants_of(path, source)}
        stale = set(entries) - current
        assert not stale, f"{path}: entries match no mutant (code changed?): {sorted(stale)}"


def test_an_entry_without_a_reason_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "equivalents.toml"
    file.write_text('["app/resilience/retry.py"]\n"f: 1 -> 2" = " "\n', encoding="utf-8")
    with pytest.raises(ValueError, match="needs a reason"):
        equivalents.load(file)


def test_the_docs_page_lists_every_decision_module() -> None:
    page = (REPO / "docs" / "mutation.md").read_text(encoding="utf-8")
    for target in TARGETS:
        assert f"| `{target.path}` |" in page
