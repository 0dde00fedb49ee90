"""The demo: both emulators and the gateway wired to them, seeded with demo users."""

from __future__ import annotations

import asyncio
import secrets
import signal
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import jwt
from pydantic import BaseModel

import app.definitions
from app.accounts.admin import seed
from app.accounts.engine import build_engine
from app.accounts.memory_store import load_accounts
from app.accounts.migrate import upgrade
from app.accounts.sealing import Keyring
from app.accounts.sql_store import SqlAccountStore
from app.definitions.loader import read_definition
from app.http_protocol import header_capped_protocol
from app.main import create_app
from app.providers.registry import BUILTIN_PLUGINS
from app.sandbox.gafapay import GafapaySandbox, create_gafapay_app
from app.sandbox.iamport import IamportSandbox, create_iamport_app
from app.sandbox.loyalty.smile_io import (
    DOCUMENTED_CUSTOMER,
    SMILE_SANDBOX_KEY,
    create_smile_app,
    smile_sandbox,
)
from app.sandbox.servers import Served, ServerGroup, bind
from app.settings import Settings

# A provider from a definition, served beside the two built-in ones (docs/definitions.md).
SHIPPED_DEFINITIONS = Path(app.definitions.__file__).parent / "shipped"
DEFINED = "smile_io"
DEMO_PLUGINS = {
    **{p.name: p for p in BUILTIN_PLUGINS},
    DEFINED: read_definition(SHIPPED_DEFINITIONS / f"{DEFINED}.yaml"),
}
DEMO_ISSUER = "points-gateway-demo"

# Sandbox-only credentials: they open nothing but the emulators below.
DEMO_IMP_KEY = "demo_imp_key"
DEMO_IMP_SECRET = "demo-imp-secret-not-real"
DEMO_GAFAPAY_COMPANY = "59388167894b4d10a04fe5da3b8a2104"
DEMO_GAFAPAY_TOKEN = "demo.gafapay.session-token-not-real"
DEMO_CURRENCY = "1f1519903ed240578f071aa45cb479f2"
ALICE_GAFAPAY = "fb8f09210e0f46b7b4262d77f5b6c273"
BOB_GAFAPAY = "0a11ce5b0b"
CAROL_GAFAPAY = "ca401"

DEMO_ACCOUNTS: dict[str, dict[str, dict[str, str]]] = {
    "alice": {
        "benepia": {"benepia_user": "alice.kim", "benepia_password": "alice-benepia-pw"},
        "gafapay": {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": DEMO_CURRENCY},
    },
    "bob": {"gafapay": {"gafapay_user_id": BOB_GAFAPAY, "currency_id": DEMO_CURRENCY}},
    "carol": {
        "benepia": {"benepia_user": "carol.lee", "benepia_password": "a-wrong-password"},
        "gafapay": {"gafapay_user_id": CAROL_GAFAPAY, "currency_id": DEMO_CURRENCY},
    },
}


# Alice also has Smile.io points (a defined provider); linked by the demo's operator.
DEMO_DEFINED_ACCOUNTS: dict[str, dict[str, dict[str, str]]] = {
    "alice": {DEFINED: {"customer_id": DOCUMENTED_CUSTOMER}},
}


def demo_sandboxes() -> tuple[IamportSandbox, GafapaySandbox]:
    """Emulator state holding the demo users' upstream accounts."""
    iamport = IamportSandbox(imp_key=DEMO_IMP_KEY, imp_secret=DEMO_IMP_SECRET)
    iamport.add_account("alice.kim", "alice-benepia-pw", 12000)
    iamport.add_account("carol.lee", "carol-real-password", 3000)
    gafapay = GafapaySandbox(company_id=DEMO_GAFAPAY_COMPANY, tokens={DEMO_GAFAPAY_TOKEN})
    gafapay.add_account(ALICE_GAFAPAY, DEMO_CURRENCY, Decimal("250.0"))
    gafapay.add_account(BOB_GAFAPAY, DEMO_CURRENCY, Decimal("1234.56"))
    gafapay.add_account(CAROL_GAFAPAY, DEMO_CURRENCY, Decimal("80"))
    return iamport, gafapay


def demo_settings(
    iamport_url: str, gafapay_url: str, smile_url: str | None = None, **overrides: object
) -> Settings:
    """Gateway settings pointing at the emulators (read from no environment); with `smile_url`
    the defined Smile.io provider is served too."""
    defined: dict[str, object] = {}
    if smile_url is not None:
        defined = {DEFINED: {"base_url": smile_url, "api_key": SMILE_SANDBOX_KEY}}
    values: dict[str, object] = {
        "sandbox": True,
        "enabled_providers": ["benepia", "gafapay", *defined],
        "providers_dir": SHIPPED_DEFINITIONS if defined else None,
        "providers": {
            **defined,
            "benepia": {
                "base_url": iamport_url,
                "imp_key": DEMO_IMP_KEY,
                "imp_secret": DEMO_IMP_SECRET,
                "channel_key": "channel-key-demo-kcp",
            },
            "gafapay": {
                "base_url": gafapay_url,
                "company_id": DEMO_GAFAPAY_COMPANY,
                "token": DEMO_GAFAPAY_TOKEN,
            },
        },
        **overrides,
    }
    return Settings.model_validate(values)


def demo_accounts(*, defined: bool = False) -> dict[str, dict[str, BaseModel]]:
    """The demo users' linked accounts, validated (with the defined provider's, if asked)."""
    accounts = {user: dict(links) for user, links in DEMO_ACCOUNTS.items()}
    if defined:
        for user, links in DEMO_DEFINED_ACCOUNTS.items():
            accounts.setdefault(user, {}).update(links)
    return load_accounts(accounts, DEMO_PLUGINS, source="demo accounts")


async def prepare_demo_database(database_url: str, keyring: Keyring) -> None:
    """Migrate a fresh database and link the demo users' accounts in it."""
    engine = build_engine(database_url, timeout=5.0)
    await upgrade(engine)
    store = SqlAccountStore(engine, keyring, DEMO_PLUGINS, timeout=5.0)
    try:
        await seed(store, demo_accounts(defined=True), DEMO_PLUGINS)
    finally:
        await store.aclose()


DEMO_USERS = ("alice", "bob", "carol", "nobody")


def demo_tokens(secret: str, *, lifetime: int = 3600) -> dict[str, str]:
    """Short-lived HS256 tokens for the demo users, signed with the demo's ephemeral secret."""
    now = int(time.time())
    return {
        user: jwt.encode(
            {"sub": user, "iss": DEMO_ISSUER, "iat": now, "exp": now + lifetime}, secret, "HS256"
        )
        for user in DEMO_USERS
    }


def _banner(base: str, tokens: dict[str, str]) -> str:
    auth = '-H "Authorization: Bearer $DEMO_TOKEN_ALICE"'
    return "\n".join(
        [
            *(f"DEMO_TOKEN_{user.upper()}={token}" for user, token in tokens.items()),
            "",
            "(paste the lines above into your shell; each token is valid for one hour)",
            "",
            f"points-gateway demo serving on {base} (sandbox emulators, not real providers)",
            "Credentials are sealed with an ephemeral key in a temporary SQLite database, and the",
            "tokens are signed with an ephemeral secret: all of it is gone when the demo stops.",
            "",
            "Try:",
            f"  curl -s {auth} {base}/users/alice/points           # all three providers",
            f'  curl -s -H "Authorization: Bearer $DEMO_TOKEN_BOB" {base}/users/bob/points',
            f'  curl -s -H "Authorization: Bearer $DEMO_TOKEN_CAROL" {base}/users/carol/points'
            "   # Benepia refused: 200, complete: false",
            f'  curl -s -H "Authorization: Bearer $DEMO_TOKEN_NOBODY" {base}/users/nobody/points'
            "   # nothing linked: balances []",
            f"  curl -s {auth} {base}/users/alice/points/gafapay   # one provider",
            f"  curl -s {auth} {base}/users/alice/points/smile_io  # one from a definition",
            f"  curl -s {auth} '{base}/users/alice/points?providers=benepia'",
            f"  curl -s {auth} {base}/users/alice/points/nope      # 404 unknown_provider",
            f"  curl -s {auth} {base}/users/bob/points             # 403: not alice's data",
            f"  curl -s {base}/users/alice/points                  # 401: no token",
            f"  curl -s {base}/providers",
            "",
            "Ctrl-C stops the demo.",
        ]
    )


async def run_demo(
    *, host: str, port: int, iamport_port: int, gafapay_port: int, smile_port: int
) -> None:
    """Serve the emulators and the gateway until SIGINT or SIGTERM."""
    iamport, gafapay = demo_sandboxes()
    iamport_app = Served(create_iamport_app(iamport), bind(host, iamport_port))
    gafapay_app = Served(create_gafapay_app(gafapay), bind(host, gafapay_port))
    smile_app = Served(create_smile_app(smile_sandbox()), bind(host, smile_port))
    keys = Keyring.generate_entry("demo-ephemeral")
    with tempfile.TemporaryDirectory(prefix="points-gateway-demo-") as data_dir:
        database_url = f"sqlite+aiosqlite:///{data_dir}/demo.db"
        await prepare_demo_database(database_url, Keyring.parse(keys))
        secret = secrets.token_urlsafe(32)
        settings = demo_settings(
            iamport_app.url,
            gafapay_app.url,
            smile_app.url,
            database_url=database_url,
            secret_keys=keys,
            auth={"jwt_secret": secret, "issuer": DEMO_ISSUER},
        )
        gateway = Served(
            create_app(settings), bind(host, port), http=header_capped_protocol(settings.limits)
        )
        served = [iamport_app, gafapay_app, smile_app, gateway]
        await _serve(gateway, served, demo_tokens(secret))


async def _serve(gateway: Served, served: list[Served], tokens: dict[str, str]) -> None:
    # uvicorn's start-up lines, once per server, would bury the banner: warnings only.
    group = ServerGroup(served)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, group.stop)
    serving = asyncio.create_task(group.serve())
    started = asyncio.create_task(group.started.wait())
    await asyncio.wait([serving, started], return_when=asyncio.FIRST_COMPLETED)
    if group.started.is_set():
        print(_banner(gateway.url, tokens), flush=True)
    await serving
