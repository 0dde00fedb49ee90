"""GafaPay as a definition against the GafaPay code adapter: the same answer, the same outcome.

Both adapters are fed every hostile body of the adapters' corpus (tests/providers/
test_no_500_from_upstream.py) and every GafaPay fault case of the emulator, over the same seam;
their outcomes (status, code, upstream status, points, unit, details) must be equal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.definitions.loader import read_definition
from app.outbound.httpx_upstream import HttpxUpstream
from app.outbound.upstream import UpstreamConfig
from app.providers import CallContext, PointsProvider, ProviderDeps, ProviderError, ProviderPlugin
from app.providers.gafapay import plugin as code_plugin
from app.sandbox.faults import Fault
from app.sandbox.gafapay import GafapaySandbox, create_gafapay_app
from tests.conftest import ALICE_GAFAPAY, COMPANY_ID, CURRENCY, GAFAPAY, GAFAPAY_TOKEN
from tests.providers.test_no_500_from_upstream import COMMON, GAFAPAY_ONLY, Hostile

SHIPPED = Path(__file__).resolve().parents[2] / "app" / "definitions" / "shipped"
DECLARED = read_definition(SHIPPED / "gafapay.yaml")
SETTINGS = {"base_url": GAFAPAY, "company_id": COMPANY_ID, "token": GAFAPAY_TOKEN, "timeout": 1.0}
ACCOUNT = {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY}
Handler = Callable[[httpx.Request], Any]


def adapter(plugin: ProviderPlugin, transport: httpx.AsyncBaseTransport) -> PointsProvider:
    def upstream(base_url: str, timeout: float) -> HttpxUpstream:
        config = UpstreamConfig(
            provider="gafapay",
            base_url=base_url,
            timeout=timeout,
            connect_timeout=1.0,
            max_bytes=1 << 20,
        )
        return HttpxUpstream(config, transport=transport)

    settings = plugin.settings_model.model_validate(SETTINGS, context={"allow_http": True})
    return plugin.build(settings, ProviderDeps(upstream=upstream))


async def outcome(
    plugin: ProviderPlugin, transport: httpx.AsyncBaseTransport, account: dict[str, str]
) -> tuple[object, ...]:
    served = adapter(plugin, transport)
    model = plugin.account_model.model_validate(account)
    try:
        balance = await asyncio.wait_for(
            served.fetch_balance(model, CallContext(request_id="req-1")), 2.0
        )
    except ProviderError as exc:
        return ("error", exc.code, exc.status, exc.upstream_status, exc.retry_after)
    except TimeoutError:
        return ("timeout",)
    return ("ok", str(balance.points), balance.unit, balance.details)


async def both(transport: Callable[[], httpx.AsyncBaseTransport], account: dict[str, str]) -> None:
    code = await outcome(code_plugin, transport(), account)
    declared = await outcome(DECLARED, transport(), account)
    assert declared == code


HOSTILE = [h for h in COMMON + GAFAPAY_ONLY if h.bug is None]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.name for h in HOSTILE])
async def test_every_hostile_answer_gives_the_same_outcome(hostile: Hostile) -> None:
    await both(lambda: httpx.MockTransport(lambda _: hostile.response()), ACCOUNT)


def emulator(fault: Fault | None, *, key: str = "*") -> httpx.AsyncBaseTransport:
    sandbox = GafapaySandbox(company_id=COMPANY_ID, tokens={GAFAPAY_TOKEN})
    sandbox.add_account(ALICE_GAFAPAY, CURRENCY, "250.0")
    sandbox.add_account("0b0b", CURRENCY, "1234.56", user_type=3)
    if fault is not None:
        sandbox.faults.set(key, fault)
    return httpx.ASGITransport(app=create_gafapay_app(sandbox))


FAULTS = {
    "none": None,
    "status-500": Fault(status=500),
    "status-502": Fault(status=502),
    "status-503-retry-after": Fault(status=503, retry_after=7),
    "status-429": Fault(status=429, retry_after=3),
    "status-401": Fault(status=401),
    "status-403": Fault(status=403),
    "status-404": Fault(status=404),
    "status-201": Fault(status=201),
    "malformed": Fault(malformed=True),
    "oversized": Fault(oversized=2_000_000),
    "html": Fault(content_type="text/html"),
    "body-rejected": Fault(body='{"success":0,"error":["User points not found"]}'),
    "body-rejected-500": Fault(status=500, body='{"success":0,"error":["boom"]}'),
    "body-another-user": Fault(
        body='{"success":1,"error":[],"data":{"user_points":{"user_id":"0b0b",'
        f'"currency_id":"{CURRENCY}","points":1.5}}}}}}'
    ),
    "body-points-string": Fault(
        body='{"success":1,"error":[],"data":{"user_points":{"user_id":"'
        f'{ALICE_GAFAPAY}","currency_id":"{CURRENCY}","points":"250.0"}}}}}}'
    ),
    "body-success-true": Fault(body='{"success":true}'),
    "hang": Fault(hang=True),
}


@pytest.mark.parametrize("name", list(FAULTS), ids=list(FAULTS))
async def test_every_emulator_fault_gives_the_same_outcome(name: str) -> None:
    await both(lambda: emulator(FAULTS[name]), ACCOUNT)


@pytest.mark.parametrize(
    "account",
    [
        {"gafapay_user_id": ALICE_GAFAPAY.upper(), "currency_id": CURRENCY.upper()},
        {"gafapay_user_id": "000b0b", "currency_id": CURRENCY},
        {"gafapay_user_id": "fff", "currency_id": CURRENCY},  # unknown: success 0
        {"gafapay_user_id": "0B0B", "currency_id": CURRENCY},
    ],
    ids=["upper-case", "leading-zeros", "unknown-user", "short-id"],
)
async def test_accounts_written_differently_give_the_same_outcome(account: dict[str, str]) -> None:
    await both(lambda: emulator(None), account)


async def test_the_definition_answers_like_the_adapter_when_all_is_well() -> None:
    result = await outcome(DECLARED, emulator(None), ACCOUNT)
    assert result == ("ok", "250.0", f"gafapay:{CURRENCY}", None)
