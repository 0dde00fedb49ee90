"""Schemathesis against the live app: every operation, every default check, upstreams mocked."""

from __future__ import annotations

import re
from typing import Any

import httpx
import respx
import schemathesis
from hypothesis import HealthCheck, settings

from app.main import create_app
from app.observability.shutdown import ShutdownState
from app.security.api_keys import hash_key
from app.security.principal import ALL_SCOPES
from tests.conftest import (
    BENEPIA_URL,
    GAFAPAY_URL,
    TOKEN_URL,
    benepia_ok,
    customer_token,
    gafapay_ok,
    make_settings,
    make_store,
    token_ok,
)

Case = schemathesis.Case[Any]

# A service key with every scope: it may act on any generated user id.
API_KEY = "pgk-schemathesis-0123456789abcdef01234567"
AUTH = {
    "mode": "required",
    "api_keys": [
        {
            "name": "schemathesis",
            "sha256": hash_key(API_KEY),
            "scopes": sorted(ALL_SCOPES),
        }
    ],
}


class ServiceKey:
    """Every generated request authenticates with the test service key."""

    def get(self, case: Case, ctx: schemathesis.AuthContext) -> str:
        return API_KEY

    def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["X-API-Key"] = data


def _gafapay_for(request: httpx.Request) -> httpx.Response:
    # The record of whichever identity was asked for: GafaPay answers for the account queried.
    params = request.url.params
    return gafapay_ok(user_id=params["user_id"], currency=params["currency_id"])


def _upstreams() -> respx.MockRouter:
    router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
    router.post(TOKEN_URL).mock(return_value=token_ok())
    router.post(BENEPIA_URL).mock(return_value=benepia_ok())
    router.get(url__startswith=GAFAPAY_URL).mock(side_effect=_gafapay_for)
    return router


# Auth on (the ignored-auth check needs it); rate limits and the cache off (PLAIN).
APP = create_app(
    make_settings(auth=AUTH),
    transport=httpx.MockTransport(_upstreams().async_handler),
    store=make_store(),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.auth()(ServiceKey)
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def prove_customer_token(case: Case) -> None:
    """Give a generated GafaPay token of the documented shape the generated id as its `sub`.

    The token must be a JWT whose `sub` names `gafapay_user_id`: a rule between two fields that
    JSON Schema cannot state. Any other (negative) token is left to be refused.
    """
    body = case.body
    if isinstance(body, dict):
        token, user = body.get("token"), body.get("gafapay_user_id")
        if isinstance(token, str) and JWT_SHAPE.match(token) and isinstance(user, str):
            body["token"] = customer_token(user)


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Case) -> None:
    # Schemathesis ends the app's lifespan after each test and starts it again for the next;
    # an ended lifespan marks the app as shutting down (/readyz 503), so start each one fresh.
    APP.state.shutdown = ShutdownState()
    prove_customer_token(case)
    case.call_and_validate()
