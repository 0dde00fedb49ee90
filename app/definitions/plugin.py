"""A definition as a plugin: its account and settings models, ownership, and the adapter factory.

The models are made from the definition's fields, named after it (`AcmeAccount`,
`AcmeSettings`), so a definition's account is a named schema in the OpenAPI document like a
built-in provider's. A value that would travel in a header must be printable ASCII, and one that
would be a URL path segment must not be `.` or `..`: refused when the account is linked (422) or
the gateway starts, never discovered on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, create_model

from app.definitions.compiled import Compiled
from app.definitions.format import (
    AccountField,
    SettingField,
    SimpleOwnership,
    UserTokenOwnership,
)
from app.definitions.provider import DeclarativeProvider, text_of
from app.definitions.rules import same_hex
from app.providers import BaseUrl, Proof, ProviderDeps, ProviderPlugin

_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNIT_NAME = re.compile(r"\{account\.([a-z0-9_]+)\}")


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _check(test: Callable[[str], bool], message: str) -> AfterValidator:
    def check(value: Any) -> Any:
        if value is not None and not test(text_of(value)):
            raise ValueError(message)
        return value

    return AfterValidator(check)


_NO_CONTROLS = _check(lambda v: not _CONTROL.search(v), "must not hold control characters")
_HEADER_VALUE = _check(lambda v: _HEADER_SAFE.fullmatch(v) is not None, "must be printable ASCII")
_PATH_SEGMENT = _check(lambda v: v not in ("", ".", ".."), "cannot be sent in a URL path")


def _account_field(name: str, field: AccountField, compiled: Compiled) -> tuple[Any, Any]:
    checks: list[Any] = [_NO_CONTROLS]
    if field.pattern is not None:
        pattern = re.compile(field.pattern)
        checks.append(_check(lambda v: pattern.fullmatch(v) is not None, f"must match {pattern}"))
    if f"account.{name}" in compiled.header_fields:
        checks.append(_HEADER_VALUE)
    if f"account.{name}" in compiled.request.path.names:
        checks.append(_PATH_SEGMENT)
    if field.lowercase and not field.secret:
        checks.append(AfterValidator(lambda v: v.lower()))
    schema: dict[str, Any] = {}
    if field.pattern is not None:
        schema["pattern"] = field.pattern
    if field.description:
        schema["description"] = field.description
    if field.secret:
        schema["writeOnly"] = True
    kind: Any = Annotated[
        SecretStr if field.secret else str,
        Field(min_length=field.min_length, max_length=field.max_length, json_schema_extra=schema),
        *checks,
    ]
    if field.required:
        return kind, ...
    return kind | None, None


def _setting_field(name: str, field: SettingField, compiled: Compiled) -> tuple[Any, Any]:
    text = SecretStr if field.secret else str
    kind: Any = {"url": BaseUrl, "number": float}.get(field.type, text)
    if field.pattern is not None:
        pattern = re.compile(field.pattern)
        kind = Annotated[
            kind, _check(lambda v: pattern.fullmatch(v) is not None, f"must match {pattern}")
        ]
    if f"settings.{name}" in compiled.header_fields:
        kind = Annotated[kind, _HEADER_VALUE]
    return kind, (field.default if field.default is not None else ...)


def models(compiled: Compiled) -> tuple[type[BaseModel], type[BaseModel]]:
    """The account and settings models of a definition."""
    definition = compiled.definition
    strict = ConfigDict(extra="forbid")
    account_fields: dict[str, Any] = {
        n: _account_field(n, f, compiled) for n, f in definition.account.items()
    }
    settings_fields: dict[str, Any] = {
        n: _setting_field(n, f, compiled) for n, f in definition.settings.items()
    }
    settings_fields.setdefault("timeout", (float, Field(default=definition.timeout, gt=0, le=60)))
    camel = _camel(definition.name)
    account = create_model(f"{camel}Account", __config__=strict, **account_fields)
    account.__doc__ = f"A {definition.display_name} account."
    settings = create_model(f"{camel}Settings", __config__=strict, **settings_fields)
    return account, settings


def _prover(compiled: Compiled) -> Callable[[BaseModel], Proof]:
    ownership = compiled.definition.ownership
    if isinstance(ownership, str):
        ownership = SimpleOwnership(kind=ownership)
    if isinstance(ownership, SimpleOwnership):
        proof = Proof.secret() if ownership.kind == "secret" else Proof.trusted_link(ownership.hint)
        return lambda _: proof
    user: UserTokenOwnership = ownership
    compare = same_hex if user.compare == "hex_id" else (lambda a, b: a == b)
    fallback = Proof.trusted_link(user.hint)

    def prove(account: BaseModel) -> Proof:
        token = text_of(getattr(account, user.token))
        if not token and user.otherwise is not None:
            return fallback
        subject = text_of(getattr(account, user.subject))
        return Proof.user_token(token, subject=subject, same_subject=compare, field=user.token)

    return prove


def plugin_of(compiled: Compiled) -> ProviderPlugin:
    """The definition as a plugin, served like any other."""
    definition = compiled.definition
    account_model, settings_model = models(compiled)
    identifying = next(n for n, f in definition.account.items() if f.identifies)

    def build(settings: BaseModel, deps: ProviderDeps) -> DeclarativeProvider:
        values = dict(settings)
        upstream = deps.upstream(text_of(values["base_url"]), float(values["timeout"]))
        return DeclarativeProvider(compiled, settings, upstream)

    return ProviderPlugin(
        name=definition.name,
        display_name=definition.display_name,
        unit=_UNIT_NAME.sub(r"<\1>", definition.unit),
        settings_model=settings_model,
        account_model=account_model,
        build=build,
        identify=lambda account: text_of(getattr(account, identifying)),
        prove=_prover(compiled),
        cache_ttl=definition.cache_ttl,
    )
