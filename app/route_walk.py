"""Every route an app serves, with FastAPI's included-router wrappers opened up."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes themselves, in no particular order (routers are included without a prefix)."""
    pending = list(routes)
    while pending:
        route = pending.pop()
        nested = getattr(route, "routes", None)
        if nested is None and hasattr(route, "original_router"):
            nested = route.original_router.routes
        if nested is not None:
            pending.extend(nested)
        else:
            yield route
