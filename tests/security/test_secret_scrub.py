"""The masking of secrets in upstream text: which values, which forms, which parts of an error."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest
from pydantic import BaseModel, SecretStr

from app.errors import ProviderRejected, UpstreamError
from app.providers.benepia import BenepiaSettings
from app.security.secret_scrub import MASK, SecretScrubber, secret_values

SECRET = 'p@ss "w/rd"+비밀 1'


class Nested(BaseModel):
    plain: str
    secret: SecretStr
    more: list[SecretStr] = []
    inner: dict[str, SecretStr] = {}


def test_secret_values_finds_every_secret_field_and_no_other() -> None:
    model = Nested(
        plain="not-a-secret",
        secret=SecretStr("s-one"),
        more=[SecretStr("s-two")],
        inner={"k": SecretStr("s-three")},
    )
    assert sorted(secret_values(model)) == ["s-one", "s-three", "s-two"]
    settings = BenepiaSettings(imp_key="key", imp_secret=SecretStr("imp-secret-value"))
    assert secret_values(settings) == ["imp-secret-value"]


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        quote(SECRET, safe="").lower(),
    ],
    ids=["raw", "json-ascii", "json", "url", "url-path", "url-plus", "url-lower-hex"],
)
def test_every_form_of_a_secret_is_masked(form: str) -> None:
    text = SecretScrubber([SECRET]).text(f"refused {form} (code 7)")
    assert text == f"refused {MASK} (code 7)"


def test_a_secret_with_a_control_character_is_masked_as_passed_on() -> None:
    # upstream_text turns non-printable characters into spaces.
    scrubber = SecretScrubber(["tab\tinside-secret"])
    assert scrubber.text("got tab inside-secret") == f"got {MASK}"


def test_values_too_short_to_mean_anything_are_left_alone() -> None:
    scrubber = SecretScrubber(["123", "ab"])
    assert scrubber.text("error 123: ab") == "error 123: ab"
    assert SecretScrubber(["1234"]).text("error 1234") == f"error {MASK}"


def test_a_secret_cut_off_at_the_end_of_a_message_is_masked() -> None:
    secret = "0123456789abcdefghij"
    scrubber = SecretScrubber([secret])
    assert scrubber.text(f"wrong password {secret[:12]}") == f"wrong password {MASK}"
    # A short tail is as likely to be chance: left.
    assert scrubber.text("order 0123") == "order 0123"


def test_overlapping_and_repeated_secrets_leave_no_fragment() -> None:
    scrubber = SecretScrubber(["abcdefgh", "efghijkl"])
    assert scrubber.text("x abcdefghijkl y abcdefgh") == f"x {MASK} y {MASK}"


def test_the_mask_itself_is_not_masked_again() -> None:
    scrubber = SecretScrubber(["secret-one", "REDA"])
    assert scrubber.text("a secret-one") == f"a {MASK}"


def test_with_values_adds_an_accounts_secrets() -> None:
    base = SecretScrubber(["settings-secret"])
    both = base.with_values(["account-secret"])
    assert both.text("settings-secret account-secret") == f"{MASK} {MASK}"
    assert base.text("account-secret") == "account-secret"


def test_an_error_is_scrubbed_in_every_member_and_cause() -> None:
    cause = ValueError(f"cannot read {SECRET}")
    error = ProviderRejected(f"refused {SECRET}", provider="p", upstream_code=f"E-{SECRET}")
    error.__cause__ = cause
    SecretScrubber([SECRET]).exception(error)
    assert error.detail == f"refused {MASK}"
    assert error.upstream_code == f"E-{MASK}"
    assert str(error) == f"refused {MASK}"
    assert str(cause) == f"cannot read {MASK}"


def test_an_error_without_a_secret_is_unchanged() -> None:
    error = UpstreamError("benepia answered HTTP 500", provider="benepia", upstream_status=500)
    SecretScrubber([SECRET]).exception(error)
    assert error.detail == "benepia answered HTTP 500"
    assert error.args == ("benepia answered HTTP 500",)
