"""A definition compiled: templates and paths parsed, cross-references checked, once.

`compile_definition` raises `DefinitionError` naming the key at fault as a path into the file
(`request.headers.X-Member-Pin`), which the loader turns into a line number.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from app.definitions.format import (
    Condition,
    Definition,
    ErrorRule,
    Request,
    SessionAuth,
    UserTokenOwnership,
)
from app.definitions.paths import Path, PathError
from app.definitions.rules import Check, Number, Rule
from app.definitions.templates import Template, TemplateError

Loc = tuple[str | int, ...]
JsonTemplate = object
"""A JSON body whose strings are Templates."""


class DefinitionError(ValueError):
    """A definition that cannot serve: each problem's place in the file (`loc`) and what."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


# The problems found while compiling one definition: every one is reported, not the first.
_found: ContextVar[list[tuple[Loc, str]]] = ContextVar("definition_problems")


def _report(loc: Loc, message: str) -> None:
    _found.get().append((loc, message))


@contextmanager
def _at(loc: Loc) -> Iterator[None]:
    try:
        yield
    except (PathError, TemplateError) as exc:
        _report(loc, str(exc))


@dataclass(frozen=True, slots=True)
class CompiledRequest:
    method: str
    path: Template
    query: tuple[tuple[str, Template], ...]
    headers: tuple[tuple[str, Template], ...]
    json: JsonTemplate


@dataclass(frozen=True, slots=True)
class CompiledSession:
    login: CompiledRequest
    token: Path
    expires_at: Path | None
    now: Path | None
    expires_in: Path | None
    refresh_margin: float
    header: str
    value: Template
    success: tuple[Check, ...]
    message: Path | None


@dataclass(frozen=True, slots=True)
class Compiled:
    """Everything a declarative provider reads an answer with."""

    definition: Definition
    unit: Template
    request: CompiledRequest
    session: CompiledSession | None
    success: tuple[Check, ...]
    checks: tuple[Check, ...]
    balance: Number
    details: tuple[tuple[str, Number], ...]
    errors: tuple[Rule, ...]
    header_fields: frozenset[str]
    """Account fields and settings that travel in headers (their values must be header-safe)."""


def _template(loc: Loc, text: str, known: set[str]) -> Template:
    with _at(loc):
        return Template.parse(text, known)
    return Template(text, ())  # reported; never served


def _path(loc: Loc, text: str | None) -> Path | None:
    if text is None:
        return None
    with _at(loc):
        return Path.parse(text)
    return Path(text, ())  # reported; never served


def _json(loc: Loc, value: object, known: set[str]) -> JsonTemplate:
    if isinstance(value, str):
        return _template(loc, value, known)
    if isinstance(value, dict):
        return {str(k): _json((*loc, str(k)), v, known) for k, v in value.items()}
    if isinstance(value, list):
        return [_json((*loc, i), v, known) for i, v in enumerate(value)]
    return value


def _request(loc: Loc, request: Request, known: set[str]) -> CompiledRequest:
    return CompiledRequest(
        request.method,
        _template((*loc, "path"), request.path, known),
        tuple((k, _template((*loc, "query", k), v, known)) for k, v in request.query.items()),
        tuple((k, _template((*loc, "headers", k), v, known)) for k, v in request.headers.items()),
        _json((*loc, "json"), request.json_body, known),
    )


def _checks(loc: Loc, conditions: list[Condition], known: set[str]) -> tuple[Check, ...]:
    checks = []
    for i, condition in enumerate(conditions):
        with _at((*loc, i)):
            checks.append(Check.of(condition, known))
    return tuple(checks)


def _session(auth: SessionAuth, settings: set[str]) -> CompiledSession:
    token = _path(("auth", "token"), auth.token)
    assert token is not None
    return CompiledSession(
        login=_request(("auth", "login"), auth.login, settings),
        token=token,
        expires_at=_path(("auth", "expires_at"), auth.expires_at),
        now=_path(("auth", "now"), auth.now),
        expires_in=_path(("auth", "expires_in"), auth.expires_in),
        refresh_margin=auth.refresh_margin,
        header=auth.apply.header,
        value=_template(("auth", "apply", "value"), auth.apply.value, {*settings, "token"}),
        success=_checks(("auth", "success"), auth.success, settings),
        message=_path(("auth", "message"), auth.message),
    )


def _number(loc: Loc, definition: Definition, detail: str | None) -> Number:
    amount = definition.balance if detail is None else definition.details[detail]
    with _at((*loc, "path")):
        return Number.of(amount)
    return Number(Path(amount.path, ()), False, False, False)  # reported; never served


def _rules(rules: list[ErrorRule], known: set[str]) -> tuple[Rule, ...]:
    compiled = []
    for i, rule in enumerate(rules):
        with _at(("errors", i)):
            compiled.append(Rule.of(rule, known))
    return tuple(compiled)


def _check_account(definition: Definition) -> None:
    identifying = [name for name, field in definition.account.items() if field.identifies]
    if len(identifying) != 1:
        _report(("account",), "exactly one account field needs `identifies: true`")
    elif definition.account[identifying[0]].secret:
        _report(("account", identifying[0]), "an identifying field cannot be secret")
    base = definition.settings.get("base_url")
    if base is None or base.type != "url":
        _report(("settings",), "a `base_url` setting of type url is required")
    ownership = definition.ownership
    if isinstance(ownership, UserTokenOwnership):
        fields = {key: getattr(ownership, key) for key in ("token", "subject")}
        for key, field in fields.items():
            if field not in definition.account:
                _report(("ownership", key), f"no account field {field!r}")
        token = definition.account.get(ownership.token)
        if ownership.otherwise is not None and token is not None and token.required:
            _report(
                ("ownership", "otherwise"), f"account field {ownership.token!r} must be optional"
            )


def _no_secret_in_urls(definition: Definition, loc: Loc, request: CompiledRequest) -> None:
    # URLs end up in access logs, proxies and browser histories: secrets travel in headers or
    # bodies only (DESIGN.md: never a token in a URL).
    secrets = {f"account.{n}" for n, f in definition.account.items() if f.secret}
    secrets |= {f"settings.{n}" for n, f in definition.settings.items() if f.secret}
    secrets.add("token")
    places = [(("path",), request.path), *((("query", k), t) for k, t in request.query)]
    for where, template in places:
        for name in sorted(template.names & secrets):
            _report((*loc, *where), f"{{{name}}} is a secret: send it in a header or the body")


def compile_definition(definition: Definition) -> Compiled:
    """The definition, ready to serve; DefinitionError listing everything it names but lacks."""
    found: list[tuple[Loc, str]] = []
    token = _found.set(found)
    try:
        compiled = _compile(definition)
    finally:
        _found.reset(token)
    if found:
        raise DefinitionError(found)
    return compiled


def _compile(definition: Definition) -> Compiled:
    _check_account(definition)
    account = {f"account.{name}" for name in definition.account}
    settings = {f"settings.{name}" for name in (*definition.settings, "timeout")}
    known = {*account, *settings}
    per_request = {*known, "request_id", "request_uuid"}
    session = None
    if isinstance(definition.auth, SessionAuth):
        per_request.add("token")
        session = _session(definition.auth, settings)
    request = _request(("request",), definition.request, per_request)
    _no_secret_in_urls(definition, ("request",), request)
    if session is not None:
        _no_secret_in_urls(definition, ("auth", "login"), session.login)
    in_headers = {name for _, template in request.headers for name in template.names}
    if session is not None:
        in_headers |= {n for _, t in session.login.headers for n in t.names} | session.value.names
    return Compiled(
        definition=definition,
        unit=_template(("unit",), definition.unit, account),
        request=request,
        session=session,
        success=_checks(("success",), definition.success, known),
        checks=_checks(("checks",), definition.checks, known),
        balance=_number(("balance",), definition, None),
        details=tuple(
            (name, _number(("details", name), definition, name)) for name in definition.details
        ),
        errors=_rules(definition.errors, known),
        header_fields=frozenset(in_headers - {"token", "request_id", "request_uuid"}),
    )
