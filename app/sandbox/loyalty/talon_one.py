"""Emulator of Talon.One's getLoyaltyBalances (Integration API).

`GET /v1/loyalty_programs/{loyaltyProgramId}/profile/{integrationId}/balances` answers the SDKs'
documented `LoyaltyBalancesWithTiers` example for the member; errors carry the documented
`ErrorResponseWithStatus` body (`message`, `errors`, `StatusCode`), with the emulator's texts.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.sandbox.faults import Json, admin_routes, dump_json, status_phrase
from app.sandbox.loyalty.members import LoyaltySandbox, Member, bearer

BALANCES_PATH = "/v1/loyalty_programs/{program_id}/profile/{integration_id}/balances"
GET_LOYALTY_BALANCES = "GET /v1/loyalty_programs/{id}/profile/{integrationId}/balances"
# Sandbox only: opens nothing but this emulator.
TALON_SANDBOX_KEY = "sandbox0talon0one0integration0key0not0real0003"
SANDBOX_PROGRAM = "33"
DOCUMENTED_PROFILE = "customer1"
_ERRORS: dict[int, tuple[str, str]] = {
    401: ("Unauthorized", "The API key is missing, invalid or expired."),
    404: ("Not found", "The customer profile or loyalty program was not found."),
    429: ("Too many requests", "The rate limit of this deployment was exceeded."),
}


def error_body(status: int) -> bytes:
    """Talon.One's documented error response for `status`."""
    title, details = _ERRORS.get(status, (status_phrase(status), status_phrase(status)))
    problem: Json = {"title": title, "details": details, "source": {"pointer": ""}}
    return dump_json({"message": details, "errors": [problem], "StatusCode": status})


def balances_json(member: Member) -> Json:
    """The documented `LoyaltyBalancesWithTiers` example, with the member's points."""
    return {
        "balance": {
            "activePoints": member.points,
            "pendingPoints": member.pending,
            "spentPoints": 150,
            "expiredPoints": 25,
            "negativePoints": 0,
        },
        "subledgerBalances": {},
    }


def talon_sandbox() -> LoyaltySandbox:
    """A Talon.One emulator state holding the documented profile (286 active, 50 pending)."""
    box = LoyaltySandbox(endpoint=GET_LOYALTY_BALANCES, credentials={TALON_SANDBOX_KEY})
    box.add(DOCUMENTED_PROFILE, 286, pending=50)
    return box


def create_talon_app(sandbox: LoyaltySandbox, *, program_id: str = SANDBOX_PROGRAM) -> Starlette:
    """The Talon.One emulator over `sandbox`, serving one profile-based program."""

    async def get_loyalty_balances(request: Request) -> Response:
        sandbox.calls.hit(GET_LOYALTY_BALANCES)
        integration_id = request.path_params["integration_id"]
        member = sandbox.find(integration_id)
        if not sandbox.accepts(bearer(request, "ApiKey-v1")):
            status, body = 401, error_body(401)
        elif request.path_params["program_id"] != program_id or member is None:
            status, body = 404, error_body(404)
        else:
            status, body = 200, dump_json(balances_json(member))
        return await sandbox.answer(request, integration_id, status, body, error_body)

    routes = [Route(BALANCES_PATH, get_loyalty_balances, methods=["GET"]), *admin_routes(sandbox)]
    return Starlette(routes=routes)
