"""Operator tasks on the account store: migrate, import, rotate keys (behind the CLI)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from app.accounts.bulk_import import (
    FileFormat,
    ImportOptions,
    ImportReport,
    import_accounts_object,
    import_ndjson,
)
from app.accounts.bulk_lines import AccountRows
from app.accounts.engine import build_engine
from app.accounts.import_progress import progress_for
from app.accounts.memory_store import load_accounts_file
from app.accounts.migrate import Upgrade, schema_problem, schema_state, upgrade
from app.accounts.rotation import RotationReport, pending, rotate
from app.accounts.sealing import Keyring
from app.accounts.store import AccountStore
from app.errors import ConfigurationError
from app.progress import progress
from app.providers.base import ProviderPlugin
from app.providers.registry import discover_plugins
from app.settings import Settings


async def _require_schema(engine: AsyncEngine) -> None:
    problem = schema_problem(await schema_state(engine))
    if problem is not None:
        raise ConfigurationError(problem)


def _keyring(settings: Settings) -> Keyring:
    if settings.secret_keys is None:
        raise ConfigurationError("POINTS_SECRET_KEYS is required (`points-gateway keys generate`)")
    return Keyring.parse(settings.secret_keys.get_secret_value())


async def db_upgrade(settings: Settings) -> Upgrade:
    """Apply every migration to the configured database (a new SQLite file is created)."""
    engine = build_engine(settings.database_url_value(), timeout=settings.database_timeout)
    try:
        return await upgrade(engine)
    finally:
        await engine.dispose()


async def seed(
    store: AccountStore,
    accounts: Mapping[str, Mapping[str, BaseModel]],
    plugins: Mapping[str, ProviderPlugin],
) -> int:
    """Link every account of `accounts` (an upsert each); returns how many."""
    count = 0
    for user_id, links in accounts.items():
        for provider, account in links.items():
            plugin = plugins[provider]
            # Validated (and the operator vouches): what the account offers is what is recorded.
            ownership = plugin.prove(account).kind
            await store.upsert(
                user_id, provider, account, masked_id=plugin.masked_id(account), ownership=ownership
            )
            count += 1
    return count


async def import_accounts(settings: Settings, options: ImportOptions) -> ImportReport:
    """Link every account of an NDJSON file (streamed) or of a whole-file JSON object."""
    known = discover_plugins(settings.providers_dir)
    plugins = {n: p for n, p in known.items() if n in settings.enabled_providers}
    rows = AccountRows(plugins, _keyring(settings))
    whole = FileFormat.of(options.path) is FileFormat.JSON
    if whole and (options.resume or options.rejects is not None):
        raise ConfigurationError(
            "--resume and --rejects are for NDJSON files; a .json file is validated whole and "
            "linked only if every account in it is valid"
        )
    # The whole-file format is read and validated before anything is written, as it always was.
    accounts = load_accounts_file(options.path, plugins) if whole else None
    engine = build_engine(settings.database_url_value(), timeout=settings.database_timeout)
    try:
        await _require_schema(engine)
        if accounts is not None:
            linked = await import_accounts_object(engine, rows, accounts, batch=options.batch)
            return ImportReport(linked=linked)
        return await import_ndjson(engine, rows, options, progress_for)
    finally:
        await engine.dispose()


async def rotate_keys(
    settings: Settings,
    *,
    batch: int,
    max_rate: float | None = None,
    interactive: bool | None = None,
) -> RotationReport:
    """Re-seal every stored credential under the current key, showing its progress."""
    engine = build_engine(settings.database_url_value(), timeout=settings.database_timeout)
    try:
        await _require_schema(engine)
        keyring = _keyring(settings)
        total = await pending(engine, keyring)
        label = f"re-sealing under key {keyring.current_id}"
        with progress(label, total, interactive=interactive) as advance:
            return await rotate(
                engine,
                keyring,
                batch=batch,
                max_rate=max_rate,
                on_batch=lambda r: advance(r.rows),
            )
    finally:
        await engine.dispose()
