"""Emulator of Yotpo Loyalty & Referrals' "Fetch Customer Details", `GET /api/v2/customers`.

The customer is looked up by `customer_email` (case-insensitively); the answer is the documented
customer record. Yotpo documents no error bodies, so the emulator's (`{"error": "..."}`) are an
assumption; a 429 carries the documented `ratelimit-*` headers, not Retry-After.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox.faults import Json, admin_routes, dump_json, status_phrase
from app.sandbox.loyalty.members import LoyaltySandbox, Member

CUSTOMERS_PATH = "/api/v2/customers"
FETCH_CUSTOMER = "GET /api/v2/customers"
# Sandbox only: they open nothing but this emulator.
YOTPO_SANDBOX_GUID = "sandbox-yotpo-guid-not-real"
YOTPO_SANDBOX_KEY = "sandbox-yotpo-api-key-not-real-0004"
DOCUMENTED_EMAIL = "jane@doe.com"
RATE_LIMIT_RESET = "1"
_MESSAGES = {
    401: "Unauthorized: invalid guid or api_key",
    404: "Customer not found",
    429: "Too Many Requests",
}


def error_body(status: int) -> bytes:
    """The emulator's error body for `status` (Yotpo documents none)."""
    return dump_json({"error": _MESSAGES.get(status, status_phrase(status))})


def customer_json(member: Member) -> Json:
    """The documented customer record, about `member`."""
    return {
        "first_name": "Jane",
        "last_name": "Doe",
        "email": member.email,
        "points_balance": member.points,
        "points_earned": member.points + 540,
        "total_spend_cents": 130980,
        "total_purchases": 3,
        "perks_redeemed": 1,
        "last_purchase_at": "2021-01-25T09:47:27.000Z",
        "vip_tier_name": "Gold",
        "referral_link": "http://rwrd.io/abc123",
    }


def yotpo_sandbox() -> LoyaltySandbox:
    """A Yotpo emulator state holding one customer (23710 points, as in the documented record)."""
    box = LoyaltySandbox(
        endpoint=FETCH_CUSTOMER,
        credentials={f"{YOTPO_SANDBOX_GUID}:{YOTPO_SANDBOX_KEY}"},
        lowercase_keys=True,
    )
    box.add(DOCUMENTED_EMAIL, 23710, email=DOCUMENTED_EMAIL)
    return box


def _credentials(request: Request) -> str:
    # Documented both as headers and as the query parameters `guid` and `api_key`.
    guid = request.headers.get("x-guid") or request.query_params.get("guid", "")
    key = request.headers.get("x-api-key") or request.query_params.get("api_key", "")
    return f"{guid}:{key}"


def create_yotpo_app(sandbox: LoyaltySandbox) -> Starlette:
    """The Yotpo Loyalty emulator over `sandbox`."""

    async def fetch_customer(request: Request) -> Response:
        sandbox.calls.hit(FETCH_CUSTOMER)
        email = request.query_params.get("customer_email")
        member = sandbox.find(email)
        if not sandbox.accepts(_credentials(request)):
            status, body = 401, error_body(401)
        elif member is None:
            status, body = 404, error_body(404)
        else:
            status, body = 200, dump_json(customer_json(member))
        response = await sandbox.answer(request, email, status, body, error_body)
        if response.status_code == 429:
            response.headers["ratelimit-remaining"] = "0"
            response.headers["ratelimit-reset"] = RATE_LIMIT_RESET
        return response

    routes = [Route(CUSTOMERS_PATH, fetch_customer, methods=["GET"]), *admin_routes(sandbox)]
    return Starlette(routes=routes)
