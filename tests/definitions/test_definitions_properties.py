"""No answer a provider can give makes a defined provider answer 500, or guess a number.

Hypothesis writes the provider's answer: any status, any JSON (or not-JSON) body, with and without
the fields the definition looks for; the gateway answers a balance that is exactly the one in the
body, or a problem with a provider code of the error table.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from decimal import Decimal
from pathlib import Path

import httpx
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.accounts.memory_store import MemoryAccountStore
from app.main import create_app
from app.settings import Settings
from tests.conftest import PLAIN, examples, serve_in_process
from tests.definitions.conftest import ACME, ACME_YAML, API_KEY, PIN, write_definitions

PROVIDER_CODES = {
    "upstream_error",
    "upstream_invalid_response",
    "upstream_auth_failed",
    "upstream_rate_limited",
    "provider_rejected",
    "provider_unavailable",
}
PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["OK", "MEMBER_NOT_FOUND", "PIN_MISMATCH", "1001", "1234.50", "1e3", "NaN"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
shaped = st.fixed_dictionaries(
    {
        "status": st.one_of(
            st.sampled_from(["OK", "MEMBER_NOT_FOUND", "PIN_MISMATCH"]), json_values
        ),
        "message": json_values,
        "data": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {"member_id": st.one_of(st.just("1001"), json_values), "points": json_values},
                optional={"expiring_points": json_values},
            ),
        ),
    }
)
bodies = st.one_of(
    shaped.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
)
statuses = st.sampled_from(
    [200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503]
)
content_types = st.sampled_from(["application/json", "text/html", "application/problem+json", ""])


@settings(
    max_examples=examples(200),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    status=statuses,
    body=bodies,
    content_type=content_types,
    retry_after=st.sampled_from([None, "3", "x"]),
)
def test_no_definition_driven_answer_is_a_500(
    status: int, body: bytes, content_type: str, retry_after: str | None
) -> None:
    asyncio.run(_ask(status, body, content_type, retry_after))


FOLDER = write_definitions(Path(tempfile.mkdtemp(prefix="points-definitions-")), ACME_YAML)


async def _ask(status: int, body: bytes, content_type: str, retry_after: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    router = respx.MockRouter(assert_all_mocked=True)
    router.get(f"{ACME}/v1/members/1001/balance").mock(
        return_value=httpx.Response(status, content=body, headers=headers)
    )
    settings = Settings.model_validate(
        {
            "enabled_providers": ["acme"],
            "providers_dir": str(FOLDER),
            "providers": {"acme": {"api_key": API_KEY}},
            **PLAIN,
        }
    )
    app = create_app(
        settings, transport=httpx.MockTransport(router.async_handler), store=MemoryAccountStore()
    )
    async with serve_in_process(app) as client:
        answer = await client.post(
            "/users/dave/points/acme", json={"member_id": "1001", "member_pin": PIN}
        )
    assert answer.status_code != 500, answer.text
    got = answer.json()
    if answer.status_code == 200:
        assert PLAIN_DECIMAL.match(got["points"])
        sent = json.loads(body)["data"]["points"]
        # Exactly the number the provider wrote, never a rounded float.
        assert Decimal(got["points"]) == Decimal(str(sent) if not isinstance(sent, str) else sent)
    else:
        assert got["code"] in PROVIDER_CODES, got
        assert API_KEY not in answer.text
        assert PIN not in answer.text
