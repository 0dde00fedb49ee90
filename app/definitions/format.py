"""The definition format: one YAML file per provider (docs/definitions.md is its reference).

These models are the format: `points-gateway providers schema` prints their JSON Schema, and a
file is valid exactly when it validates against them and its cross-references hold (templates
name real fields, one account field identifies the account, paths parse).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,31}$"
FIELD_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Statuses: 404, "4xx", "200-299", or a list of them.
STATUS_PATTERN = r"^([1-5]xx|[1-5][0-9]{2}-[1-5][0-9]{2})$"

Scalar = str | int | bool | None
StatusSpec = Annotated[int, Field(ge=100, le=599)] | Annotated[str, Field(pattern=STATUS_PATTERN)]
PROVIDER_CODES = (
    "provider_rejected",
    "upstream_auth_failed",
    "upstream_rate_limited",
    "upstream_error",
    "upstream_invalid_response",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountField(_Strict):
    """One field of the linked account (the body of `PUT /users/{id}/accounts/<name>`)."""

    type: Literal["string"] = "string"
    pattern: str | None = Field(default=None, description="A regular expression the value matches.")
    min_length: int = Field(default=1, ge=0, le=4096)
    max_length: int = Field(default=256, ge=1, le=4096)
    secret: bool = Field(default=False, description="Write-only, sealed, masked in upstream text.")
    identifies: bool = Field(
        default=False, description="The account's id at the provider (shown masked); exactly one."
    )
    required: bool = True
    lowercase: bool = Field(default=False, description="Kept lowercased (ids compared as such).")
    description: str | None = None


class SettingField(_Strict):
    """One operator setting (`POINTS_PROVIDERS__<NAME>__<SETTING>`)."""

    type: Literal["string", "url", "number"] = "string"
    pattern: str | None = Field(default=None, description="A regular expression (strings).")
    default: str | float | None = Field(
        default=None, description="Absent: the setting is required."
    )
    secret: bool = False
    description: str | None = None


class Condition(_Strict):
    """A value of the answer must equal something (a JSON scalar, or a template)."""

    path: str
    equals: Scalar
    compare: Literal["exact", "hex_id", "text"] = Field(
        default="exact",
        description="`hex_id`: hex strings compared case- and leading-zero-insensitively; "
        "`text`: a JSON integer or string compared by its text (an id sent as a number).",
    )


class When(_Strict):
    """When an error rule applies: a status, and/or a value of the answer."""

    status: StatusSpec | list[StatusSpec] | None = None
    path: str | None = None
    equals: Scalar = None
    compare: Literal["exact", "hex_id", "text"] = "exact"

    @model_validator(mode="after")
    def _something(self) -> When:
        if self.status is None and self.path is None:
            raise ValueError("`when` needs a status, a path, or both")
        # `equals` defaults to null: a path alone would silently mean "is null".
        if (self.path is None) != ("equals" not in self.model_fields_set):
            raise ValueError("`path` and `equals` go together")
        return self


class ErrorRule(_Strict):
    """An answer the provider gives for a failure, and what it means."""

    when: When
    code: Literal[
        "provider_rejected",
        "upstream_auth_failed",
        "upstream_rate_limited",
        "upstream_error",
        "upstream_invalid_response",
    ]
    message: str | None = Field(default=None, description="A path to the provider's own text.")
    upstream_code: str | None = Field(default=None, description="A path to the provider's code.")


class Amount(_Strict):
    """A number in the answer."""

    path: str
    type: Literal["integer", "decimal"] = "decimal"
    accept: Literal["number_or_string", "number"] = Field(
        default="number_or_string",
        description='`number`: only a JSON number (a string such as "12" is refused).',
    )
    required: bool = True


class Request(_Strict):
    """An HTTP request, relative to the `base_url` setting."""

    method: Literal["GET", "POST"] = "GET"
    path: str = Field(pattern=r"^/")
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    json_body: Any = Field(default=None, alias="json", description="A body template (POST).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Apply(_Strict):
    """Where the session token goes on each request."""

    header: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    value: str = "Bearer {token}"


class NoAuth(_Strict):
    kind: Literal["none"]


class SessionAuth(_Strict):
    """Log in, reuse the token until it nearly expires, refresh once on a 401 (iamport style)."""

    kind: Literal["session"]
    login: Request
    token: str = Field(description="A path to the token in the login answer.")
    expires_at: str | None = Field(default=None, description="A path: unix seconds.")
    now: str | None = Field(
        default=None,
        description="A path to the provider's clock (unix seconds) beside `expires_at`: the "
        "lifetime is `expires_at - now`, whatever the clocks say.",
    )
    expires_in: str | None = Field(default=None, description="A path: seconds from now.")
    refresh_margin: float = Field(default=30.0, ge=0, lt=300)
    apply: Apply
    success: list[Condition] = Field(
        default=[], description="Conditions the login answer must meet (else auth failed)."
    )
    message: str | None = Field(default=None, description="A path to a refusal's text.")

    @model_validator(mode="after")
    def _one_expiry(self) -> SessionAuth:
        if (self.expires_at is None) == (self.expires_in is None):
            raise ValueError("name exactly one of `expires_at` and `expires_in`")
        if self.now is not None and self.expires_at is None:
            raise ValueError("`now` goes with `expires_at`")
        return self


class UserTokenOwnership(_Strict):
    """The account carries the user's own session token, whose `sub` names the account."""

    kind: Literal["user_token"]
    token: str = Field(description="The account field holding the user's token (a JWT).")
    subject: str = Field(description="The account field the token's `sub` must name.")
    compare: Literal["exact", "hex_id"] = "exact"
    otherwise: Literal["trusted_link"] | None = Field(
        default=None, description="When the token field is left out (it must be optional)."
    )
    hint: str = ""


class SimpleOwnership(_Strict):
    kind: Literal["secret", "trusted_link"]
    hint: str = Field(default="", description="trusted_link: what an end user could send instead.")


class Definition(_Strict):
    """A points provider, from one YAML file."""

    name: str = Field(pattern=NAME_PATTERN)
    display_name: str = Field(min_length=1, max_length=80)
    unit: str = Field(min_length=1, max_length=80, description="May use `{account.x}`.")
    ownership: Literal["secret", "trusted_link"] | SimpleOwnership | UserTokenOwnership
    account: dict[Annotated[str, Field(pattern=FIELD_PATTERN)], AccountField] = Field(min_length=1)
    settings: dict[Annotated[str, Field(pattern=FIELD_PATTERN)], SettingField]
    timeout: float = Field(default=3.0, gt=0, le=60)
    cache_ttl: float | None = Field(default=None, ge=0, le=86_400)
    auth: NoAuth | SessionAuth = Field(default=NoAuth(kind="none"), discriminator="kind")
    request: Request
    success: list[Condition] = []
    checks: list[Condition] = []
    balance: Amount
    details: dict[Annotated[str, Field(pattern=FIELD_PATTERN)], Amount] = {}
    errors: list[ErrorRule] = []
