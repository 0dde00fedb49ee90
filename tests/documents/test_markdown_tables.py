"""The README and docs render as their authors meant: every table is a table (CommonMark + GFM
tables, as GitHub renders them), with as many cells in each row as in its header."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.md")]
)
by_document = pytest.mark.parametrize(
    "document", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS]
)


def render(text: str) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(text)


def tables(tokens: list[Token]) -> list[list[int]]:
    """Each table's row count of cells as rendered (header first)."""
    found: list[list[int]] = []
    for token in tokens:
        if token.type == "table_open":
            found.append([])
        elif token.type == "tr_open":
            found[-1].append(0)
        elif token.type in ("th_open", "td_open"):
            found[-1][-1] += 1
    return found


def written_cells(text: str, tokens: list[Token]) -> list[list[int]]:
    """Each table's cell count per source row: the renderer pads or cuts a row to the header's
    width, so a row with a stray or missing `|` shows only in the source."""
    lines = text.splitlines()
    counts = []
    for token in tokens:
        if token.type == "table_open" and token.map is not None:
            start, end = token.map
            rows = [line for i, line in enumerate(lines[start:end]) if i != 1]  # not the ---
            counts.append([len(_CELL_SEPARATOR.split(row.strip().strip("|"))) for row in rows])
    return counts


_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")


def stray_rows(tokens: list[Token]) -> list[str]:
    """Paragraph lines that look like table rows: a table broken by something inside it."""
    return [
        line
        for token in tokens
        if token.type == "inline" and token.level > 0 and not _in_table(tokens, token)
        for line in token.content.splitlines()
        if line.startswith("| ") and line.rstrip().endswith("|")
    ]


def _in_table(tokens: list[Token], inline: Token) -> bool:
    depth = 0
    for token in tokens:
        if token is inline:
            return depth > 0
        depth += token.type == "table_open"
        depth -= token.type == "table_close"
    return False


def test_the_checker_finds_a_table_broken_by_a_paragraph() -> None:
    broken = "| a | b |\n|---|---|\n| 1 | 2 |\n\nA paragraph.\n| 3 | 4 |\n| 5 | 6 |\n"
    tokens = render(broken)
    assert tables(tokens) == [[2, 2]]
    assert stray_rows(tokens) == ["| 3 | 4 |", "| 5 | 6 |"]


def test_the_checker_finds_a_row_with_a_stray_pipe() -> None:
    text = "| a | b |\n|---|---|\n| `x|y` | 2 |\n| `x\\|y` | 2 |\n"
    tokens = render(text)
    assert tables(tokens) == [[2, 2, 2]]
    assert written_cells(text, tokens) == [[2, 3, 2]]


@by_document
def test_every_table_renders_whole(document: Path) -> None:
    tokens = render(document.read_text(encoding="utf-8"))
    assert stray_rows(tokens) == [], "rows rendered as text: something sits inside a table"
    text = document.read_text(encoding="utf-8")
    for rows, written in zip(tables(tokens), written_cells(text, tokens), strict=True):
        assert written == rows, f"a row's cells differ from its header's: {written}"


def test_the_readme_has_its_tables() -> None:
    tokens = render((ROOT / "README.md").read_text(encoding="utf-8"))
    api = next(rows for rows in tables(tokens) if rows[0] == 2 and len(rows) >= 12)
    assert len(api) == 13, "the API table: a header and 12 routes"
