"""Emulator of Smile.io's `GET /v1/customers/{id}` (https://dev.smile.io/api).

The success answer is the documented example of "Retrieve a customer" with the member's id,
email and balance; errors carry the documented `{"error": {"message", "request_id"}}` body (the
messages themselves are the emulator's: Smile documents only the shape).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox.faults import Json, admin_routes, dump_json, status_phrase
from app.sandbox.loyalty.members import LoyaltySandbox, Member, bearer, request_id

CUSTOMER_PATH = "/v1/customers/{customer_id}"
RETRIEVE_CUSTOMER = "GET /v1/customers/{id}"
# Sandbox only: opens nothing but this emulator.
SMILE_SANDBOX_KEY = "sandbox_smile_api_key_not_real_0001"
DOCUMENTED_CUSTOMER = "304169228"
_MESSAGES = {
    401: "The API key provided is missing or invalid.",
    404: "The requested customer does not exist.",
    429: "Rate limit exceeded. Please slow down your requests.",
}


def error_body(status: int) -> bytes:
    """Smile's documented error object for `status`."""
    message = _MESSAGES.get(status, status_phrase(status))
    return dump_json({"error": {"message": message, "request_id": request_id()}})


def customer_json(member: Member) -> Json:
    """The documented "Retrieve a customer" example, about `member` (whose key is digits)."""
    vip_status: Json = {
        "vip_tier_id": 426715794,
        "vip_tier_expires_at": "2026-12-31T23:59:59.999Z",
        "progress_value": 300,
        "current_vip_period_end": "2025-12-31T23:59:59.999Z",
        "delta_to_retain_vip_tier": 123,
        "next_vip_tier_id": 426715799,
        "delta_to_next_vip_tier": 200,
    }
    return {
        "customer": {
            "id": int(member.key),
            "first_name": "Jane",
            "last_name": "Doe",
            "email": member.email,
            "state": "member",
            "date_of_birth": "1004-05-27",
            "points_balance": member.points,
            "referral_url": "http://i.refs.cc/9qr5Pw",
            "vip_tier_id": 426715794,
            "vip_status": vip_status,
            "created_at": "2024-04-04T15:10:42.030Z",
            "updated_at": "2025-04-04T15:10:42.030Z",
        }
    }


def smile_sandbox() -> LoyaltySandbox:
    """A Smile.io emulator state holding the documented customer (300 points)."""
    box = LoyaltySandbox(endpoint=RETRIEVE_CUSTOMER, credentials={SMILE_SANDBOX_KEY})
    box.add(DOCUMENTED_CUSTOMER, 300, email="jane@doe.com")
    return box


def create_smile_app(sandbox: LoyaltySandbox) -> Starlette:
    """The Smile.io emulator over `sandbox`."""

    async def retrieve_customer(request: Request) -> Response:
        sandbox.calls.hit(RETRIEVE_CUSTOMER)
        customer_id = request.path_params["customer_id"]
        member = sandbox.find(customer_id)
        if not sandbox.accepts(bearer(request, "Bearer")):
            status, body = 401, error_body(401)
        elif member is None:
            status, body = 404, error_body(404)
        else:
            status, body = 200, dump_json(customer_json(member))
        return await sandbox.answer(request, customer_id, status, body, error_body)

    routes = [Route(CUSTOMER_PATH, retrieve_customer, methods=["GET"]), *admin_routes(sandbox)]
    return Starlette(routes=routes)
