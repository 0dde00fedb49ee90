"""The providers' JSON answers the benchmark upstreams serve (nginx and the slow one)."""

from __future__ import annotations

import json

GAFAPAY_USER = "fb8f09210e0f46b7b4262d77f5b6c273"
CURRENCY = "1f1519903ed240578f071aa45cb479f2"
# iamport checks 0 < expired_at - now <= 24 h; the gateway times the token from its own clock.
_NOW = 1_700_000_000
GET_TOKEN = json.dumps(
    {
        "code": 0,
        "message": "",
        "response": {"access_token": "bench-token", "now": _NOW, "expired_at": _NOW + 86_000},
    },
    separators=(",", ":"),
)
BENEPIA_POINT = '{"code":0,"message":"","response":{"point":12000}}'
GAFAPAY_POINTS = json.dumps(
    {
        "success": 1,
        "error": [],
        "data": {
            "user_points": {
                "id": "fd5fd822caa8418d9c0bbbbfc54e0b21",
                "user_id": GAFAPAY_USER,
                "user_type": 2,
                "points": 250.0,
                "currency_id": CURRENCY,
            }
        },
    },
    separators=(",", ":"),
)
