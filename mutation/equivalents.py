"""The surviving mutants judged equivalent, with the reason, read from `equivalents.toml`."""

from __future__ import annotations

import tomllib
from pathlib import Path

FILE = Path(__file__).resolve().parent / "equivalents.toml"


def load(file: Path = FILE) -> dict[str, dict[str, str]]:
    """`{path: {mutant key: reason}}`."""
    data = tomllib.loads(file.read_text(encoding="utf-8"))
    out: dict[str, dict[str, str]] = {}
    for path, entries in data.items():
        if not isinstance(entries, dict):
            raise ValueError(f"{file.name}: [{path}] must be a table of mutant key = reason")
        for key, reason in entries.items():
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError(f"{file.name}: {path} {key!r} needs a reason")
        out[path] = dict(entries)
    return out
