"""The sandbox tests run the demo as a user would."""

from __future__ import annotations

from tests.support.demo import demo

__all__ = ["demo"]
