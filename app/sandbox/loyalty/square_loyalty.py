"""Emulator of Square's RetrieveLoyaltyAccount, `GET /v2/loyalty/accounts/{account_id}`.

The success answer is the documented example with the member's id and balance; errors carry
Square's documented `{"errors": [{"category", "code", "detail"}]}` body. Like Square, every answer
names the API version it was served with in a `Square-Version` header.
"""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox.faults import Json, admin_routes, dump_json, status_phrase
from app.sandbox.loyalty.members import LoyaltySandbox, Member, bearer

ACCOUNT_PATH = "/v2/loyalty/accounts/{account_id}"
RETRIEVE_LOYALTY_ACCOUNT = "GET /v2/loyalty/accounts/{account_id}"
# Sandbox only: opens nothing but this emulator.
SQUARE_SANDBOX_TOKEN = "sandbox-square-access-token-not-real-0002"
DOCUMENTED_ACCOUNT = "79b807d2-d786-46a9-933b-918028d7a8c5"
DEFAULT_VERSION = "2023-01-19"
_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("INVALID_REQUEST_ERROR", "BAD_REQUEST", "Invalid Square-Version format."),
    401: ("AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized."),
    404: ("INVALID_REQUEST_ERROR", "NOT_FOUND", "Loyalty account not found."),
    429: ("RATE_LIMIT_ERROR", "RATE_LIMITED", "Too many requests; retry with backoff."),
}


def error_body(status: int) -> bytes:
    """Square's documented error list for `status`."""
    generic = ("API_ERROR", "INTERNAL_SERVER_ERROR", status_phrase(status))
    category, code, detail = _ERRORS.get(status, generic)
    return dump_json({"errors": [{"category": category, "code": code, "detail": detail}]})


def loyalty_account_json(member: Member) -> Json:
    """The documented RetrieveLoyaltyAccount example, about `member`."""
    mapping: Json = {
        "id": "66aaab3f-da99-49ed-8b19-b87f851c844f",
        "phone_number": "+14155551234",
        "created_at": "2020-05-08T21:44:32Z",
    }
    return {
        "loyalty_account": {
            "id": member.key,
            "mapping": mapping,
            "program_id": "d619f755-2d17-41f3-990d-c04ecedd64dd",
            "balance": member.points,
            "lifetime_points": max(member.points, 0) + 10,
            "customer_id": "Q8002FAM9V1EZ0ADB2T5609X6NET1H0",
            "created_at": "2020-05-08T21:44:32Z",
            "updated_at": "2020-05-08T21:44:32Z",
        }
    }


def square_sandbox() -> LoyaltySandbox:
    """A Square emulator state holding the documented loyalty account (10 points)."""
    box = LoyaltySandbox(endpoint=RETRIEVE_LOYALTY_ACCOUNT, credentials={SQUARE_SANDBOX_TOKEN})
    box.add(DOCUMENTED_ACCOUNT, 10)
    return box


def create_square_app(sandbox: LoyaltySandbox) -> Starlette:
    """The Square Loyalty emulator over `sandbox`."""

    async def retrieve_loyalty_account(request: Request) -> Response:
        sandbox.calls.hit(RETRIEVE_LOYALTY_ACCOUNT)
        account_id = request.path_params["account_id"]
        version = request.headers.get("square-version", DEFAULT_VERSION)
        member = sandbox.find(account_id)
        if not sandbox.accepts(bearer(request, "Bearer")):
            status, body = 401, error_body(401)
        elif _VERSION.fullmatch(version) is None:
            status, body = 400, error_body(400)
        elif member is None:
            status, body = 404, error_body(404)
        else:
            status, body = 200, dump_json(loyalty_account_json(member))
        response = await sandbox.answer(request, account_id, status, body, error_body)
        if _VERSION.fullmatch(version):
            response.headers["square-version"] = version
        return response

    routes = [
        Route(ACCOUNT_PATH, retrieve_loyalty_account, methods=["GET"]),
        *admin_routes(sandbox),
    ]
    return Starlette(routes=routes)
