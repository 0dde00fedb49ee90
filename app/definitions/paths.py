"""The path language of definitions: where a value sits in a JSON answer.

`data.user_points.points`, `balances[0].value`, `[2]`: keys joined by dots, list positions in
brackets, read from the root of the answer. A key is letters, digits, `_` and `-`. A path that
finds nothing yields `MISSING`, never an error: what a missing value means is the caller's rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_FIRST = re.compile(r"([A-Za-z0-9_-]+)|\[(\d{1,6})\]")
_NEXT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d{1,6})\]")


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class PathError(ValueError):
    """The text is not a path."""


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed path: the keys and positions to follow."""

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> Path:
        """The path `text`, or PathError saying what is wrong with it."""
        steps: list[str | int] = []
        at = 0
        while at < len(text) or not steps:
            match = (_NEXT if steps else _FIRST).match(text, at)
            if match is None:
                raise PathError(
                    f"{text!r} is not a path (keys joined by dots, list positions as [n])"
                )
            key, index = match.groups()
            steps.append(key if key is not None else int(index))
            at = match.end()
        return cls(text, tuple(steps))

    def find(self, document: object) -> object:
        """The value at this path in `document`, or MISSING."""
        value = document
        for step in self.steps:
            if isinstance(step, str):
                if not isinstance(value, dict) or step not in value:
                    return MISSING
                value = value[step]
            else:
                if not isinstance(value, list) or step >= len(value):
                    return MISSING
                value = value[step]
        return value
