"""A/B: two checkouts' gateways served side by side, wrk runs interleaved, medians of rounds.

    python -m bench.ab --a /path/to/parent-checkout [--b .] [--seconds 10] [--rounds 3]
                       [--rows uncached:50,uncached:1,cached:50] [--auth jwt]

Each side serves its own `app` (its checkout first on PYTHONPATH) from this venv, over the same
nginx upstreams and the same PostgreSQL accounts (migrated and imported by side B, the newer);
rows: uncached merged c=50, uncached merged c=1, cached merged c=50, each side in two start-order
placements. `--auth jwt`: both sides require bearer tokens (one HS256 secret generated for the
run, `bench/jwt_auth.py`) and every request sends the same service token, which measures token
verification (after the first request, the verified-token cache where a side has one). Prints
medians per side and the ratio B/A; nothing is written. Loopback only, bounded by
2 x rounds x rows x 2 x seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from bench.jwt_auth import new_jwt_auth
from bench.run import (
    ROOT,
    ROTATING,
    Bench,
    Result,
    Server,
    _prefill,
    drop_store,
    ensure_tools,
    log,
    open_store,
    start_gateway,
    start_nginx,
)

ROWS = (("uncached", 50), ("uncached", 1), ("cached", 50))


def _median(results: list[Result], field: str) -> float:
    values = [getattr(r, field) for r in results if getattr(r, field) is not None]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", type=Path, required=True, help="checkout A (e.g. the parent)")
    parser.add_argument("--b", type=Path, default=ROOT, help="checkout B (default: this one)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rows", default=",".join(f"{k}:{c}" for k, c in ROWS), help="e.g. uncached:1,cached:50"
    )
    parser.add_argument(
        "--auth",
        choices=("none", "jwt"),
        default="none",
        help="jwt: both sides require a bearer token, the load sends one service token",
    )
    args = parser.parse_args()
    rows = [(kind, int(c)) for kind, c in (r.split(":") for r in args.rows.split(","))]
    kinds = {kind for kind, _ in rows}
    if unknown := kinds - {"uncached", "cached"}:
        parser.error(f"row kinds are uncached and cached, not {', '.join(sorted(unknown))}")
    auth = new_jwt_auth() if args.auth == "jwt" else None
    nginx, wrk = ensure_tools()
    store = open_store()
    results: dict[tuple[str, str, int], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="points-ab-") as tmpname:
        tmp = Path(tmpname)
        bench = Bench(wrk, args.seconds, tmp)
        servers: list[Server] = []
        try:
            ngx = start_nginx(nginx, tmp, '{"points":[]}')
            servers.append(ngx)
            sources = {"A": args.a.resolve(), "B": args.b.resolve()}
            # Where a gateway stands in the start order shows in its numbers (a few per cent in
            # runs of one checkout against itself), so the rounds are split between two
            # placements: B's gateways started first (B migrates the shared database and imports
            # the accounts), then A's first.
            for placement, order in enumerate((("B", "A"), ("A", "B"))):
                sides: dict[tuple[str, str], Server] = {}
                for side in order:
                    for kind, ttl in (("uncached", 0.0), ("cached", 3600.0)):
                        if kind not in kinds:
                            continue
                        name = f"{side}-{kind}-{placement}"
                        gw = start_gateway(
                            tmp, name, ngx.url, store, ttl=ttl, source=sources[side], auth=auth
                        )
                        servers.append(gw)
                        sides[(side, kind)] = gw
                        if kind == "cached":
                            asyncio.run(_prefill(gw.url, gw.headers))
                        bench.warm(gw, ROTATING)
                for round_ in range(args.rounds):
                    log(f"placement {order[0]} first, round {round_ + 1} of {args.rounds}")
                    for kind, c in rows:
                        for side in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                            result = bench.load(kind, sides[(side, kind)], ROTATING, c)
                            results.setdefault((side, kind, c), []).append(result)
                for gw in sides.values():
                    gw.stop()
        finally:
            for server in servers:
                server.stop()
            drop_store(store)
    runs = 2 * args.rounds
    print(f"\nA = {args.a}\nB = {args.b}\nmedians of {runs} runs of {args.seconds} s")
    if auth is not None:
        print("auth: JWT required on both sides, one HS256 service token on every request")
    print("| row | A req/s | B req/s | B/A | A p50 ms | B p50 ms | A CPU ms/req | B CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, c in rows:
        a, b = results[("A", kind, c)], results[("B", kind, c)]
        ra, rb = _median(a, "requests_per_s"), _median(b, "requests_per_s")
        print(
            f"| {kind} c={c} | {ra:,.0f} | {rb:,.0f} | {rb / ra:.2f} | "
            f"{_median(a, 'p50_ms'):.2f} | {_median(b, 'p50_ms'):.2f} | "
            f"{_median(a, 'cpu_ms_per_request'):.3f} | {_median(b, 'cpu_ms_per_request'):.3f} |"
        )


if __name__ == "__main__":
    main()
