"""`keys rotate` at scale (issue 18): its rate, and what serving feels meanwhile.

`python -m bench.rotate_bench --rows 1000000`. Everything on 127.0.0.1: a fresh PostgreSQL
database filled with ROWS linked accounts sealed under key A (sealed here with the Keyring and
COPYed in, not through the API), one `points-gateway serve` on it holding keys B and A (so its
account-change listener is connected, as a replica's is) over nginx as both providers, and a
steady probe load (a fixed request rate over 10 connections, every bench user's merged points,
answered from the caches). The probe runs while idle, then during `points-gateway keys rotate`
(B first, then A) run as a subprocess; the rate is rows / the command's wall time. The database
is dropped at the end; the report goes to bench/results/rotate.json. 1M rows: about a minute to
fill, the rotation's time, and 2 x 20 s of probe. `--notify-reseals` compares with migration
0003's trigger (a notification per re-sealed row).
"""

# ruff: noqa: S603  (a local harness: fixed local tools)
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from app.accounts.sealing import Keyring
from app.accounts.store import reveal
from app.providers.benepia import BenepiaAccount
from app.providers.benepia import plugin as benepia_plugin
from app.providers.gafapay import GafapayAccount
from app.providers.gafapay import plugin as gafapay_plugin
from bench.import_bench import rss_kib
from bench.run import (
    USERS,
    VENV_BIN,
    Server,
    Store,
    ensure_tools,
    gateway_env,
    log,
    percentile,
    start_gateway,
    start_nginx,
)
from bench.upstream_bodies import CURRENCY, GAFAPAY_USER

RESULTS = Path(__file__).resolve().parent / "results" / "rotate.json"
DB = "points_rotate_bench"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
COPY_CHUNK = 50_000
COLUMNS = [
    *("user_id", "provider", "masked_id", "sealed", "key_id", "linked_at", "updated_at"),
    "ownership",
]


async def _admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _rows(keyring: Keyring, count: int) -> Iterator[tuple[object, ...]]:
    """Two rows per user (Benepia, GafaPay), as `accounts import` would have stored them."""
    now = datetime.now(UTC)
    key_id = keyring.current_id
    for n in range(count):
        user_id = f"bench-user-{n // 2:04d}"
        account: BaseModel
        if n % 2 == 0:
            benepia = BenepiaAccount.model_validate(
                {"benepia_user": f"bench.user{n // 2}", "benepia_password": "bench-password"}
            )
            provider, account, masked, ownership = (
                "benepia",
                benepia,
                benepia_plugin.masked_id(benepia),
                "secret",
            )
        else:
            gafapay = GafapayAccount(gafapay_user_id=GAFAPAY_USER, currency_id=CURRENCY)
            provider, account, masked, ownership = (
                "gafapay",
                gafapay,
                gafapay_plugin.masked_id(gafapay),
                "trusted_link",
            )
        sealed = keyring.seal(reveal(account), user_id=user_id, provider=provider)
        yield (user_id, provider, masked, sealed, key_id, now, now, ownership)


async def _fill(keyring: Keyring, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        rows = _rows(keyring, count)
        while chunk := [row for _, row in zip(range(COPY_CHUNK), rows, strict=False)]:
            await conn.copy_records_to_table("linked_accounts", records=chunk, columns=COLUMNS)
        await conn.execute("ANALYZE linked_accounts")
    finally:
        await conn.close()


async def _notify_reseals() -> None:
    """Put back migration 0003's trigger function (a notification per re-sealed row), to compare."""
    import asyncpg

    name = "app.accounts.migrations.versions.0004_no_notifications_for_resealed"
    function: str = importlib.import_module(name)._function("")
    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        await conn.execute(function)
    finally:
        await conn.close()


async def _left(current: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(PG_URL, timeout=5)
    try:
        query = "SELECT count(*) FROM linked_accounts WHERE key_id != $1"
        return int(await conn.fetchval(query, current))
    finally:
        await conn.close()


async def _probe(base: str, seconds: float, rate: float, connections: int = 10) -> list[float]:
    """Latencies (ms) of a steady `rate` req/s over `connections`, cycling the bench users."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    interval = connections / rate
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker(k: int) -> None:
            nonlocal errors
            n = k
            slot = time.monotonic() + interval * k / connections
            while slot < deadline:
                await asyncio.sleep(max(0.0, slot - time.monotonic()))
                started = time.perf_counter()
                async with session.get(f"{base}/users/bench-user-{n % USERS:04d}/points") as r:
                    await r.read()
                    errors += r.status != 200
                latencies.append((time.perf_counter() - started) * 1000)
                n += connections
                slot += interval

        await asyncio.gather(*(worker(k) for k in range(connections)))
    if errors:
        raise RuntimeError(f"the probe got {errors} answers other than 200")
    return latencies


def _summary(name: str, latencies: list[float], seconds: float) -> dict[str, float]:
    result = {
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }
    log(f"probe {name:<9} {json.dumps(result)}")
    return result


def run(
    rows: int,
    batch: int,
    probe_seconds: float,
    rate: float,
    *,
    notify_reseals: bool,
    max_rate: float | None = None,
) -> dict[str, object]:
    nginx, _ = ensure_tools()
    key_a, key_b = Keyring.generate_entry("bench-a"), Keyring.generate_entry("bench-b")
    asyncio.run(_admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
    asyncio.run(_admin(f"CREATE DATABASE {DB}"))
    report: dict[str, object] = {
        "rows": rows,
        "batch": batch,
        "max_rate": "the command's default" if max_rate is None else max_rate,
        "notify_reseals": notify_reseals,
    }
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="points-rotate-bench-") as tmpname:
            tmp = Path(tmpname)
            store = Store(PG_URL, f"{key_b},{key_a}")
            exe = str(VENV_BIN / "points-gateway")
            env = gateway_env(tmp, "admin", "http://127.0.0.1:9", 3600, store)
            subprocess.run([exe, "db", "upgrade"], env=env, check=True, timeout=120)
            store.migrated = store.imported = True
            started = time.monotonic()
            asyncio.run(_fill(Keyring.parse(key_a), rows))
            log(f"filled {rows} rows under key A in {time.monotonic() - started:.1f} s")
            if notify_reseals:
                asyncio.run(_notify_reseals())

            ngx = start_nginx(nginx, tmp, '{"points":[]}')
            servers.append(ngx)
            gateway = start_gateway(tmp, "gateway", ngx.url, store, ttl=3600)
            servers.append(gateway)
            asyncio.run(_probe(gateway.url, 3.0, rate))  # caches filled, connections warm
            idle = _summary(
                "idle", asyncio.run(_probe(gateway.url, probe_seconds, rate)), probe_seconds
            )

            logfile = tmp / "rotate.log"
            argv = [exe, "keys", "rotate", "--batch", str(batch)]
            if max_rate is not None:
                argv += ["--max-rate", str(max_rate)]
            with logfile.open("wb") as out:
                started = time.monotonic()
                rotating = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
                ended: list[float] = []

                peak_kib = [0]

                def wait() -> None:
                    while rotating.poll() is None:
                        peak_kib[0] = max(peak_kib[0], rss_kib(rotating.pid))
                        time.sleep(0.05)
                    ended.append(time.monotonic())

                waiter = threading.Thread(target=wait)
                waiter.start()
                try:
                    time.sleep(2.0)  # past start-up and the count
                    during = asyncio.run(_probe(gateway.url, probe_seconds, rate))
                    still = not ended
                    waiter.join(timeout=max(600.0, rows / 500))
                finally:
                    if rotating.poll() is None:
                        rotating.kill()
                        waiter.join()
            code = rotating.returncode
            wall = ended[0] - started
            output = logfile.read_text()
            log(f"keys rotate exited {code}: {output.strip().splitlines()[-1]}")
            if code != 0:
                raise RuntimeError(f"keys rotate failed:\n{output[-2000:]}")
            busy = _summary("rotating", during, probe_seconds)
            report["probe_within_rotation"] = still
            report["rotate_seconds"] = round(wall, 1)
            report["rows_per_s"] = round(rows / wall)
            report["peak_rss_mib"] = round(peak_kib[0] / 1024, 1)
            report["left_after"] = asyncio.run(_left("bench-b"))
            report["progress_lines"] = [
                line for line in output.splitlines() if "re-sealing" in line
            ][-3:]
            report["idle"], report["during"] = idle, busy
            report["p99_ratio"] = round(busy["p99_ms"] / idle["p99_ms"], 2)
            log(
                f"rotated {rows} rows in {wall:.1f} s: {rows / wall:,.0f} rows/s, peak RSS "
                f"{peak_kib[0] / 1024:.1f} MiB; serving p99 "
                f"idle {idle['p99_ms']} ms, during {busy['p99_ms']} ms"
            )
            for server in reversed(servers):
                server.stop()
    finally:
        for server in reversed(servers):
            server.stop()
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--probe-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0, help="probe requests per second")
    parser.add_argument(
        "--max-rate", type=float, help="passed to keys rotate (default: the command's own)"
    )
    parser.add_argument(
        "--notify-reseals",
        action="store_true",
        help="as before migration 0004: every re-sealed row notifies the listening gateway",
    )
    args = parser.parse_args()
    report = run(
        args.rows,
        args.batch,
        args.probe_seconds,
        args.rate,
        notify_reseals=args.notify_reseals,
        max_rate=args.max_rate,
    )
    text = json.dumps(report, indent=2)
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
