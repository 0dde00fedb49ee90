"""Fault injection, call counters and admin routes shared by the sandbox emulators."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

JSON_TYPE = "application/json"
WILDCARD = "*"
MAX_LATENCY = 300.0
MAX_OVERSIZED = 64 * 1024 * 1024
MAX_RETRY_AFTER = 86_400
# Statuses that must not carry a body; servers reject a response that has one.
_BODYLESS_STATUSES = frozenset({204, 205, 304})
_PAD_HEAD = b'{"_padding":"'

Json: TypeAlias = (
    Mapping[str, "Json"]
    | list["Json"]
    | tuple["Json", ...]
    | str
    | int
    | float
    | bool
    | Decimal
    | None
)
ErrorBody: TypeAlias = Callable[[int], bytes]


def dump_json(value: Json) -> bytes:
    """Encode compact UTF-8 JSON, writing Decimals as numbers with their exact digits."""
    return _encode(value).encode()


def _encode(value: Json) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("a non-finite Decimal has no JSON form")
        return str(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(k, ensure_ascii=False)}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def status_phrase(status: int) -> str:
    """Return the standard reason phrase of ``status``, or a generic one."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Sandbox fault"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One injected misbehaviour; latency runs first, then the other knobs shape the answer."""

    latency: float | None = None
    status: int | None = None
    body: str | None = None
    content_type: str = JSON_TYPE
    hang: bool = False
    malformed: bool = False
    oversized: int | None = None
    retry_after: int | None = None
    times: int | None = None

    def __post_init__(self) -> None:
        problem = _fault_problem(self)
        if problem is not None:
            raise ValueError(problem)


def _fault_problem(fault: Fault) -> str | None:
    if fault.latency is not None and not (
        math.isfinite(fault.latency) and 0 <= fault.latency <= MAX_LATENCY
    ):
        return f"latency must be between 0 and {MAX_LATENCY:g} seconds"
    if fault.status is not None and (
        not 200 <= fault.status <= 599 or fault.status in _BODYLESS_STATUSES
    ):
        return "status must be 200..599 and not 204, 205 or 304"
    ct = fault.content_type
    if not ct or not ct.isascii() or not ct.isprintable():
        return "content_type must be non-empty printable ASCII"
    if fault.oversized is not None and not 1 <= fault.oversized <= MAX_OVERSIZED:
        return f"oversized must be between 1 and {MAX_OVERSIZED} bytes"
    if fault.retry_after is not None and not 0 <= fault.retry_after <= MAX_RETRY_AFTER:
        return f"retry_after must be between 0 and {MAX_RETRY_AFTER} seconds"
    if fault.times is not None and fault.times < 1:
        return "times must be at least 1, or null for forever"
    if (fault.body is not None) + fault.malformed + (fault.oversized is not None) > 1:
        return "choose at most one of body, malformed, oversized"
    return None


class FaultBook:
    """Faults keyed by account key, or "*" for every request; safe to set from another thread."""

    def __init__(self) -> None:
        self._faults: dict[str, Fault] = {}
        self._lock = threading.Lock()

    def set(self, key: str, fault: Fault) -> None:
        """Install ``fault`` for ``key``, replacing any earlier one."""
        with self._lock:
            self._faults[key] = fault

    def remove(self, key: str) -> bool:
        """Remove the fault of ``key``; return whether there was one."""
        with self._lock:
            return self._faults.pop(key, None) is not None

    def clear(self) -> int:
        """Remove every fault; return how many there were."""
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count

    def take(self, key: str | None, *, wildcard: bool = True) -> Fault | None:
        """Return the fault for ``key`` (else "*"), counting one use of it."""
        keys = [k for k in (key, WILDCARD if wildcard else None) if k is not None]
        with self._lock:
            for k in keys:
                fault = self._faults.get(k)
                if fault is None:
                    continue
                if fault.times is not None:
                    if fault.times <= 1:
                        del self._faults[k]
                    else:
                        self._faults[k] = dataclasses.replace(fault, times=fault.times - 1)
                return fault
        return None

    def snapshot(self) -> dict[str, Fault]:
        """Return a copy of the installed faults."""
        with self._lock:
            return dict(self._faults)


class CallCounter:
    """Per-endpoint request counts."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self._endpoints = tuple(endpoints)
        self._counts = dict.fromkeys(self._endpoints, 0)
        self._lock = threading.Lock()

    def hit(self, endpoint: str) -> None:
        """Count one request to ``endpoint``."""
        with self._lock:
            self._counts[endpoint] = self._counts.get(endpoint, 0) + 1

    def __getitem__(self, endpoint: str) -> int:
        with self._lock:
            return self._counts.get(endpoint, 0)

    def snapshot(self) -> dict[str, int]:
        """Return a copy of the counts."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Set every count back to zero."""
        with self._lock:
            self._counts = dict.fromkeys(self._endpoints, 0)


def pad_json(body: bytes, size: int) -> bytes:
    """Grow a JSON object to exactly ``size`` bytes with a filler field, keeping it valid JSON."""
    if len(body) >= size:
        return body
    rest = body[1:]
    tail = b'"' if rest.lstrip().startswith(b"}") else b'",'
    fill = size - len(_PAD_HEAD) - len(tail) - len(rest)
    if body.startswith(b"{") and fill >= 0:
        return _PAD_HEAD + b"x" * fill + tail + rest
    # Too small for a filler field, or not an object: trailing whitespace is still valid JSON.
    return body + b" " * (size - len(body))


async def _until_disconnected(request: Request) -> None:
    # Waiting for the client to go away (rather than on a bare Event) never answers either,
    # but lets the handler end once the client gives up, so a server can still shut down.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def apply_fault(
    request: Request,
    fault: Fault | None,
    status: int,
    body: bytes,
    *,
    error_body: ErrorBody,
) -> Response:
    """Answer the normal ``status``/``body``, bent by ``fault`` when there is one."""
    if fault is None:
        return Response(body, status, media_type=JSON_TYPE)
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.hang:
        await _until_disconnected(request)
        return Response(error_body(503), 503, media_type=JSON_TYPE)
    out_status = status if fault.status is None else fault.status
    if fault.body is not None:
        payload = fault.body.encode()
    elif fault.malformed:
        out_status = 200 if fault.status is None else fault.status
        payload = body[: max(1, len(body) // 2)]
    elif fault.status is not None and fault.status >= 400:
        payload = error_body(fault.status)
    else:
        payload = body
    if fault.oversized is not None:
        payload = pad_json(payload, fault.oversized)
    headers = None if fault.retry_after is None else {"retry-after": str(fault.retry_after)}
    return Response(payload, out_status, headers=headers, media_type=fault.content_type)


class FaultRequest(BaseModel):
    """Admin JSON for ``POST /__sandbox/faults``: a key plus the Fault knobs."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    key: str = Field(min_length=1, max_length=256)
    latency: float | None = None
    status: int | None = None
    body: str | None = None
    content_type: str = JSON_TYPE
    hang: bool = False
    malformed: bool = False
    oversized: int | None = None
    retry_after: int | None = None
    times: int | None = None

    @model_validator(mode="after")
    def _valid_fault(self) -> Self:
        self.to_fault()
        return self

    def to_fault(self) -> Fault:
        """Build the Fault these knobs describe."""
        return Fault(
            latency=self.latency,
            status=self.status,
            body=self.body,
            content_type=self.content_type,
            hang=self.hang,
            malformed=self.malformed,
            oversized=self.oversized,
            retry_after=self.retry_after,
            times=self.times,
        )


class SandboxState:
    """What every emulator's state has, and the admin routes use: fault knobs and call counts."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self._faults = FaultBook()
        self._calls = CallCounter(tuple(endpoints))

    @property
    def faults(self) -> FaultBook:
        """Injected faults, by the key each emulator names (an account, "*", an endpoint)."""
        return self._faults

    @property
    def calls(self) -> CallCounter:
        """Per-endpoint request counts."""
        return self._calls

    def reset(self) -> None:
        """Clear faults and counters (an emulator that records more clears that too)."""
        self._faults.clear()
        self._calls.reset()


def _json_response(content: Json, status: int = 200) -> Response:
    return Response(dump_json(content), status, media_type=JSON_TYPE)


def _fault_json(fault: Fault) -> dict[str, Json]:
    return {f.name: getattr(fault, f.name) for f in dataclasses.fields(fault)}


def admin_routes(state: SandboxState) -> list[BaseRoute]:
    """Return the ``/__sandbox/`` routes: faults, stats and reset."""

    async def set_fault(request: Request) -> Response:
        try:
            spec = FaultRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            text = json.dumps({"detail": errors}, ensure_ascii=False, default=str)
            return Response(text, 422, media_type=JSON_TYPE)
        fault = spec.to_fault()
        state.faults.set(spec.key, fault)
        return _json_response({"key": spec.key, "fault": _fault_json(fault)})

    async def clear_faults(request: Request) -> Response:
        key = request.query_params.get("key")
        cleared = state.faults.clear() if key is None else int(state.faults.remove(key))
        return _json_response({"cleared": cleared})

    async def stats(request: Request) -> Response:
        faults = {key: _fault_json(f) for key, f in state.faults.snapshot().items()}
        return _json_response({"calls": state.calls.snapshot(), "faults": faults})

    async def reset(request: Request) -> Response:
        state.reset()
        return _json_response({"reset": True})

    return [
        Route("/__sandbox/faults", set_fault, methods=["POST"]),
        Route("/__sandbox/faults", clear_faults, methods=["DELETE"]),
        Route("/__sandbox/stats", stats, methods=["GET"]),
        Route("/__sandbox/reset", reset, methods=["POST"]),
    ]
