"""A definition of a made-up provider, ACME Rewards, and a gateway serving it over respx."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import respx

from app.accounts.memory_store import MemoryAccountStore
from app.main import create_app
from app.settings import Settings
from tests.conftest import PLAIN, serve_in_process

ACME = "https://api.acme.test"
API_KEY = "acme-sEcReT-api-key-0001"
PIN = "sEcReT-pin-4242"
LOGIN_SECRET = "acme-sEcReT-login-0002"

ACME_YAML = """
name: acme
display_name: ACME Rewards
unit: "acme_point"
ownership: secret
account:
  member_id: {pattern: "^[0-9]{4,20}$", identifies: true}
  member_pin: {secret: true, min_length: 4, max_length: 64}
settings:
  base_url: {type: url, default: "https://api.acme.test"}
  api_key: {secret: true}
timeout: 2.0
cache_ttl: 0
request:
  method: GET
  path: /v1/members/{account.member_id}/balance
  query: {currency: KRW}
  headers:
    X-Api-Key: "{settings.api_key}"
    X-Member-Pin: "{account.member_pin}"
    X-Request-Id: "{request_id}"
success:
  - {path: status, equals: OK}
checks:
  - {path: data.member_id, equals: "{account.member_id}"}
balance: {path: data.points, type: decimal}
details:
  expiring: {path: data.expiring_points, type: decimal, required: false}
errors:
  - when: {status: 404, path: status, equals: MEMBER_NOT_FOUND}
    code: provider_rejected
    message: message
    upstream_code: status
  - when: {status: 200, path: status, equals: PIN_MISMATCH}
    code: provider_rejected
    message: message
"""

SESSION_YAML = """
name: acme_session
display_name: ACME with sessions
unit: acme_point
ownership: trusted_link
account:
  member_id: {identifies: true}
settings:
  base_url: {type: url, default: "https://api.acme.test"}
  client_secret: {secret: true}
auth:
  kind: session
  login: {method: POST, path: /auth/token, json: {secret: "{settings.client_secret}"}}
  token: response.access_token
  expires_at: response.expired_at
  now: response.now
  refresh_margin: 30
  apply: {header: Authorization, value: "Bearer {token}"}
  success:
    - {path: code, equals: 0}
  message: message
request:
  method: POST
  path: /points
  json: {member: "{account.member_id}"}
balance: {path: response.point, type: integer}
"""


def write_definitions(folder: Path, *texts: str) -> Path:
    """Each text as a definition file of `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, text in enumerate(texts):
        (folder / f"def-{n}.yaml").write_text(textwrap.dedent(text))
    return folder


@dataclass(frozen=True, slots=True)
class Served:
    client: httpx.AsyncClient
    upstream: respx.MockRouter
    store: MemoryAccountStore


ServeDefinitions = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture
def serve_definitions(tmp_path: Path) -> ServeDefinitions:
    """`async with serve_definitions(ACME_YAML, ...) as gw:` a gateway serving those definitions."""

    @asynccontextmanager
    async def serve(
        *texts: str,
        enabled: list[str] | None = None,
        providers: dict[str, dict[str, object]] | None = None,
        **overrides: object,
    ) -> AsyncIterator[Served]:
        folder = write_definitions(tmp_path / "providers", *texts)
        names = [
            line.split(":", 1)[1].strip()
            for t in texts
            for line in t.splitlines()
            if line.startswith("name:")
        ]
        given = {"acme": {"api_key": API_KEY}, "acme_session": {"client_secret": LOGIN_SECRET}}
        values: dict[str, object] = {
            "enabled_providers": enabled or names[:1],
            "providers_dir": str(folder),
            "providers": providers or {n: s for n, s in given.items() if n in names},
            **PLAIN,
            **overrides,
        }
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        store = MemoryAccountStore()
        app = create_app(
            Settings.model_validate(values),
            transport=httpx.MockTransport(router.async_handler),
            store=store,
        )
        async with serve_in_process(app) as client:
            yield Served(client, router, store)

    return serve


def acme_ok(member: str = "1001", points: str = "1234.50", **data: object) -> httpx.Response:
    """ACME's documented success, points written as an exact JSON number."""
    extra = "".join(f',"{k}":{v}' for k, v in data.items())
    body = f'{{"status":"OK","data":{{"member_id":"{member}","points":{points}{extra}}}}}'
    return httpx.Response(200, content=body, headers={"content-type": "application/json"})
