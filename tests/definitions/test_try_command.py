"""`points-gateway providers try`: one real call through the full path, against the emulator."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import main
from app.sandbox.demo import (
    ALICE_GAFAPAY,
    DEMO_CURRENCY,
    DEMO_GAFAPAY_COMPANY,
    DEMO_GAFAPAY_TOKEN,
)
from app.settings import get_settings
from tests.support.processes import Sandboxes, running_sandboxes

SHIPPED = Path(__file__).resolve().parents[2] / "app" / "definitions" / "shipped"


@pytest.fixture
def sandboxes() -> Iterator[Sandboxes]:
    with running_sandboxes() as running:
        yield running


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, sandboxes: Sandboxes) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("POINTS_"):
            monkeypatch.delenv(name)
    values = {
        "POINTS_SANDBOX": "true",
        "POINTS_PROVIDERS_DIR": str(SHIPPED),
        "POINTS_PROVIDERS__GAFAPAY_DECLARED__BASE_URL": sandboxes.urls.gafapay_url,
        "POINTS_PROVIDERS__GAFAPAY_DECLARED__COMPANY_ID": DEMO_GAFAPAY_COMPANY,
        "POINTS_PROVIDERS__GAFAPAY_DECLARED__TOKEN": DEMO_GAFAPAY_TOKEN,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], account: dict[str, str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["providers", "try", "gafapay_declared", "--account", json.dumps(account)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("environment")
def test_try_prints_the_balance(capsys: pytest.CaptureFixture[str], sandboxes: Sandboxes) -> None:
    code, out, _ = run(capsys, {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": DEMO_CURRENCY})
    assert code == 0
    entry = json.loads(out)
    assert (entry["status"], entry["points"]) == ("ok", "250.0")
    assert sandboxes.gafapay.points_calls == 1
    assert DEMO_GAFAPAY_TOKEN not in out


@pytest.mark.usefixtures("environment")
def test_try_prints_the_problem_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, {"gafapay_user_id": "fff", "currency_id": DEMO_CURRENCY})
    assert code == 1
    assert json.loads(out)["error"]["code"] == "provider_rejected"


@pytest.mark.usefixtures("environment")
def test_try_names_a_bad_account_field_not_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, {"gafapay_user_id": "zz-sEcReT-zz", "currency_id": DEMO_CURRENCY})
    assert code == 2
    assert "--account gafapay_user_id" in err
    assert "sEcReT" not in err
