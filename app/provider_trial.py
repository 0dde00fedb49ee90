"""`points-gateway providers try`: one call to a provider through the gateway's full path.

For an operator writing a definition: the settings come from the same POINTS_* environment as
the gateway, the call goes through the same guards (deadline, breaker, retries, secret masking)
as a one-shot query, and the answer is the entry a client would get. Nothing is stored.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from app.accounts.memory_store import MemoryAccountStore
from app.errors import ConfigurationError
from app.gateway import build_gateway, plan_gateway
from app.points.aggregator import QueryOptions
from app.points.models import Balance
from app.providers import CallContext
from app.request_context import new_request_id
from app.resilience.cache import MemoryBalanceCache
from app.settings import AuthSettings, Settings


async def try_provider(settings: Settings, name: str, account_json: str) -> Balance:
    """The balance entry (or its problem) for the account given as JSON."""
    # No caller is served, so the gateway's own authentication settings do not matter here.
    narrowed = settings.model_copy(
        update={"enabled_providers": [name], "auth": AuthSettings(mode="disabled")}
    )
    store = MemoryAccountStore()
    plan = plan_gateway(narrowed, store=store)
    plugin = plan.plugins()[name]
    try:
        fields = json.loads(account_json)
        account = plugin.account_model.model_validate(fields)
    except ValueError as exc:  # JSONDecodeError and ValidationError alike
        if isinstance(exc, ValidationError):
            # Field and rule only: pydantic's own text quotes the value, maybe a secret.
            lines = [
                f"  --account {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)
            ]
            raise ConfigurationError(f"not a {name} account:\n" + "\n".join(lines)) from None
        raise ConfigurationError("--account is not JSON") from None
    gateway = build_gateway(plan, store, MemoryBalanceCache())
    try:
        call = CallContext(request_id=new_request_id())
        options = QueryOptions(deadline=settings.request_deadline)
        return await gateway.aggregator.account_balance(name, account, call, options)
    finally:
        await gateway.aclose()
