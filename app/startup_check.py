"""What `serve` checks before it binds, every problem reported at once.

An operator fixing a fresh deployment gets one list (settings that failed validation, provider
settings, authentication, sealing keys, the database schema), not one group per attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from app.accounts.engine import build_engine
from app.accounts.migrate import schema_problem, schema_state
from app.errors import ConfigurationError, StoreUnavailable
from app.gateway import open_store, plan_gateway, refuse_a_missing_sqlite_file
from app.settings import Settings, explain


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    """The settings `serve` starts with, and what was wrong with the environment's."""

    settings: Settings
    problems: list[str] = field(default_factory=list)
    replaced: frozenset[str] = frozenset()
    """The settings that failed validation, as POINTS_ names: the defaults stand in for them."""


def load_settings() -> LoadedSettings:
    """The settings from the environment, and the problems of those that failed validation.

    A setting that failed is replaced by its default, so the other checks still run; what they
    would say about a replaced setting is left out (it would be noise).
    """
    try:
        return LoadedSettings(Settings())
    except ValidationError as exc:
        problems = explain(exc)
        failed = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        fields = Settings.model_fields
        if not failed <= set(fields):
            raise ConfigurationError(*problems) from None
        defaults = {name: fields[name].get_default(call_default_factory=True) for name in failed}
        try:
            settings = Settings(**defaults)
        except ValidationError:
            raise ConfigurationError(*problems) from None
        return LoadedSettings(settings, problems, frozenset(f"POINTS_{n.upper()}" for n in failed))


async def preflight(loaded: LoadedSettings) -> None:
    """Raise ConfigurationError naming every problem: the environment's, the provider settings',
    authentication's, the sealing keys' and the database schema's."""
    settings = loaded.settings
    found = list(loaded.problems)
    plan = None
    try:
        plan = plan_gateway(settings)
    except ConfigurationError as exc:
        found.extend(p for p in exc.problems if not _about(p, loaded.replaced))
    if plan is None or found:
        schema = await _schema_problem(settings)
        raise ConfigurationError(*found, *([schema] if schema else []))
    store = await open_store(plan)
    await store.aclose()


def _about(problem: str, names: frozenset[str]) -> bool:
    return any(f"{name}:" in problem or f"{name}__" in problem for name in names)


async def _schema_problem(settings: Settings) -> str | None:
    """What is wrong with the account database, checked without the sealing keys."""
    url = settings.database_url_value()
    try:
        refuse_a_missing_sqlite_file(url)
        engine = build_engine(url, timeout=settings.database_timeout)
    except ConfigurationError as exc:
        return str(exc)
    try:
        return schema_problem(await schema_state(engine))
    except (StoreUnavailable, OSError, SQLAlchemyError):
        return None  # `serve` starts degraded on an unreachable database (see open_store)
    finally:
        await engine.dispose()
