"""redact(): its keyword pre-check never lets through what the patterns alone would mask."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.security import log_redaction
from app.security.log_redaction import redact
from tests.conftest import examples

WORDS = [
    "token",
    "Token",
    "TOKEN",
    "secret",
    "imp_secret",
    "password",
    "passwd",
    "PassWord",
    "bearer",
    "Bearer",
    "authorization",
    "Authorization",
    "x-api-key",
    "X-API-Key",
    "\u017fecret",  # LONG S matches "s" case-insensitively: must not skip the patterns
    "to\u212aen",  # the KELVIN SIGN as the k
]
PIECES = st.one_of(
    st.sampled_from([*WORDS, "=", ":", " ", '"', "'", "\n", "\r", "abcdefgh12345678", ","]),
    st.text(max_size=12),
)


def _patterns_only(text: str) -> str:
    text = log_redaction._SECRET_FIELDS.sub(r"\1\2[REDACTED]", text)
    text = log_redaction._BEARER.sub(r"\1 [REDACTED]", text)
    return text.replace("\r", "\\r").replace("\n", "\\n")


@settings(max_examples=examples(600))
@given(st.lists(PIECES, max_size=8).map("".join))
def test_redact_masks_exactly_what_the_patterns_mask(text: str) -> None:
    assert redact(text) == _patterns_only(text)


def test_secrets_are_masked_and_ids_left_alone() -> None:
    assert redact("Authorization: Bearer abc.def.ghi") == "Authorization: [REDACTED]"
    assert redact("token abcdefgh12345678") == "token [REDACTED]"
    assert redact("\u017fecret=hunter2") == "\u017fecret=[REDACTED]"
    uid = "3e98dded-ef01-441d-a241-57a8384b7627"
    assert redact(uid) == uid
    assert redact("a\nb") == "a\\nb"
