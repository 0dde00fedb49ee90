"""The in-process sliding-window counter behind the memory rate limit, on a fake clock."""

from __future__ import annotations

import pytest

from app.security.rate_limit import LocalSlidingWindow


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_amount_passes_then_the_next_waits_for_the_window() -> None:
    clock = Clock(600.0)  # the start of a 60 s window
    window = LocalSlidingWindow(3, 60, clock)
    assert [window.hit("a") for _ in range(3)] == [None, None, None]
    clock.now = 610.0
    wait = window.hit("a")
    # 3 in this window: one more fits only after it ends and has faded by a third.
    assert wait == pytest.approx(50 + 20)
    assert window.hit("b") is None  # another key has its own count


def test_the_previous_window_counts_by_how_much_it_still_overlaps() -> None:
    clock = Clock(600.0)
    window = LocalSlidingWindow(4, 60, clock)
    for _ in range(4):
        assert window.hit("a") is None
    clock.now = 660.0 + 15  # a quarter into the next window: 4 * 0.75 = 3 still count
    assert window.hit("a") is None  # 3 + 0 + 1 <= 4
    wait = window.hit("a")  # 3 + 1 + 1 > 4: wait until the old window weighs 2 (half-way)
    assert wait == pytest.approx(15)
    clock.now = 660.0 + 30
    assert window.hit("a") is None


def test_refused_requests_are_not_counted() -> None:
    clock = Clock(0.0)
    window = LocalSlidingWindow(1, 10, clock)
    assert window.hit("a") is None
    for _ in range(50):
        assert window.hit("a") is not None
    clock.now = 20.0  # two windows later nothing of the old count is left
    assert window.hit("a") is None


def test_idle_keys_are_forgotten() -> None:
    clock = Clock(0.0)
    window = LocalSlidingWindow(5, 10, clock)
    for n in range(1000):
        window.hit(f"user-{n}")
    clock.now = 25.0
    window.hit("late")
    assert len(window._keys) == 1
