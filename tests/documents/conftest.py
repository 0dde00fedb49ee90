"""The documents' tests run the demo as a reader would."""

from __future__ import annotations

from tests.support.demo import demo

__all__ = ["demo"]
