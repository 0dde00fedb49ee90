"""Path parameters and headers shared by the user-scoped routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from app.users import USER_ID_PATTERN

PERSONAL = {"cache-control": "no-store"}

UserId = Annotated[
    str,
    Path(
        pattern=USER_ID_PATTERN,
        description="1-128 characters: letters, digits and `. _ @ -`, starting with a letter "
        "or digit.",
        examples=["alice"],
    ),
]
ProviderName = Annotated[str, Path(max_length=64, examples=["benepia"])]
