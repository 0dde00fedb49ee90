"""`points-gateway sandbox`: the two provider emulators alone, seeded like the demo.

For a gateway that runs elsewhere (docker compose's `sandbox` profile, another terminal): it
reaches them with the settings of `sandbox_gateway_env()`, which the command prints at start.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket

from app.sandbox.demo import (
    DEMO_ACCOUNTS,
    DEMO_GAFAPAY_COMPANY,
    DEMO_GAFAPAY_TOKEN,
    DEMO_IMP_KEY,
    DEMO_IMP_SECRET,
    demo_sandboxes,
)
from app.sandbox.gafapay import create_gafapay_app
from app.sandbox.iamport import create_iamport_app
from app.sandbox.servers import Served, ServerGroup, bind

# Addresses that mean "every interface": not something a client can connect to.
_WILDCARDS = frozenset({"0.0.0.0", "", "::"})  # noqa: S104 (compared, never bound)


def sandbox_gateway_env(iamport_url: str, gafapay_url: str) -> dict[str, str]:
    """The POINTS_* settings that point a gateway at the emulators (sandbox-only credentials)."""
    return {
        "POINTS_SANDBOX": "true",
        "POINTS_PROVIDERS__BENEPIA__BASE_URL": iamport_url,
        "POINTS_PROVIDERS__BENEPIA__IMP_KEY": DEMO_IMP_KEY,
        "POINTS_PROVIDERS__BENEPIA__IMP_SECRET": DEMO_IMP_SECRET,
        "POINTS_PROVIDERS__BENEPIA__CHANNEL_KEY": "channel-key-demo-kcp",
        "POINTS_PROVIDERS__GAFAPAY__BASE_URL": gafapay_url,
        "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID": DEMO_GAFAPAY_COMPANY,
        "POINTS_PROVIDERS__GAFAPAY__TOKEN": DEMO_GAFAPAY_TOKEN,
    }


def _client_url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in _WILDCARDS else host
    return f"http://{shown}:{port}"


def _banner(iamport_url: str, gafapay_url: str, wildcard: bool) -> str:
    env = sandbox_gateway_env(iamport_url, gafapay_url)
    accounts = (
        f"  {user} {provider}: {json.dumps(fields)}"
        for user, linked in DEMO_ACCOUNTS.items()
        for provider, fields in linked.items()
    )
    return "\n".join(
        [
            f"points-gateway sandbox: iamport emulator on {iamport_url}, "
            f"GafaPay emulator on {gafapay_url} (not real providers)",
            *(
                ["(listening on every interface: from elsewhere, use this host's name)"]
                if wildcard
                else []
            ),
            "",
            "A gateway reaches them with (sandbox-only credentials):",
            *(f"  {name}={value}" for name, value in env.items()),
            "",
            "Accounts the emulators know, as bodies for PUT /users/{user}/accounts/{provider}",
            "(carol's Benepia password is refused on purpose):",
            *accounts,
            "",
            "Faults: POST /__sandbox/faults on either port; stats: GET /__sandbox/stats.",
            "Ctrl-C stops the sandbox.",
        ]
    )


async def run_sandbox(*, host: str, iamport_port: int, gafapay_port: int) -> None:
    """Serve both emulators, seeded like the demo, until SIGINT or SIGTERM."""
    iamport, gafapay = demo_sandboxes()
    iamport_sock = bind(host, iamport_port)
    try:
        gafapay_sock = bind(host, gafapay_port)
    except OSError:
        iamport_sock.close()
        raise
    served = [
        Served(create_iamport_app(iamport), iamport_sock),
        Served(create_gafapay_app(gafapay), gafapay_sock),
    ]
    group = ServerGroup(served, log_level="info")
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    for sig in stop_signals:
        loop.add_signal_handler(sig, group.stop)
    try:
        serving = asyncio.create_task(group.serve())
        started = asyncio.create_task(group.started.wait())
        await asyncio.wait([serving, started], return_when=asyncio.FIRST_COMPLETED)
        if group.started.is_set():
            banner = _banner(
                _client_url(iamport_sock, host),
                _client_url(gafapay_sock, host),
                wildcard=host in _WILDCARDS,
            )
            print(banner, flush=True)
        started.cancel()
        await serving
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        for sock in (iamport_sock, gafapay_sock):
            sock.close()
