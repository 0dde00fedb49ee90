"""A @hey-api/openapi-ts client, generated from the committed document, against a real gateway.

hey-api fills every security scheme an operation lists from one `auth` callback, so the obvious
`createClient({ auth: () => token })` sends the token as `Authorization: Bearer …` and as
`X-API-Key`. The gateway must take that one credential as what it is. The provider is
type-checked with `tsc --strict`, then run by the machine's Node against a gateway served by
uvicorn on 127.0.0.1 in front of both emulators, with authentication on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from app.accounts.memory_store import MemoryAccountStore
from app.main import create_app
from app.sandbox.demo import demo_accounts, demo_sandboxes
from app.sandbox.gafapay import create_gafapay_app
from app.sandbox.iamport import create_iamport_app
from app.sandbox.servers import Served, bind
from app.security.api_keys import hash_key
from app.settings import AuthSettings
from tests.clients.conftest import NPM_INSTALL_TIMEOUT, NPX_TIMEOUT, output, run
from tests.support.servers import HOST, gateway_settings, serving

pytestmark = pytest.mark.timeout(NPM_INSTALL_TIMEOUT + 3 * NPX_TIMEOUT)

JWT_SECRET = "hey-api-client-test-secret-0123456789abcdef"
SERVICE_KEY = "pgk-hey-api-client-test-0123456789abcdef"
USER = "alice"  # a demo user with both providers linked
TSC_FLAGS = [
    "--strict",
    "--target",
    "es2022",
    "--lib",
    "es2022,dom,dom.iterable",
    "--module",
    "nodenext",
    "--moduleResolution",
    "nodenext",
    "--outDir",
    "dist",
]

PROGRAM = """\
import { type Auth, createClient } from "./gen/client/index.js";
import { getUserPoints } from "./gen/index.js";

const baseUrl: string = __BASE_URL__;
const token: string = __TOKEN__;
const key: string = __KEY__;
const userId: string = __USER__;
const CREDENTIAL_HEADERS = ["authorization", "x-api-key"];

async function call(name: string, auth: (auth: Auth) => string | undefined): Promise<void> {
  const client = createClient({ baseUrl, auth });
  const sent: string[] = [];
  client.interceptors.request.use((request: Request) => {
    request.headers.forEach((_value, header) => {
      if (CREDENTIAL_HEADERS.includes(header)) sent.push(header);
    });
    return request;
  });
  const { data, error, response } = await getUserPoints({ client, path: { user_id: userId } });
  const result = {
    name,
    status: response.status,
    sent: sent.sort(),
    user: data?.user_id ?? null,
    providers: data?.balances.map((b) => `${b.provider}:${b.status}`) ?? null,
    code: error?.code ?? null,
    detail: error?.detail ?? null,
  };
  console.log(JSON.stringify(result));
}

// The obvious client: one callback for every scheme.
await call("user token", () => token);
// A service key the same way (both headers, one value), and through X-API-Key alone.
await call("service key", () => key);
await call("service key alone", (auth) => (auth.type === "apiKey" ? key : undefined));
await call("wrong token", () => "not.a.token");
"""


@pytest.fixture(scope="module")
def secured_gateway_url() -> Iterator[str]:
    """Both emulators and a gateway with authentication on (HS256 and one key), over 127.0.0.1."""
    iamport, gafapay = demo_sandboxes()
    iamport_app = Served(create_iamport_app(iamport), bind(HOST, 0))
    gafapay_app = Served(create_gafapay_app(gafapay), bind(HOST, 0))
    auth = AuthSettings.model_validate(
        {
            "mode": "required",
            "jwt_secret": JWT_SECRET,
            "api_keys": [
                {"name": "hey-api", "sha256": hash_key(SERVICE_KEY), "scopes": ["points:read"]}
            ],
        }
    )
    settings = gateway_settings(iamport_app.url, gafapay_app.url).model_copy(update={"auth": auth})
    gateway = Served(create_app(settings, store=MemoryAccountStore(demo_accounts())), bind(HOST, 0))
    with serving([iamport_app, gafapay_app, gateway]):
        yield gateway.url


def user_token(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": 2_000_000_000}, JWT_SECRET, algorithm="HS256")


def run_program(project: Path, base_url: str) -> dict[str, dict[str, Any]]:
    """Type-check and run the provider; its results by call name."""
    source = PROGRAM
    for placeholder, value in (
        ("__BASE_URL__", base_url),
        ("__TOKEN__", user_token(USER)),
        ("__KEY__", SERVICE_KEY),
        ("__USER__", USER),
    ):
        source = source.replace(placeholder, json.dumps(value))
    (project / "call.ts").write_text(source)
    proc = run(
        ["npx", "--no-install", "tsc", *TSC_FLAGS, "call.ts"], cwd=project, timeout=NPX_TIMEOUT
    )
    assert proc.returncode == 0, output(proc)
    proc = run(["node", "dist/call.js"], cwd=project, timeout=NPX_TIMEOUT)
    assert proc.returncode == 0, output(proc)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {result["name"]: result for result in results}


@pytest.fixture(scope="module")
def results(hey_api_project: Path, secured_gateway_url: str) -> dict[str, dict[str, Any]]:
    return run_program(hey_api_project, secured_gateway_url)


def test_the_obvious_client_sends_a_user_token_in_both_headers_and_gets_200(
    results: dict[str, dict[str, Any]],
) -> None:
    call = results["user token"]
    assert call["sent"] == ["authorization", "x-api-key"], "hey-api fills both schemes"
    assert call["status"] == 200, call
    assert call["user"] == USER
    assert call["providers"] == ["benepia:ok", "gafapay:ok"]


def test_a_service_key_works_from_one_callback_and_through_x_api_key_alone(
    results: dict[str, dict[str, Any]],
) -> None:
    both, alone = results["service key"], results["service key alone"]
    assert both["sent"] == ["authorization", "x-api-key"]
    assert both["status"] == 200, both
    assert alone["sent"] == ["x-api-key"]
    assert alone["status"] == 200, alone
    assert alone["providers"] == ["benepia:ok", "gafapay:ok"]


def test_a_wrong_token_is_a_typed_401_problem(results: dict[str, dict[str, Any]]) -> None:
    call = results["wrong token"]
    assert (call["status"], call["code"]) == (401, "unauthorized")
    assert call["detail"] == "The bearer token is not a JWT."
