"""iamport's `{code, message, response}` envelope, parsed leniently."""

from __future__ import annotations

from dataclasses import dataclass

from app.providers import is_int, parse_json, upstream_text


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of an iamport answer we rely on; unknown fields are ignored."""

    code: int
    message: str | None
    response: dict[str, object] | None


def parse_envelope(body: bytes) -> Envelope | None:
    """The envelope in `body`, or None when the body is not one (HTML, garbage, wrong types)."""
    data = parse_json(body)
    if not isinstance(data, dict) or not is_int(data.get("code")):
        return None
    response = data.get("response")
    return Envelope(
        code=int(data["code"]),
        message=upstream_text(data.get("message")),
        response=response if isinstance(response, dict) else None,
    )
