"""The served process's collector settings (applied by `serve`, never by create_app)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.gc_tuning import FIRST_GENERATION_THRESHOLD, tune_for_serving
from app.main import create_app
from tests.conftest import make_settings, make_store


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_serving_freezes_the_startup_heap_and_collects_young_objects_less_often() -> None:
    _, second, third = gc.get_threshold()
    tune_for_serving()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (FIRST_GENERATION_THRESHOLD, second, third)


@pytest.mark.usefixtures("restored_gc")
def test_building_the_app_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    gc.unfreeze()
    create_app(make_settings(), store=make_store())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
