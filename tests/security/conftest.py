"""Security fixtures: settings with auth and limits back on, token minting, keys, served apps.

`make_settings` (tests/conftest.py) turns auth and rate limits off by default; everything here
turns them back on explicitly with `secure_settings(...)`. Tokens are minted with PyJWT, or by
hand where PyJWT refuses (alg none, the HS256/RS256 confusion).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from redis import Redis
from redis.exceptions import RedisError

from app.accounts.memory_store import MemoryAccountStore
from app.main import create_app
from app.security.api_keys import hash_key
from app.settings import Settings
from tests.conftest import (
    ALICE_GAFAPAY,
    BENEPIA_PASSWORD,
    BENEPIA_URL,
    CURRENCY,
    GAFAPAY_URL,
    PROBLEM,
    SECRETS,
    TOKEN_URL,
    benepia_ok,
    gafapay_ok,
    make_settings,
    make_store,
    require_services,
    serve_in_process,
    token_ok,
)

HS_SECRET = "hs256-test-secret-of-forty-bytes-000000"
ISSUER = "https://idp.test/"
AUDIENCE = "points-gateway"
JWKS_URL = "https://idp.test/.well-known/jwks.json"
REDIS_URL = "redis://127.0.0.1:6379/0"
ALL_SCOPES = ("points:read", "accounts:read", "accounts:write")

# --- service API keys: for every scope, a key with only it and a key with all but it ----------


def _key_value(name: str) -> str:
    return f"pgk-{name}-" + hashlib.sha256(name.encode()).hexdigest()[:24]


def _scope_slug(scope: str) -> str:
    return scope.replace(":", "-")


API_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {}
"""name -> (raw key value, scopes)."""
for _scope in ALL_SCOPES:
    API_KEYS[f"only-{_scope_slug(_scope)}"] = (
        _key_value(f"only-{_scope}"),
        (_scope,),
    )
    API_KEYS[f"all-but-{_scope_slug(_scope)}"] = (
        _key_value(f"all-but-{_scope}"),
        tuple(s for s in ALL_SCOPES if s != _scope),
    )


def key_with(scope: str) -> str:
    """The raw value of the key holding only `scope`."""
    return API_KEYS[f"only-{_scope_slug(scope)}"][0]


def key_without(scope: str) -> str:
    """The raw value of the key holding every scope but `scope`."""
    return API_KEYS[f"all-but-{_scope_slug(scope)}"][0]


API_KEY_SETTINGS: list[dict[str, object]] = [
    {"name": name, "sha256": hash_key(raw), "scopes": list(scopes)}
    for name, (raw, scopes) in API_KEYS.items()
]

# --- asymmetric keys (generated once per session) -------------------------------------------

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    """The PEM text of the key's public half."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_PUBLIC_PEM = public_pem(RSA_KEY)
EC_PUBLIC_PEM = public_pem(EC_KEY)


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of an RSA key, as an identity provider publishes it."""
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


# --- settings ---------------------------------------------------------------------------------


def auth_config(**overrides: object) -> dict[str, object]:
    """Auth required: HS256 with issuer and audience, plus every test API key."""
    return {
        "mode": "required",
        "jwt_secret": HS_SECRET,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "api_keys": API_KEY_SETTINGS,
        **overrides,
    }


def secure_settings(
    *,
    auth: Mapping[str, object] | None = None,
    limits: Mapping[str, object] | None = None,
    **overrides: Any,
) -> Settings:
    """`make_settings` with auth back on (rate limits stay off unless `limits` sets them)."""
    return make_settings(
        auth=dict(auth) if auth is not None else auth_config(),
        limits={"rate": None, "failed_auth_rate": None, **(limits or {})},
        **overrides,
    )


# --- tokens -----------------------------------------------------------------------------------

_DROP = object()


def claims_for(
    sub: object = "alice",
    *,
    exp_in: object = 300,
    nbf_in: float | None = None,
    iss: object = ISSUER,
    aud: object = AUDIENCE,
    **extra: object,
) -> dict[str, object]:
    """A claim set; pass `DROP` to leave a claim out."""
    now = int(time.time())
    claims: dict[str, object] = {"iat": now, **extra}
    if sub is not _DROP:
        claims["sub"] = sub
    if exp_in is not _DROP:
        assert isinstance(exp_in, int | float)
        claims["exp"] = now + int(exp_in)
    if nbf_in is not None:
        claims["nbf"] = now + int(nbf_in)
    if iss is not _DROP:
        claims["iss"] = iss
    if aud is not _DROP:
        claims["aud"] = aud
    return claims


DROP: Any = _DROP


def hs256(claims: Mapping[str, object], secret: str | bytes = HS_SECRET) -> str:
    """An HS256 token (PyJWT)."""
    return jwt.encode(dict(claims), secret, algorithm="HS256")


def user_token(sub: str = "alice", **kwargs: Any) -> str:
    """A valid HS256 end-user token."""
    return hs256(claims_for(sub, **kwargs))


def service_token(sub: str = "billing-svc", scope: str = "points:read") -> str:
    """A valid HS256 service token (claim gateway_service: true)."""
    return hs256(claims_for(sub, gateway_service=True, scope=scope))


def b64url(data: bytes) -> str:
    """base64url without padding, as JWS uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: Mapping[str, object]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hand_signed_hs256(claims: Mapping[str, object], secret: bytes) -> str:
    """An HS256 token signed with hmac directly (PyJWT refuses PEM text as an HMAC secret)."""
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned_token(claims: Mapping[str, object]) -> str:
    """`alg: none`: header and payload, empty signature."""
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def api_key(value: str) -> dict[str, str]:
    return {"x-api-key": value}


def unique_user() -> str:
    """A user id of this test's own (rate-limit keys on the shared Redis never collide)."""
    return f"u-{uuid.uuid4().hex}"


# --- upstreams and accounts -------------------------------------------------------------------

ALICE_BENEPIA = {"benepia_user": "alice.kim", "benepia_password": BENEPIA_PASSWORD}
BOB_BENEPIA = {"benepia_user": "bob.park", "benepia_password": BENEPIA_PASSWORD}
SECURITY_ACCOUNTS: dict[str, dict[str, dict[str, str]]] = {
    "alice": {
        "benepia": ALICE_BENEPIA,
        "gafapay": {"gafapay_user_id": ALICE_GAFAPAY, "currency_id": CURRENCY},
    },
    "bob": {
        "benepia": BOB_BENEPIA,
        "gafapay": {"gafapay_user_id": "0b0b", "currency_id": CURRENCY},
    },
}


def echo_gafapay(request: httpx.Request) -> httpx.Response:
    """A GafaPay success for whichever user the request asks about."""
    return gafapay_ok(user_id=request.url.params["user_id"])


def mock_providers(upstream: respx.MockRouter) -> None:
    """Both providers answer successfully."""
    upstream.post(TOKEN_URL).mock(return_value=token_ok())
    upstream.post(BENEPIA_URL).mock(return_value=benepia_ok())
    upstream.get(GAFAPAY_URL).mock(side_effect=echo_gafapay)


# --- served apps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Served:
    """One gateway served in process: its client, app, account store and upstream router."""

    client: httpx.AsyncClient
    app: FastAPI
    store: MemoryAccountStore
    upstream: respx.MockRouter

    def client_at(self, address: str) -> httpx.AsyncClient:
        """Another client of the same app, calling from `address` (close it after)."""
        transport = httpx.ASGITransport(
            app=self.app, raise_app_exceptions=False, client=(address, 40000)
        )
        return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


ServeGateway = Callable[..., AbstractAsyncContextManager[Served]]


@pytest.fixture
def serve_gateway(upstream: respx.MockRouter) -> ServeGateway:
    """`async with serve_gateway(settings) as gw:` a gateway over respx upstreams and a store."""

    @asynccontextmanager
    async def serve(
        settings: Settings | None = None,
        accounts: dict[str, dict[str, dict[str, str]]] | None = None,
    ) -> AsyncIterator[Served]:
        store = make_store(accounts or SECURITY_ACCOUNTS)
        app = create_app(
            settings or secure_settings(),
            transport=httpx.MockTransport(upstream.async_handler),
            store=store,
        )
        async with serve_in_process(app) as client:
            yield Served(client, app, store, upstream)

    return serve


async def store_snapshot(store: MemoryAccountStore) -> dict[str, object]:
    """Everything observable in the store for the test users."""
    return {
        user: (await store.accounts(user), dict(await store.linked(user)))
        for user in ("alice", "bob", "mallory")
    }


# --- problems ---------------------------------------------------------------------------------


def assert_problem(
    response: httpx.Response, status: int, code: str, *, never: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`response` is the problem+json of `code`, with no secret or `never` string in it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers.get("x-content-type-options") == "nosniff"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:points-gateway:problem:{code}"
    for secret in (*SECRETS, *never):
        assert secret not in response.text
        assert all(secret not in v for v in response.headers.values())
    return body


def assert_unauthorized(response: httpx.Response, *, never: tuple[str, ...] = ()) -> None:
    """401 unauthorized with a Bearer challenge."""
    assert_problem(response, 401, "unauthorized", never=never)
    assert response.headers["www-authenticate"].startswith("Bearer")


def assert_not_in_logs(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """No captured record, formatted or raw, holds any of `secrets`."""
    for record in caplog.records:
        text = f"{record.getMessage()} {record.msg!r} {record.args!r} {record.__dict__!r}"
        for secret in secrets:
            assert secret not in text, f"{secret[:12]}... logged by {record.name}"
    for secret in secrets:
        assert secret not in caplog.text


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def shared_redis_url() -> str:
    """The shared Redis's URL; fails under POINTS_REQUIRE_SERVICES=1 when it is down, else skips."""
    probe = Redis.from_url(REDIS_URL, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        probe.ping()
    except (RedisError, OSError) as exc:
        reason = f"Redis at {REDIS_URL} is not reachable ({type(exc).__name__})"
        if require_services():
            pytest.fail(f"POINTS_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    finally:
        probe.close()
    return REDIS_URL


def forget_rate_counts(url: str, principal_key: str) -> None:
    """Delete the shared Redis's rate-limit counts of one principal (e.g. `service:name`)."""
    client = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        keys = list(client.scan_iter(match=f"*{principal_key}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
