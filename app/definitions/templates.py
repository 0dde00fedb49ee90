"""The template language of definitions: `{account.member_id}`, `{settings.api_key}`, `{token}`.

A template is text with names in braces (`{{` and `}}` for literal braces). `{a|b}` takes the
first of its names with a value (an optional account field, else a setting). Names are checked
when the definition loads: one that names nothing is a start-up error, never a blank at run time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

_PLACE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"(account|settings)\.[A-Za-z_][A-Za-z0-9_]*|request_id|request_uuid|token")


class TemplateError(ValueError):
    """The text is not a template, or it names something the definition does not have."""


@dataclass(frozen=True, slots=True)
class Ref:
    """One `{...}`: the names to try, in order."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template."""

    text: str
    parts: tuple[str | Ref, ...]

    @classmethod
    def parse(cls, text: str, known: Collection[str]) -> Template:
        """The template `text`; every name must be in `known` (TemplateError otherwise)."""
        parts: list[str | Ref] = []
        at = 0
        for match in _PLACE.finditer(text):
            if match.start() > at:
                parts.append(text[at : match.start()])
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            elif token in ("{", "}"):
                raise TemplateError(f"{text!r}: an unmatched {token!r} (write {token * 2})")
            else:
                names = tuple(name.strip() for name in match.group(1).split("|"))
                for name in names:
                    if not _NAME.fullmatch(name):
                        raise TemplateError(f"{text!r}: {{{name}}} is not a template name")
                    if name not in known:
                        raise TemplateError(
                            f"{text!r}: {{{name}}} names nothing this definition has"
                        )
                parts.append(Ref(names))
            at = match.end()
        if at < len(text):
            parts.append(text[at:])
        return cls(text, tuple(parts))

    @property
    def names(self) -> set[str]:
        """Every name the template uses."""
        return {name for part in self.parts if isinstance(part, Ref) for name in part.names}

    def render(self, values: Mapping[str, str], encode: Callable[[str], str] = str) -> str:
        """The text with each `{...}` replaced by its first value, passed through `encode`."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = next((values[n] for n in part.names if values.get(n)), "")
            out.append(encode(value))
        return "".join(out)
