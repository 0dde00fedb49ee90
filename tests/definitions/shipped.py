"""The shipped definitions (app/definitions/shipped) and their emulators, served in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette

from app.accounts.memory_store import MemoryAccountStore, load_accounts
from app.main import create_app
from app.providers.registry import discover_plugins
from app.sandbox.loyalty import smile_io, square_loyalty, talon_one, yotpo
from app.sandbox.loyalty.members import LoyaltySandbox
from app.settings import Settings
from tests.conftest import PLAIN, serve_in_process

SHIPPED = Path(__file__).resolve().parents[2] / "app" / "definitions" / "shipped"
REFUSED_KEY = "sandbox-refused-key-not-real-9999"


@dataclass(frozen=True, slots=True)
class Case:
    """One shipped definition, its emulator, and what its documentation says it answers."""

    name: str
    schema: str
    sandbox: Callable[[], LoyaltySandbox]
    emulator: Callable[[LoyaltySandbox], Starlette]
    settings: Mapping[str, str]
    refused: Mapping[str, str]
    account: Mapping[str, str]
    unknown: Mapping[str, str]
    points: str
    unit: str
    not_found: str
    secrets: tuple[str, ...]
    default_base_url: str | None
    details: Mapping[str, str] | None = None
    upstream_code: str | None = None
    # An answer about another customer, where the definition checks whose answer it is.
    someone_else: bytes | None = None

    def __str__(self) -> str:
        return self.name


SMILE = Case(
    name="smile_io",
    schema="SmileIoAccount",
    sandbox=smile_io.smile_sandbox,
    emulator=smile_io.create_smile_app,
    settings={"base_url": "https://smile.emulator.test", "api_key": smile_io.SMILE_SANDBOX_KEY},
    refused={"api_key": REFUSED_KEY},
    account={"customer_id": smile_io.DOCUMENTED_CUSTOMER},
    unknown={"customer_id": "404404404"},
    points="300",
    unit="smile_io_point",
    not_found="The requested customer does not exist.",
    secrets=(smile_io.SMILE_SANDBOX_KEY,),
    default_base_url="https://api.smile.io",
    someone_else=b'{"customer":{"id":304169229,"points_balance":999}}',
)
SQUARE = Case(
    name="square_loyalty",
    schema="SquareLoyaltyAccount",
    sandbox=square_loyalty.square_sandbox,
    emulator=square_loyalty.create_square_app,
    settings={
        "base_url": "https://square.emulator.test",
        "access_token": square_loyalty.SQUARE_SANDBOX_TOKEN,
    },
    refused={"access_token": REFUSED_KEY},
    account={"loyalty_account_id": square_loyalty.DOCUMENTED_ACCOUNT},
    unknown={"loyalty_account_id": "00000000-0000-0000-0000-000000000404"},
    points="10",
    unit="square_loyalty_point",
    not_found="Loyalty account not found.",
    upstream_code="NOT_FOUND",
    secrets=(square_loyalty.SQUARE_SANDBOX_TOKEN,),
    default_base_url="https://connect.squareup.com",
    someone_else=(
        b'{"loyalty_account":{"id":"452ea896-f36e-4c5c-95d5-e5aa727b9b2c","balance":-10,'
        b'"program_id":"d619f755-2d17-41f3-990d-c04ecedd64dd"}}'
    ),
)
TALON = Case(
    name="talon_one",
    schema="TalonOneAccount",
    sandbox=talon_one.talon_sandbox,
    emulator=talon_one.create_talon_app,
    settings={
        "base_url": "https://talon.emulator.test",
        "api_key": talon_one.TALON_SANDBOX_KEY,
        "program_id": talon_one.SANDBOX_PROGRAM,
    },
    refused={"api_key": REFUSED_KEY},
    account={"integration_id": talon_one.DOCUMENTED_PROFILE},
    unknown={"integration_id": "nobody@example.com"},
    points="286",
    unit="talon_one_point",
    details={"pending": "50", "negative": "0"},
    not_found="The customer profile or loyalty program was not found.",
    secrets=(talon_one.TALON_SANDBOX_KEY,),
    default_base_url=None,
)
YOTPO = Case(
    name="yotpo",
    schema="YotpoAccount",
    sandbox=yotpo.yotpo_sandbox,
    emulator=yotpo.create_yotpo_app,
    settings={
        "base_url": "https://yotpo.emulator.test",
        "guid": yotpo.YOTPO_SANDBOX_GUID,
        "api_key": yotpo.YOTPO_SANDBOX_KEY,
    },
    refused={"api_key": REFUSED_KEY},
    account={"email": yotpo.DOCUMENTED_EMAIL},
    unknown={"email": "nobody@example.com"},
    points="23710",
    unit="yotpo_point",
    not_found="Customer not found",
    secrets=(yotpo.YOTPO_SANDBOX_GUID, yotpo.YOTPO_SANDBOX_KEY),
    default_base_url="https://loyalty.yotpo.com",
    someone_else=b'{"email":"john@doe.com","points_balance":99999}',
)
CASES = (SMILE, SQUARE, TALON, YOTPO)


class RecordingTransport(httpx.ASGITransport):
    """An in-process transport to an emulator that keeps every request the gateway sent."""

    def __init__(self, app: Starlette) -> None:
        super().__init__(app=app)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await super().handle_async_request(request)


@dataclass(slots=True)
class Served:
    """A gateway serving one shipped definition over its emulator."""

    client: httpx.AsyncClient
    sandbox: LoyaltySandbox
    upstream: RecordingTransport
    emulator: httpx.AsyncClient

    async def fault(self, **knobs: object) -> None:
        """Install a fault on the emulator through its admin route, as an operator would."""
        answer = await self.emulator.post("/__sandbox/faults", json={"key": "*", **knobs})
        assert answer.status_code == 200, answer.text


def gateway_settings(
    case: Case, provider: Mapping[str, str] | None = None, **gateway: object
) -> Settings:
    """Settings serving `case` alone (plain: no auth, cache, retries or breaker), its provider
    settings overridden by `provider` and the gateway's by `gateway`."""
    return Settings.model_validate(
        {
            **PLAIN,
            "enabled_providers": [case.name],
            "providers_dir": str(SHIPPED),
            "providers": {case.name: {**case.settings, **(provider or {})}},
            **gateway,
        }
    )


def seeded(case: Case) -> dict[str, dict[str, dict[str, str]]]:
    """alice holds the documented customer, eve an unknown one (linked by the operator)."""
    return {"alice": {case.name: dict(case.account)}, "eve": {case.name: dict(case.unknown)}}


@asynccontextmanager
async def serve_shipped(
    case: Case,
    settings: Settings | None = None,
    accounts: dict[str, dict[str, dict[str, str]]] | None = None,
) -> AsyncIterator[Served]:
    """The gateway with `case`'s definition enabled, over a fresh emulator of its provider."""
    sandbox = case.sandbox()
    emulator = case.emulator(sandbox)
    plugins = discover_plugins(SHIPPED)
    store = MemoryAccountStore(load_accounts(accounts or seeded(case), plugins, source="test"))
    upstream = RecordingTransport(emulator)
    app = create_app(settings or gateway_settings(case), transport=upstream, store=store)
    admin = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url="http://admin")
    async with serve_in_process(app) as client, admin:
        yield Served(client, sandbox, upstream, admin)
