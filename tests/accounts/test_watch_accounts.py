"""A change another replica made reaches this one's balance cache: a changed account's balance is
dropped (so a fetch for the old account cannot write it back); a re-sealed one's is kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import respx

from app.accounts.change_feed import CHANGED, RESEALED, AccountChange
from app.accounts.memory_store import MemoryAccountStore, load_accounts
from app.main import create_app
from app.providers.registry import BUILTIN_PLUGINS
from tests.conftest import (
    GAFAPAY_URL,
    TEST_ACCOUNTS,
    gafapay_ok,
    make_settings,
    serve_in_process,
)
from tests.operations.conftest import sample, scrape


class WatchedStore(MemoryAccountStore):
    """Memory accounts whose watcher the test calls, as the PostgreSQL feed would."""

    def __init__(self) -> None:
        plugins = {p.name: p for p in BUILTIN_PLUGINS}
        super().__init__(load_accounts(TEST_ACCOUNTS, plugins, source="test"))
        self.on_change: Callable[[AccountChange], None] | None = None

    def watch(self, on_change: Callable[[AccountChange], None]) -> None:
        self.on_change = on_change


async def test_a_changed_account_elsewhere_drops_its_balance_here_and_a_resealed_one_does_not(
    upstream: respx.MockRouter,
) -> None:
    points = upstream.get(GAFAPAY_URL).mock(return_value=gafapay_ok())
    store = WatchedStore()
    settings = make_settings(cache={"ttl": 600})
    app = create_app(settings, transport=httpx.MockTransport(upstream.async_handler), store=store)
    async with serve_in_process(app) as client:
        assert store.on_change is not None, "the lifespan watches the store"
        assert (await client.get("/users/alice/points/gafapay")).json()["cached"] is False
        assert (await client.get("/users/alice/points/gafapay")).json()["cached"] is True

        store.on_change(AccountChange("gafapay", "alice", 0.003, RESEALED))
        await asyncio.sleep(0.05)  # a drop, had there been one, would have run by now
        assert (await client.get("/users/alice/points/gafapay")).json()["cached"] is True

        store.on_change(AccountChange("gafapay", "alice", 0.004, CHANGED))
        for _ in range(100):  # the drop runs as a task of its own, at the loop's next turn
            await asyncio.sleep(0.01)
            if (await client.get("/users/alice/points/gafapay")).json()["cached"] is False:
                break
        samples = await scrape(client)

    assert points.call_count == 2
    assert sample(samples, "points_account_change_lag_seconds_count") == 2
    assert sample(samples, "points_account_change_lag_seconds_bucket", le="0.005") == 2
