"""`points-gateway accounts import` of N accounts into PostgreSQL and SQLite (issue 18).

    python -m bench.import_bench [--accounts 1000000] [--only postgresql|sqlite]
                                 [--no-triggers] [--listener]

Writes an NDJSON file of N accounts into a temporary directory (half Benepia
`{benepia_user, benepia_password}`, half GafaPay ids-only `{gafapay_user_id, currency_id}` in
GafaPay's hex form), then, for each database, runs `db upgrade` and `accounts import` as
subprocesses of this venv against a fresh PostgreSQL database (`points_import_bench` on
127.0.0.1:5432, dropped after) and a fresh SQLite file, sampling the import's RSS from /proc every
50 ms. Prints accounts/s and peak RSS per database. `--no-triggers` disables migration 0003's
notification triggers on the bench database first, to see what they cost; `--listener` runs a
process that LISTENs on the change channel during the PostgreSQL import, as a replica's account
cache does, parsing each notification with the gateway's own parser, and prints how many it got
and the CPU it spent. Loopback only; the temporary directory and the database are removed at the
end.
"""

# ruff: noqa: S603, S607  (a local harness: fixed local commands, loopback only)
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_DB = "points_import_bench"
POINTS = Path(sys.executable).with_name("points-gateway")
CURRENCY = "1f1519903ed240578f071aa45cb479f2"


def write_accounts(path: Path, n: int) -> None:
    """N accounts, one a line: even lines Benepia, odd lines GafaPay (ids only)."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            user = f"user-{i:08d}"
            if i % 2:
                line = {"user_id": user, "provider": "gafapay", "gafapay_user_id": f"{i:x}"}
                line["currency_id"] = CURRENCY
            else:
                line = {
                    "user_id": user,
                    "provider": "benepia",
                    "benepia_user": f"member{i}",
                    "benepia_password": f"pw-{i:08d}-bench",
                }
            out.write(json.dumps(line, separators=(",", ":")) + "\n")


def psql(sql: str, db: str = "test") -> None:
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db}"
    subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True)


def listen(dsn: str, ready: Any, stop: Any, results: Any) -> None:
    """LISTEN until `stop` is set; put (notifications, users parsed, CPU seconds) in `results`."""
    import asyncpg

    from app.accounts.change_feed import CHANNEL, parse_change

    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        counts = [0, 0]

        def got(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            counts[0] += 1
            if parse_change(str(payload), time.time()) is not None:
                counts[1] += 1

        await conn.add_listener(CHANNEL, got)
        ready.set()
        await asyncio.to_thread(stop.wait)
        await asyncio.sleep(1.0)  # the last commit's notifications
        await conn.close()
        results.put((counts[0], counts[1], time.process_time()))

    asyncio.run(main())


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_import(path: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """Seconds, peak RSS (KiB) and the last output line of one import run."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(POINTS), "accounts", "import", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, rss_kib(proc.pid))
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {err.strip()[-2000:]}")
    return elapsed, peak, out.strip().splitlines()[-1]


def bench(
    path: Path, n: int, database: str, url: str, *, triggers: bool, listener: bool = False
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POINTS_")},
        "POINTS_DATABASE_URL": url,
        "POINTS_SECRET_KEYS": subprocess.run(
            [str(POINTS), "keys", "generate"], check=True, capture_output=True, text=True
        ).stdout.strip(),
        "POINTS_ENABLED_PROVIDERS": "benepia,gafapay",
        "POINTS_DATABASE_TIMEOUT": "30",
    }
    subprocess.run([str(POINTS), "db", "upgrade"], env=env, check=True, capture_output=True)
    if not triggers:
        psql("ALTER TABLE linked_accounts DISABLE TRIGGER USER", BENCH_DB)
    ctx = multiprocessing.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    watcher = None
    if listener:
        dsn = url.replace("postgresql+asyncpg", "postgresql")
        watcher = ctx.Process(target=listen, args=(dsn, ready, stop, results))
        watcher.start()
        ready.wait(30)
    try:
        elapsed, peak, said = run_import(path, env)
    finally:
        stop.set()
    if watcher is not None:
        got, parsed, cpu = results.get(timeout=60)
        watcher.join(10)
        print(f"listener: {got:,} notifications ({parsed:,} parsed), {cpu:.1f} s of CPU")
    print(
        f"{database:<10} {n:>9,} accounts  {elapsed:7.1f} s  {n / elapsed:8,.0f} accounts/s  "
        f"peak RSS {peak / 1024:6.1f} MiB  ({said})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--only", choices=["postgresql", "sqlite"])
    parser.add_argument("--no-triggers", action="store_true")
    parser.add_argument("--listener", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        path = Path(tmp) / "accounts.ndjson"
        write_accounts(path, args.accounts)
        print(f"file: {path.stat().st_size / 2**20:.1f} MiB, {args.accounts:,} lines", flush=True)
        if args.only in (None, "postgresql"):
            psql(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            psql(f"CREATE DATABASE {BENCH_DB}")
            try:
                url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{BENCH_DB}"
                bench(
                    path,
                    args.accounts,
                    "postgresql",
                    url,
                    triggers=not args.no_triggers,
                    listener=args.listener,
                )
            finally:
                psql(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        if args.only in (None, "sqlite"):
            url = f"sqlite+aiosqlite:///{tmp}/accounts.db"
            bench(path, args.accounts, "sqlite", url, triggers=True)


if __name__ == "__main__":
    main()
