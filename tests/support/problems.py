"""Assertions on problem+json answers shared by the suites."""

from __future__ import annotations

from typing import Any

import httpx

from app.problems import PROBLEM_MEDIA_TYPE
from tests.conftest import SECRETS


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:points-gateway:problem:{code}"
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["request_id"] == r.headers["x-request-id"]
    for secret in SECRETS:
        assert secret not in r.text
    return body


def strings(value: object) -> list[str]:
    """Every string inside a decoded JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []
