"""The one authorization rule every user-scoped route applies."""

from __future__ import annotations

from app.errors import Forbidden
from app.security.principal import Principal


def authorize(principal: Principal, user_id: str, scope: str) -> None:
    """A user may act only on their own id; a service needs the scope; else 403 forbidden."""
    if principal.kind == "user":
        if principal.id != user_id:
            # Said the same way whether or not the other user exists (no enumeration).
            raise Forbidden("This token may only act on its own user.")
        return
    if scope not in principal.scopes:
        raise Forbidden(f"This caller lacks the {scope} scope.")
