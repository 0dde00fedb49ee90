"""Garbage-collector settings for the served process (`points-gateway serve`), never on import.

Measured in process on these machines at 50 concurrent uncached requests, CPython's cyclic
collector took about a fifth of the gateway's CPU: each request leaves a few hundred container
objects alive across its awaits, so the default first-generation threshold (700) ran a
collection every two or three requests, and every full collection walked the whole heap of
imported modules, FastAPI routes and pydantic schemas. Two changes, both standard practice for
long-running CPython servers:

- `gc.freeze()` once the app is built: what exists at start-up lives for the whole process and
  is left out of every later collection;
- a first-generation threshold of 7,000 (ten times the default), so young garbage is collected
  every twenty-odd requests instead of every two or three; the older generations keep CPython's
  own ratios.

An application that embeds the gateway (`create_app`) keeps its own collector settings: only
the `serve` command calls this. The soak benchmark (docs/performance.md) checks that memory
stays flat with these settings.
"""

from __future__ import annotations

import gc

FIRST_GENERATION_THRESHOLD = 7_000


def tune_for_serving() -> None:
    """Freeze the start-up heap and collect young objects less often."""
    _, second, third = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(FIRST_GENERATION_THRESHOLD, second, third)
