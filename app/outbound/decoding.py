"""Decoding an upstream body's Content-Encoding without ever holding more than the byte cap.

Written here rather than left to httpx's or aiohttp's decoders: both decode each chunk whole, so
a small gzip bomb becomes hundreds of megabytes in one step before any cap is checked. zlib's
`max_length` stops at the cap. gzip and deflate are decoded (as httpx did); any other coding is
passed on as it came, like httpx does for codings it has no decoder for, and then fails to parse.
"""

from __future__ import annotations

import zlib


class BodyTooLarge(Exception):
    """The body is over the cap (declared, counted or decoded); `status` is the answer's."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Undecodable(Exception):
    """The body does not decode with the coding its Content-Encoding names."""

    def __init__(self, status: int | None) -> None:
        super().__init__(status)
        self.status = status


_GZIP = 16 + zlib.MAX_WBITS
_ZLIB = zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


def decoded(body: bytes, content_encoding: str, max_bytes: int, status: int) -> bytes:
    """`body` with its codings undone, last applied first; BodyTooLarge past `max_bytes`."""
    if not content_encoding:  # nearly every answer
        return body
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, (_GZIP,), max_bytes, status)
        elif coding == "deflate":
            # "deflate" is meant to be zlib-wrapped, but some servers send it raw (as httpx).
            body = _inflate(body, (_ZLIB, _RAW_DEFLATE), max_bytes, status)
    return body


def _inflate(body: bytes, formats: tuple[int, ...], max_bytes: int, status: int) -> bytes:
    for wbits in formats:
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, max_bytes + 1)
            if len(out) > max_bytes:
                raise BodyTooLarge(status)
            # All input was taken without reaching the limit: what flush adds is bounded by it.
            out += inflater.flush()
        except zlib.error:
            continue
        if len(out) > max_bytes:
            raise BodyTooLarge(status)
        return out
    raise Undecodable(status)
