"""Authentication: bearer JWTs (HS256, RS256, ES256, JWKS) and service API keys.

Every refusal is a 401 `unauthorized` problem with a Bearer challenge; neither the answer nor
the logs ever hold the token or the key that was presented.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import jwt
import pytest
from pydantic import ValidationError

from app.cli import main as cli_main
from app.errors import ConfigurationError, Unauthorized
from app.main import create_app
from app.outbound.upstream import Opened, OutboundRequest, Reply, Upstream, UpstreamConfig
from app.security import authenticator as authenticator_module
from app.security.jwt_verifier import JwksCache, JwtConfig, JwtVerifier
from app.security.principal import Principal
from app.security.token_cache import TokenCache
from app.settings import get_settings
from tests.conftest import make_settings, make_store
from tests.security.conftest import (
    API_KEY_SETTINGS,
    API_KEYS,
    AUDIENCE,
    DROP,
    EC_KEY,
    EC_PUBLIC_PEM,
    HS_SECRET,
    ISSUER,
    JWKS_URL,
    RSA_KEY,
    RSA_KEY_2,
    RSA_PUBLIC_PEM,
    ServeGateway,
    api_key,
    assert_not_in_logs,
    assert_unauthorized,
    auth_config,
    b64url,
    bearer,
    claims_for,
    hand_signed_hs256,
    hs256,
    jwk_of,
    key_with,
    mock_providers,
    secure_settings,
    unsigned_token,
    user_token,
)

ALICE_ACCOUNTS = "/users/alice/accounts"
RS_ONLY: dict[str, object] = {
    "mode": "required",
    "jwt_public_key": RSA_PUBLIC_PEM,
    "issuer": ISSUER,
    "audience": AUDIENCE,
}


@pytest.fixture(autouse=True)
def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def _tampered() -> str:
    header, _, signature = user_token("alice").split(".")
    forged = b64url(json.dumps(claims_for("bob"), separators=(",", ":")).encode())
    return f"{header}.{forged}.{signature}"


def _es256() -> str:
    return jwt.encode(claims_for("alice"), EC_KEY, algorithm="ES256")


# name -> (auth settings, token maker)
NEGATIVE: dict[str, tuple[dict[str, object], Callable[[], str]]] = {
    "expired": (auth_config(), lambda: user_token(exp_in=-120)),
    "not-yet-valid": (auth_config(), lambda: user_token(nbf_in=120)),
    "wrong-issuer": (auth_config(), lambda: user_token(iss="https://evil.test/")),
    "no-issuer": (auth_config(), lambda: user_token(iss=DROP)),
    "wrong-audience": (auth_config(), lambda: user_token(aud="someone-else")),
    "no-audience": (auth_config(), lambda: user_token(aud=DROP)),
    "wrong-secret": (
        auth_config(),
        lambda: hs256(claims_for("alice"), "another-secret-of-forty-bytes-00000000"),
    ),
    "tampered-payload": (auth_config(), _tampered),
    "alg-none": (auth_config(), lambda: unsigned_token(claims_for("alice"))),
    "alg-none-with-signature": (
        auth_config(),
        lambda: unsigned_token(claims_for("alice")) + user_token().split(".")[2],
    ),
    "hs256-with-rs-public-key-as-secret": (
        RS_ONLY,
        lambda: hand_signed_hs256(claims_for("alice"), RSA_PUBLIC_PEM.encode()),
    ),
    "missing-exp": (auth_config(), lambda: user_token(exp_in=DROP)),
    "missing-sub": (auth_config(), lambda: hs256(claims_for(DROP))),
    "empty-sub": (auth_config(), lambda: hs256(claims_for(""))),
    "garbage": (auth_config(), lambda: "not-a-jwt-at-all"),
    "garbage-three-parts": (auth_config(), lambda: "eyJhbGciOi.garbage.garbage"),
    "es256-when-only-hs256": (auth_config(), _es256),
    "rs256-signed-by-another-key": (
        RS_ONLY,
        lambda: jwt.encode(claims_for("alice"), RSA_KEY_2, algorithm="RS256"),
    ),
}


@pytest.mark.parametrize("case", list(NEGATIVE))
async def test_bad_tokens_are_401(
    serve_gateway: ServeGateway, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    auth, make = NEGATIVE[case]
    token = make()
    async with serve_gateway(secure_settings(auth=auth)) as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
        assert_unauthorized(response, never=(token,))
        assert gw.upstream.calls.call_count == 0
    assert_not_in_logs(caplog, token)


@pytest.mark.parametrize(
    "authorization",
    ["Basic YWxpY2U6cGFzc3dvcmQ=", "Bearer", "Bearer ", "Token abc.def.ghi", "bearer"],
)
async def test_other_schemes_and_empty_bearers_are_401(
    serve_gateway: ServeGateway, authorization: str
) -> None:
    async with serve_gateway() as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers={"authorization": authorization})
    assert_unauthorized(response)


async def test_basic_scheme_with_a_valid_token_inside_is_401(serve_gateway: ServeGateway) -> None:
    token = user_token("alice")
    async with serve_gateway() as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers={"authorization": f"Basic {token}"})
    assert_unauthorized(response, never=(token,))


# --- tokens that pass -------------------------------------------------------------------------


async def test_hs256_valid(serve_gateway: ServeGateway) -> None:
    async with serve_gateway() as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(user_token("alice")))
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == "alice"


async def test_bearer_scheme_is_case_insensitive(serve_gateway: ServeGateway) -> None:
    async with serve_gateway() as gw:
        response = await gw.client.get(
            ALICE_ACCOUNTS, headers={"authorization": f"bearer {user_token('alice')}"}
        )
    assert response.status_code == 200, response.text


async def test_rs256_valid_with_a_public_key(serve_gateway: ServeGateway) -> None:
    token = jwt.encode(claims_for("alice"), RSA_KEY, algorithm="RS256")
    async with serve_gateway(secure_settings(auth=RS_ONLY)) as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_es256_valid_with_a_public_key(serve_gateway: ServeGateway) -> None:
    auth = {**RS_ONLY, "jwt_public_key": EC_PUBLIC_PEM}
    async with serve_gateway(secure_settings(auth=auth)) as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(_es256()))
        # The same key does not accept an RS256 token.
        rs = jwt.encode(claims_for("alice"), RSA_KEY, algorithm="RS256")
        refused = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(rs))
    assert response.status_code == 200, response.text
    assert_unauthorized(refused, never=(rs,))


# Well inside the 30 s leeway: `exp` is whole seconds, and a slow machine takes its time too.
@pytest.mark.parametrize("exp_in", [-10, -25])
async def test_leeway_accepts_a_token_expired_just_now(
    serve_gateway: ServeGateway, exp_in: int
) -> None:
    async with serve_gateway(secure_settings(auth=auth_config(leeway=30))) as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(user_token(exp_in=exp_in)))
    assert response.status_code == 200, response.text


async def test_leeway_zero_refuses_a_token_expired_10_s_ago(serve_gateway: ServeGateway) -> None:
    token = user_token(exp_in=-10)
    async with serve_gateway(secure_settings(auth=auth_config(leeway=0))) as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
    assert_unauthorized(response, never=(token,))


async def test_leeway_accepts_nbf_just_ahead(serve_gateway: ServeGateway) -> None:
    async with serve_gateway() as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(user_token(nbf_in=10)))
    assert response.status_code == 200, response.text


# --- JWKS -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def rs_token(key: object, kid: str | None, sub: str = "alice") -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims_for(sub), key, algorithm="RS256", headers=headers)  # type: ignore[arg-type]


JWKS_AUTH: dict[str, object] = {
    "mode": "required",
    "jwks_url": JWKS_URL,
    "issuer": ISSUER,
    "audience": AUDIENCE,
}


async def test_jwks_rs256_and_key_rotation(
    serve_gateway: ServeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(authenticator_module, "JwksCache", partial(JwksCache, clock=clock))
    published = {"keys": [jwk_of(RSA_KEY, "k1")]}
    async with serve_gateway(secure_settings(auth=JWKS_AUTH)) as gw:
        jwks = gw.upstream.get(JWKS_URL).mock(
            side_effect=lambda _: httpx.Response(200, json=published)
        )
        old = rs_token(RSA_KEY, "k1")
        for _ in range(5):
            response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(old))
            assert response.status_code == 200, response.text
            clock.now += 1
        assert jwks.call_count == 1, "the JWKS is cached, not fetched per request"

        # The IdP rotates: k2 is published, k1 withdrawn.
        published = {"keys": [jwk_of(RSA_KEY_2, "k2")]}
        new = rs_token(RSA_KEY_2, "k2")
        clock.now += 30
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(new))
        assert response.status_code == 200, response.text
        assert jwks.call_count == 2, "an unknown kid makes the gateway refetch"
        for _ in range(5):
            response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(new))
            assert response.status_code == 200, response.text
        assert jwks.call_count == 2

        # k1 is gone from the refetched set, so its tokens no longer pass.
        assert_unauthorized(await gw.client.get(ALICE_ACCOUNTS, headers=bearer(old)))


async def test_jwks_unknown_kids_do_not_cause_a_refetch_storm(
    serve_gateway: ServeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(authenticator_module, "JwksCache", partial(JwksCache, clock=clock))
    async with serve_gateway(secure_settings(auth=JWKS_AUTH)) as gw:
        jwks = gw.upstream.get(JWKS_URL).mock(
            return_value=httpx.Response(200, json={"keys": [jwk_of(RSA_KEY, "k1")]})
        )
        for n in range(10):
            token = rs_token(RSA_KEY_2, f"unknown-{n}")
            assert_unauthorized(
                await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token)), never=(token,)
            )
            clock.now += 1
        assert jwks.call_count == 1


async def test_jwks_hs256_token_with_a_jwk_as_secret_is_refused(
    serve_gateway: ServeGateway,
) -> None:
    """Only asymmetric algorithms are accepted when the keys come from a JWKS."""
    jwk = jwk_of(RSA_KEY, "k1")
    async with serve_gateway(secure_settings(auth=JWKS_AUTH)) as gw:
        gw.upstream.get(JWKS_URL).mock(return_value=httpx.Response(200, json={"keys": [jwk]}))
        token = hand_signed_hs256(claims_for("alice"), jwk["n"].encode())
        assert_unauthorized(await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token)))


async def test_jwks_outage_is_401_not_500(
    serve_gateway: ServeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    token = rs_token(RSA_KEY, "k1")
    async with serve_gateway(secure_settings(auth=JWKS_AUTH)) as gw:
        gw.upstream.get(JWKS_URL).mock(return_value=httpx.Response(503))
        response = await gw.client.get(ALICE_ACCOUNTS, headers=bearer(token))
    assert_unauthorized(response, never=(token,))
    assert_not_in_logs(caplog, token)


# --- JwtVerifier and JwksCache, directly (each verifier is new, so no token is remembered) ----


class CountingJwks(Upstream):
    """An identity provider's JWKS URL: serves `published`, counts the fetches."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        super().__init__(
            UpstreamConfig(
                provider="idp",
                base_url="https://idp.test/",
                timeout=1.0,
                connect_timeout=1.0,
                max_bytes=1_000_000,
            )
        )
        self.published = list(keys)
        self.fetches = 0
        self.status = 200

    async def send(self, request: OutboundRequest) -> Reply:
        assert request.url == JWKS_URL
        self.fetches += 1
        body = json.dumps({"keys": self.published}).encode()
        return Reply("idp", self.status, {"content-type": "application/json"}, body)

    async def _open(self, request: OutboundRequest) -> Opened:
        raise AssertionError("send is faked whole")

    async def aclose(self) -> None:
        return None


def direct_config(**keys: Any) -> JwtConfig:
    return JwtConfig(issuer=ISSUER, audience=AUDIENCE, leeway=30.0, **keys)


JWKS_CONFIG = direct_config(jwks_url=JWKS_URL, algorithms=frozenset({"RS256", "ES256"}))


async def verify_fresh(config: JwtConfig, token: str, jwks: JwksCache | None = None) -> Principal:
    return await JwtVerifier(config, jwks).verify(token)


async def test_a_token_in_an_algorithm_outside_the_allow_list_is_refused() -> None:
    # Kills: the `alg not in self._config.algorithms` check in JwtVerifier.verify deleted.
    config = direct_config(public_key_pem=RSA_PUBLIC_PEM, algorithms=frozenset({"RS256"}))
    rs256 = jwt.encode(claims_for("alice"), RSA_KEY, algorithm="RS256")
    assert await verify_fresh(config, rs256) == Principal("user", "alice")
    ps256 = jwt.encode(claims_for("alice"), RSA_KEY, algorithm="PS256")  # the same RSA key
    with pytest.raises(Unauthorized, match="algorithm is not accepted") as refused:
        await verify_fresh(config, ps256)
    assert refused.value.status == 401


async def test_an_hs256_token_is_refused_when_only_rs256_is_allowed_despite_a_secret() -> None:
    # Kills: the allow-list check deleted (the configured secret would then verify the token).
    config = direct_config(
        hs256_secret=HS_SECRET.encode(),
        public_key_pem=RSA_PUBLIC_PEM,
        algorithms=frozenset({"RS256"}),
    )
    with pytest.raises(Unauthorized, match="algorithm is not accepted"):
        await verify_fresh(config, hs256(claims_for("alice")))


def test_settings_never_allow_hs256_without_a_secret() -> None:
    auth = make_settings(auth={**RS_ONLY, "jwt_algorithms": ["HS256", "RS256"]}).auth
    assert auth.algorithms() == frozenset({"RS256"})


async def test_hs256_allowed_but_no_secret_configured_is_not_accepted() -> None:
    # Kills: _key_for's "no HS256 secret -> not accepted" check deleted (settings never build
    # this config, see above, so JwtVerifier is given it directly).
    config = direct_config(
        hs256_secret=None,
        public_key_pem=RSA_PUBLIC_PEM,
        algorithms=frozenset({"HS256", "RS256"}),
    )
    token = hand_signed_hs256(claims_for("alice"), RSA_PUBLIC_PEM.encode())
    with pytest.raises(Unauthorized, match="algorithm is not accepted"):
        await verify_fresh(config, token)


async def test_jwks_known_kid_is_refetched_after_300_s_not_before() -> None:
    # Kills: JwksCache.key never refetching a known kid (JWKS_TTL ignored), or refetching at 30 s.
    clock = Clock()
    idp = CountingJwks(jwk_of(RSA_KEY, "k1"))
    jwks = JwksCache(JWKS_URL, idp, clock=clock)
    token = rs_token(RSA_KEY, "k1")
    assert await verify_fresh(JWKS_CONFIG, token, jwks) == Principal("user", "alice")
    assert idp.fetches == 1
    idp.published = [jwk_of(RSA_KEY_2, "k2")]  # the IdP withdraws k1

    clock.now += 299
    assert await verify_fresh(JWKS_CONFIG, token, jwks) == Principal("user", "alice")
    assert idp.fetches == 1, "a known kid is served from the cache for 5 minutes"

    clock.now += 1
    with pytest.raises(Unauthorized, match="No key is known"):
        await verify_fresh(JWKS_CONFIG, token, jwks)
    assert idp.fetches == 2, "after 5 minutes the JWKS is fetched again, and k1 is gone"


async def test_jwks_unknown_kid_is_refetched_only_30_s_after_the_last_fetch() -> None:
    # Kills: JWKS_MIN_REFRESH changed (an unknown kid refetching before 30 s, or not at 30 s).
    clock = Clock()
    idp = CountingJwks(jwk_of(RSA_KEY, "k1"))
    jwks = JwksCache(JWKS_URL, idp, clock=clock)
    assert await verify_fresh(JWKS_CONFIG, rs_token(RSA_KEY, "k1"), jwks)
    assert idp.fetches == 1
    idp.published.append(jwk_of(RSA_KEY_2, "k2"))  # the IdP publishes k2
    new = rs_token(RSA_KEY_2, "k2")

    clock.now += 29
    with pytest.raises(Unauthorized, match="No key is known"):
        await verify_fresh(JWKS_CONFIG, new, jwks)
    assert idp.fetches == 1, "an unknown kid does not refetch within 30 s of the last fetch"

    clock.now += 1
    assert await verify_fresh(JWKS_CONFIG, new, jwks) == Principal("user", "alice")
    assert idp.fetches == 2


async def test_jwks_token_without_kid_uses_the_only_key_and_is_refused_among_two() -> None:
    # Kills: JwksCache.key's "no kid: the only key, else none" rule deleted or loosened.
    token = rs_token(RSA_KEY, None)
    one = JwksCache(JWKS_URL, CountingJwks(jwk_of(RSA_KEY, "k1")), clock=Clock())
    assert await verify_fresh(JWKS_CONFIG, token, one) == Principal("user", "alice")

    # The signing key is listed first, so "take the first key" would wrongly accept it.
    two_keys = CountingJwks(jwk_of(RSA_KEY, "k1"), jwk_of(RSA_KEY_2, "k2"))
    two = JwksCache(JWKS_URL, two_keys, clock=Clock())
    with pytest.raises(Unauthorized, match="No key is known"):
        await verify_fresh(JWKS_CONFIG, token, two)


# --- API keys ---------------------------------------------------------------------------------


async def test_valid_api_key_gets_its_scopes(serve_gateway: ServeGateway) -> None:
    key = key_with("points:read")
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        points = await gw.client.get("/users/bob/points/benepia", headers=api_key(key))
        accounts = await gw.client.get("/users/bob/accounts", headers=api_key(key))
    assert points.status_code == 200, points.text
    assert accounts.status_code == 403, accounts.text
    assert key not in points.text + accounts.text


@pytest.mark.parametrize(
    "presented",
    ["wrong-key", "", key_with("points:read") + "x", key_with("points:read").upper()],
)
async def test_wrong_api_key_is_401(
    serve_gateway: ServeGateway, caplog: pytest.LogCaptureFixture, presented: str
) -> None:
    async with serve_gateway() as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers=api_key(presented))
    assert_unauthorized(response, never=(presented,) if presented else ())
    if presented:
        assert_not_in_logs(caplog, presented)


async def test_a_wrong_api_key_is_not_rescued_by_a_valid_bearer(
    serve_gateway: ServeGateway,
) -> None:
    async with serve_gateway() as gw:
        response = await gw.client.get(
            ALICE_ACCOUNTS, headers={**api_key("wrong-key"), **bearer(user_token("alice"))}
        )
    assert_unauthorized(response)


# --- one credential in both headers (generated clients fill every scheme from one callback) ---


async def test_one_token_in_both_headers_is_checked_as_the_bearer_token(
    serve_gateway: ServeGateway,
) -> None:
    token = user_token("alice")
    async with serve_gateway() as gw:
        ok = await gw.client.get(ALICE_ACCOUNTS, headers={**bearer(token), **api_key(token)})
        expired = user_token("alice", exp_in=-600)
        refused = await gw.client.get(
            ALICE_ACCOUNTS, headers={**bearer(expired), **api_key(expired)}
        )
    assert ok.status_code == 200, ok.text
    assert_unauthorized(refused, never=(expired,))
    assert refused.json()["detail"] == "The token has expired."


async def test_one_api_key_in_both_headers_is_checked_as_the_api_key(
    serve_gateway: ServeGateway,
) -> None:
    key = key_with("accounts:read")
    async with serve_gateway() as gw:
        ok = await gw.client.get(ALICE_ACCOUNTS, headers={**bearer(key), **api_key(key)})
        only_key = await gw.client.get(ALICE_ACCOUNTS, headers=api_key(key))
    assert ok.status_code == 200, ok.text
    assert only_key.status_code == 200, only_key.text


@pytest.mark.parametrize(
    ("token", "key"),
    [
        (user_token("alice"), key_with("accounts:read")),
        (user_token("alice"), user_token("bob")),
        (key_with("accounts:read"), key_with("points:read")),
    ],
    ids=["token-and-key", "two-tokens", "two-keys"],
)
async def test_two_different_credentials_are_refused_naming_the_conflict(
    serve_gateway: ServeGateway, caplog: pytest.LogCaptureFixture, token: str, key: str
) -> None:
    async with serve_gateway() as gw:
        response = await gw.client.get(ALICE_ACCOUNTS, headers={**bearer(token), **api_key(key)})
    assert_unauthorized(response, never=(token, key))
    assert response.json()["detail"] == (
        "`Authorization: Bearer` and `X-API-Key` carry different credentials; send one of them."
    )
    assert_not_in_logs(caplog, token, key)


def test_settings_hold_only_key_hashes_and_hide_the_secret() -> None:
    settings = secure_settings()
    text = f"{settings!r} {settings!s} {settings.auth!r}"
    dumped = settings.model_dump_json()
    for raw, _ in API_KEYS.values():
        assert raw not in text
        assert raw not in dumped
    assert HS_SECRET not in text
    assert HS_SECRET not in dumped
    assert len(API_KEY_SETTINGS) == len(settings.auth.api_keys)


def test_api_key_settings_refuse_a_raw_key() -> None:
    with pytest.raises(ValidationError):
        make_settings(
            auth={
                "mode": "required",
                "api_keys": [{"name": "x", "sha256": key_with("points:read"), "scopes": []}],
            }
        )


# --- start-up ---------------------------------------------------------------------------------


def test_auth_required_without_credentials_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="POINTS_AUTH__JWT_SECRET"):
        create_app(make_settings(auth={"mode": "required"}), store=make_store())


def test_algorithms_without_a_key_count_as_no_credentials() -> None:
    settings = make_settings(auth={"mode": "required", "jwt_algorithms": ["RS256"]})
    with pytest.raises(ConfigurationError, match="POINTS_AUTH__JWT_SECRET"):
        create_app(settings, store=make_store())


@pytest.mark.parametrize("secret", ["short", "x" * 31, "é" * 15])
def test_short_hs256_secret_is_a_validation_error(secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes") as caught:
        make_settings(auth={"mode": "required", "jwt_secret": secret})
    assert caught.value.errors()[0]["loc"] == ("auth", "jwt_secret")


def test_cli_never_prints_a_rejected_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "real-but-short-secret-9f3a"
    monkeypatch.setenv("POINTS_AUTH__JWT_SECRET", secret)
    get_settings.cache_clear()
    try:
        code = cli_main(["serve"])
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 2
    assert "jwt_secret" in err.lower()
    assert secret not in err


def test_a_32_byte_secret_is_enough() -> None:
    settings = make_settings(auth={"mode": "required", "jwt_secret": "x" * 32})
    assert settings.auth.algorithms() == {"HS256"}


# --- nothing leaks ----------------------------------------------------------------------------


async def test_problem_bodies_and_logs_never_hold_credentials(
    serve_gateway: ServeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    token = user_token("alice")
    key = key_with("points:read")
    async with serve_gateway() as gw:
        mock_providers(gw.upstream)
        answers = [
            await gw.client.get("/users/bob/accounts", headers=bearer(token)),
            await gw.client.put("/users/bob/accounts/benepia", headers=bearer(token), json={}),
            await gw.client.get("/users/bob/accounts", headers=api_key(key)),
            await gw.client.get("/users/bob/accounts", headers=api_key(key + "-wrong")),
            await gw.client.get("/users/alice/points/nope", headers=bearer(token)),
            await gw.client.get("/users/alice/points?providers=,", headers=bearer(token)),
        ]
    assert [a.status_code for a in answers] == [403, 403, 403, 401, 404, 422]
    for answer in answers:
        assert token not in answer.text
        assert key not in answer.text
    assert_not_in_logs(caplog, token, key, token.split(".")[2])


@pytest.mark.parametrize("status", [203, 300, 404, 500])
async def test_jwks_keys_in_an_answer_other_than_200_are_not_trusted(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Kills: JwksCache._refresh's status check deleted or loosened (an error page or a redirect
    # that happens to carry a key set must not install keys).
    idp = CountingJwks(jwk_of(RSA_KEY, "k1"))
    idp.status = status
    jwks = JwksCache(JWKS_URL, idp, clock=Clock())
    with caplog.at_level(logging.WARNING), pytest.raises(Unauthorized, match="No key is known"):
        await verify_fresh(JWKS_CONFIG, rs_token(RSA_KEY, "k1"), jwks)
    assert idp.fetches == 1
    assert "JWKS refresh failed (ValueError); keeping 0 cached keys" in caplog.text


async def test_an_exp_written_as_digits_is_accepted_and_remembered_until_that_time() -> None:
    # PyJWT accepts exp "1234" as 1234; the verified-token cache must use the same expiry.
    claims = claims_for("alice")
    exp = claims["exp"]
    assert isinstance(exp, int)
    claims["exp"] = str(exp)
    token = hs256(claims)
    config = direct_config(hs256_secret=HS_SECRET.encode(), algorithms=frozenset({"HS256"}))
    remembered = TokenCache()
    assert await JwtVerifier(config, verified=remembered).verify(token) == Principal(
        "user", "alice"
    )
    entry = remembered.get(token)
    assert entry is not None
    assert entry.expires_at == exp
