"""What a user id looks like, for every way one enters the gateway (routes, imports)."""

from __future__ import annotations

import re

USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
_USER_ID = re.compile(USER_ID_PATTERN)


def is_user_id(value: object) -> bool:
    """1-128 characters of letters, digits and `. _ @ -`, starting with a letter or digit."""
    return isinstance(value, str) and _USER_ID.fullmatch(value) is not None
