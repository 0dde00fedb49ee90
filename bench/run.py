"""Load benchmark of the gateway against references (issues 8 and 17). `make bench`, or `--quick`.

Everything listens on 127.0.0.1. Upstreams: nginx serving the providers' JSON (and a slow aiohttp
stand-in for the latency scenarios). References: a minimal FastAPI fan-out on one aiohttp session,
a trivial FastAPI JSON route, nginx itself. Load: wrk, one thread. Also: rows with JWT auth on, and
how long an unlink on one replica is still answered by another (PostgreSQL only). Writes
bench/results/latest.json, docs/performance.md and docs/perf-*.png.

A full run: 23 wrk runs of 10 s, the unlink row's 15 s, the 300 s soak, and about a minute of
start-ups, warm-ups and prefills: about 10 minutes (`--quick`: about 2.5), 11 with the install of
`make bench` from a clean clone.
"""

# ruff: noqa: S310, S603, S607  (a local harness: loopback URLs, fixed local tools)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.jwt_auth import JwtAuth, new_jwt_auth, redacted

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
DOC = ROOT / "docs" / "performance.md"
# Hand-written findings appended to the generated page (what the profile showed, what changed).
ANALYSIS = ROOT / "bench" / "analysis.md"
# The load spreads over many linked users, as a gateway's traffic does: with one user every
# concurrent request would join the same single-flight fetch, which flatters upstream counts and
# releases answers in bursts. The cold burst alone asks for one user (that is its point).
USERS = 500
USER = "bench-user-0000"
MERGED = f"/users/{USER}/points"
ROTATING = "/users/{user}/points"
SINGLE = "/users/{user}/points/gafapay"
# GafaPay as a definition (app/definitions/shipped/gafapay.yaml), beside its code adapter.
DECLARED = "/users/{user}/points/gafapay_declared"
SHIPPED_DEFINITIONS = ROOT / "app" / "definitions" / "shipped"
ALL_PROVIDERS = "benepia,gafapay,gafapay_declared"
_LUA = """
local n = 0
request = function()
  n = n + 1
  local user = string.format("bench-user-%04d", n % USERS)
  return wrk.format("GET", string.format("PATH", user))
end
"""
HOST = "127.0.0.1"
SLOW_SCENARIO = "upstreams-100-150ms"
SOAK_SECONDS = 300
SOAK_SAMPLE_EVERY = 5.0
SOAK_TREND_WINDOW = 180.0  # the flatness check looks at the last 3 minutes
# "Flat": RSS grew by at most this much over the trend window (a fitted line, not two samples).
SOAK_FLAT_MIB = 3.0
# The uncached gateway at c=200 runs this many times; its p99 / p50 target takes the median.
C200_RUNS = 3
# Unlink visibility: link, read on B, unlink on A, poll B; this many cycles at most, under load.
UNLINK_CYCLES = 60
UNLINK_POLL_LIMIT_S = 5.0  # a cycle whose unlink B still answers after this is recorded as such
CLK_TCK = os.sysconf("SC_CLK_TCK")


def lua_for(template: str, tmp: Path) -> Path:
    """A wrk script cycling `{user}` in `template` over the bench users."""
    script = tmp / f"rotate-{template.strip('/').replace('/', '-').strip('{}')}.lua"
    lua = _LUA.replace("USERS", str(USERS)).replace("PATH", template.replace("{user}", "%s"))
    script.write_text(lua)
    return script


def bench_accounts() -> dict[str, dict[str, dict[str, str]]]:
    from bench.upstream_bodies import CURRENCY, GAFAPAY_USER

    # GafaPay's stand-in answers for one identity, so every bench user links that one.
    return {
        f"bench-user-{n:04d}": {
            "benepia": {"benepia_user": f"bench.user{n}", "benepia_password": "bench-password"},
            "gafapay": {"gafapay_user_id": GAFAPAY_USER, "currency_id": CURRENCY},
            "gafapay_declared": {"gafapay_user_id": GAFAPAY_USER, "currency_id": CURRENCY},
        }
        for n in range(USERS)
    }


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


# --- tools -------------------------------------------------------------------------------------


def ensure_tools() -> tuple[str, str]:
    """nginx and wrk, installed from Debian when missing."""
    nginx, wrk = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("wrk")
    if Path(nginx).exists() and wrk:
        return nginx, wrk
    apt = ["apt-get", "install", "-y", "--no-install-recommends", "nginx-light", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(apt, env=env, check=False, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True, timeout=600)
        subprocess.run(apt, env=env, check=True, timeout=600)
    nginx, wrk = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("wrk")
    if not (Path(nginx).exists() and wrk):
        raise SystemExit("bench: nginx and wrk are needed (apt-get install nginx-light wrk)")
    return nginx, wrk


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request; an error status is returned, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), bytes(error.read())


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    # Sent with every request of the load, warm-up and prefill (the bearer token with auth on).
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def tree(self) -> list[int]:
        """This process and its descendants (uvicorn workers)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.tree():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / CLK_TCK

    def rss_mib(self) -> float:
        total = 0
        for pid in self.tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024

    def worker_rss_mib(self) -> float:
        """The largest RSS among the serving processes (uvicorn's supervisor serves nothing)."""
        largest = 0
        for pid in self.tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        largest = max(largest, int(line.split()[1]))
        return largest / 1024

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def spawn(name: str, argv: list[str], env: dict[str, str], logdir: Path) -> subprocess.Popen[bytes]:
    out = (logdir / f"{name}.log").open("wb")
    return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {host}:{port};
        default_type application/json;
        location = /users/getToken {{ return 200 '{token}'; }}
        location = /benepia/point {{ return 200 '{benepia}'; }}
        location = /gafapay/v3/reward_promotion/user_points {{ return 200 '{gafapay}'; }}
        location ~ ^/users/[^/]+/points$ {{ return 200 '{static}'; }}
    }}
}}
"""


def start_nginx(nginx: str, tmp: Path, static_body: str) -> Server:
    from bench.upstream_bodies import BENEPIA_POINT, GAFAPAY_POINTS, GET_TOKEN

    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            tmp=tmp,
            host=HOST,
            port=port,
            token=GET_TOKEN,
            benepia=BENEPIA_POINT,
            gafapay=GAFAPAY_POINTS,
            static=static_body,
        )
    )
    argv = [nginx, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(conf)]
    proc = spawn("nginx", argv, dict(os.environ), tmp)
    url = f"http://{HOST}:{port}"
    wait_http(f"{url}{MERGED}", proc=proc)
    return Server("nginx", proc, url)


@dataclass
class Store:
    """Where every gateway of the run keeps its accounts, and the one sealing key they share."""

    url: str | None  # None: SQLite in each gateway's data dir
    key: str
    imported: bool = False  # the shared PostgreSQL database needs the accounts only once
    migrated: bool = False  # and its migrations

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.url else "SQLite"


BENCH_DB = "points_bench"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def _fresh_pg_database() -> bool:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, ImportError) as exc:
        log(f"PostgreSQL not reachable ({type(exc).__name__}): accounts in SQLite")
        return False
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {BENCH_DB}")
    finally:
        await conn.close()
    return True


def open_store() -> Store:
    """PostgreSQL (the deployed configuration) when this machine has it, else SQLite."""
    key = subprocess.run(
        [str(VENV_BIN / "points-gateway"), "keys", "generate"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    pg = asyncio.run(_fresh_pg_database())
    return Store(f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}" if pg else None, key)


def drop_store(store: Store) -> None:
    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        finally:
            await conn.close()

    if store.url:
        asyncio.run(drop())


def gateway_env(tmp: Path, name: str, upstream: str, ttl: float, store: Store) -> dict[str, str]:
    data = tmp / f"data-{name}"
    data.mkdir()
    env = {
        **os.environ,
        "POINTS_SANDBOX": "true",
        "POINTS_AUTH__MODE": "disabled",
        # Per principal: with auth on every request of a row is the one bench service token's,
        # and at a few thousand req/s that is under 10^6 a minute, far from this.
        "POINTS_LIMITS__RATE": "100000000/minute",
        "POINTS_DATA_DIR": str(data),
        "POINTS_SECRET_KEYS": store.key,
        "POINTS_CACHE__TTL": str(ttl),
        "POINTS_CACHE__STALE_IF_ERROR": "0" if ttl == 0 else "600",
        "POINTS_PROVIDERS__BENEPIA__BASE_URL": upstream,
        "POINTS_PROVIDERS__BENEPIA__IMP_KEY": "bench-imp-key",
        "POINTS_PROVIDERS__BENEPIA__IMP_SECRET": "bench-imp-secret",
        "POINTS_PROVIDERS__BENEPIA__CHANNEL_KEY": "channel-key-bench",
        "POINTS_PROVIDERS__GAFAPAY__BASE_URL": upstream,
        "POINTS_PROVIDERS__GAFAPAY__COMPANY_ID": "59388167894b4d10a04fe5da3b8a2104",
        "POINTS_PROVIDERS__GAFAPAY__TOKEN": "bench-gafapay-token",
        "POINTS_PROVIDERS_DIR": str(SHIPPED_DEFINITIONS),
        "POINTS_PROVIDERS__GAFAPAY_DECLARED__BASE_URL": upstream,
        "POINTS_PROVIDERS__GAFAPAY_DECLARED__COMPANY_ID": "59388167894b4d10a04fe5da3b8a2104",
        "POINTS_PROVIDERS__GAFAPAY_DECLARED__TOKEN": "bench-gafapay-token",
    }
    if store.url:
        env["POINTS_DATABASE_URL"] = store.url
    return env


def start_gateway(
    tmp: Path,
    name: str,
    upstream: str,
    store: Store,
    *,
    ttl: float,
    workers: int = 1,
    source: Path | None = None,
    providers: str | None = None,
    auth: JwtAuth | None = None,
) -> Server:
    """A gateway over `upstream`; `source`: serve another checkout's `app` (A/B runs); `auth`:
    bearer tokens required, and the returned server's requests send the bench token.

    The first gateway on a shared database migrates it (in an A/B run, the newer side): an older
    checkout does not know the newer revisions, and serves from the newer schema as it is.
    """
    env = gateway_env(tmp, name, upstream, ttl, store)
    if providers is not None:
        env["POINTS_ENABLED_PROVIDERS"] = providers
    if auth is not None:
        env.update(auth.env())
    exe = str(VENV_BIN / "points-gateway")
    if source is not None:
        env["PYTHONPATH"] = str(source)
    if not store.migrated:
        subprocess.run(
            [exe, "db", "upgrade"], env=env, check=True, timeout=120, capture_output=True
        )
        store.migrated = store.url is not None
    accounts = tmp / "accounts.json"
    if not accounts.exists():
        accounts.write_text(json.dumps(bench_accounts()))
    if not store.imported:
        subprocess.run(
            [exe, "accounts", "import", str(accounts)],
            env={**env, "POINTS_ENABLED_PROVIDERS": ALL_PROVIDERS},
            check=True,
            timeout=300,
            capture_output=True,
        )
        store.imported = store.url is not None
    port = free_port()
    argv = [exe, "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    proc = spawn(name, argv, env, tmp)
    url = f"http://{HOST}:{port}"
    wait_http(f"{url}/healthz", proc=proc)
    server = Server(name, proc, url, auth.headers() if auth is not None else {})
    if auth is not None:
        check_auth(server)
    return server


def check_auth(server: Server) -> None:
    """An auth row measures auth only if the gateway refuses a request without the token."""
    path = f"{server.url}{MERGED}"
    bare, _ = http("GET", path)
    signed, _ = http("GET", path, headers=server.headers)
    if bare != 401 or signed != 200:
        server.stop()
        raise RuntimeError(f"{server.name}: without the token {bare}, with it {signed}")


def start_uvicorn(tmp: Path, name: str, module: str, env_extra: dict[str, str]) -> Server:
    port = free_port()
    argv = [
        str(VENV_BIN / "uvicorn"),
        f"{module}:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--no-server-header",
    ]
    proc = spawn(name, argv, {**os.environ, **env_extra, "PYTHONPATH": str(ROOT)}, tmp)
    url = f"http://{HOST}:{port}"
    wait_http(f"{url}{MERGED}", proc=proc)
    return Server(name, proc, url)


def start_slow(tmp: Path, benepia_delay: float, gafapay_delay: float) -> Server:
    port = free_port()
    delays = [str(benepia_delay), str(gafapay_delay)]
    argv = [sys.executable, "-m", "bench.slow_upstream", str(port), *delays]
    proc = spawn("slow-upstream", argv, {**os.environ, "PYTHONPATH": str(ROOT)}, tmp)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            break
        time.sleep(0.1)
    return Server("slow-upstream", proc, url)


# --- load --------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    target: str
    concurrency: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: float | None
    rss_mib: float | None
    notes: str = ""


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(match[1]) * _UNIT_MS[match[2]]


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M)[1])  # type: ignore[index]
    errors = 0
    if non2xx := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        errors += int(non2xx[1])
    if sock := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(n) for n in sock.groups())
    return rps, p50, p99, errors


@dataclass
class Bench:
    wrk: str
    seconds: int
    tmp: Path
    results: list[Result] = field(default_factory=list)

    def target(self, server: Server, path: str) -> list[str]:
        """wrk's last arguments: the server's headers, and the URL, with a script rotating users
        for a `{user}` path (its `wrk.format` sends the `-H` headers too)."""
        headers = [arg for k, v in server.headers.items() for arg in ("-H", f"{k}: {v}")]
        if "{user}" not in path:
            return [*headers, f"{server.url}{path}"]
        return [*headers, "-s", str(lua_for(path, self.tmp)), f"{server.url}/"]

    def load(
        self,
        scenario: str,
        server: Server,
        path: str,
        c: int,
        notes: str = "",
        measure: bool = True,
        seconds: int | None = None,
    ) -> Result:
        duration = max(self.seconds if seconds is None else seconds, 1)
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        argv = [
            self.wrk,
            "-t1",
            f"-c{c}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "--latency",
            *self.target(server, path),
        ]
        out = run_wrk(argv, timeout=duration + 30)
        cpu = server.cpu_seconds() - cpu0
        rps, p50, p99, errors = parse_wrk(out)
        total = rps * (time.monotonic() - t0)
        result = Result(
            scenario,
            server.name,
            c,
            duration,
            round(rps, 1),
            round(p50, 2),
            round(p99, 2),
            errors,
            round(cpu * 1000 / total, 3) if total and measure else None,
            round(server.rss_mib(), 1) if measure else None,
            notes,
        )
        log(
            f"{scenario:<22} {server.name:<18} c={c:<4} {rps:9.1f} req/s  p50 {p50:8.2f} ms  "
            f"p99 {p99:8.2f} ms  errors {errors}"
        )
        if measure:
            self.results.append(result)
        return result

    def soak(self, server: Server, path: str, c: int, seconds: int) -> dict[str, Any]:
        """Load for `seconds` while sampling each worker's RSS; the trend over the last minutes."""
        log(f"soak: {seconds} s at c={c}, RSS every {SOAK_SAMPLE_EVERY:.0f} s")
        argv = [self.wrk, "-t1", f"-c{c}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
        load = subprocess.Popen(
            [*argv, *self.target(server, path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        try:
            while load.poll() is None and time.monotonic() - started < seconds + 30:
                samples.append((round(time.monotonic() - started, 1), server.worker_rss_mib()))
                time.sleep(SOAK_SAMPLE_EVERY if seconds >= 60 else 1.0)
            out, _ = load.communicate(timeout=30)
        finally:
            if load.poll() is None:
                load.kill()
        rps, p50, p99, errors = parse_wrk(out)
        window = min(SOAK_TREND_WINDOW, seconds * 0.6)
        tail = [(t, r) for t, r in samples if t >= samples[-1][0] - window]
        slope = _slope(tail) * 60  # MiB per minute
        growth = slope * window / 60
        peak = max(r for _, r in samples)
        result = {
            "seconds": seconds,
            "concurrency": c,
            "requests_per_s": round(rps, 1),
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "errors": errors,
            "peak_rss_mib": round(peak, 1),
            "trend_window_s": window,
            "trend_mib_per_min": round(slope, 3),
            "trend_growth_mib": round(growth, 2),
            "flat": growth <= SOAK_FLAT_MIB,
            "samples": samples,
        }
        log(
            f"soak: {rps:.1f} req/s, peak RSS {peak:.1f} MiB, trend {slope:+.3f} MiB/min over "
            f"the last {window:.0f} s, errors {errors}"
        )
        return result

    def warm(self, server: Server, path: str) -> None:
        run_wrk([self.wrk, "-t1", "-c10", "-d1s", *self.target(server, path)], timeout=30)


def run_wrk(argv: list[str], timeout: float) -> str:
    """wrk's output; a failure is raised without the command's header values (the token)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish in {timeout:.0f} s: {redacted(argv)}") from None
    if done.returncode != 0:
        raise RuntimeError(
            f"wrk exited with {done.returncode}: {redacted(argv)}: {done.stderr.strip()[-500:]}"
        )
    return done.stdout


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value) points, per second."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var if var else 0.0


async def _prefill(base: str, headers: dict[str, str] | None = None) -> None:
    import aiohttp

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=20), headers=headers
    ) as session:

        async def one(n: int) -> None:
            async with session.get(f"{base}/users/bench-user-{n:04d}/points") as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"prefill answered {answer.status}")

        await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(USERS))), timeout=120)


async def _burst(url: str, n: int) -> list[int]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n)) as session:

        async def one() -> int:
            async with session.get(url) as answer:
                await answer.read()
                return answer.status

        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=60)


# --- unlink visibility ------------------------------------------------------------------------

LAG_METRIC = "points_account_change_lag_seconds"


def lag_buckets(server: Server) -> dict[float, float]:
    """The server's change-lag histogram from /metrics: cumulative count per bucket bound."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http("GET", f"{server.url}/metrics")
    if status != 200:
        raise RuntimeError(f"{server.name} /metrics answered {status}")
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        if family.name == LAG_METRIC:
            for sample in family.samples:
                if sample.name == f"{LAG_METRIC}_bucket":
                    buckets[float(sample.labels["le"])] = sample.value
    return buckets


def bucket_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> tuple[float | None, int]:
    """The bound of the bucket holding quantile `q` of what was observed between two scrapes,
    and how many observations that was."""
    diff = {le: after[le] - before.get(le, 0.0) for le in after}
    total = diff.get(math.inf, 0.0)
    if total <= 0:
        return None, 0
    for le in sorted(diff):
        if diff[le] >= q * total:
            return le, int(total)
    return math.inf, int(total)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: with 60 values, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


async def _unlink_cycles(
    a: str, b: str, cycles: int, start: float, deadline: float
) -> dict[str, Any]:
    """Link a fresh user on A, read it on B until B serves it, unlink on A, then poll B back to
    back until it answers 404: per cycle, ms from A's answer to the unlink to B's first 404."""
    import aiohttp

    await asyncio.sleep(max(start - time.monotonic(), 0.0))  # the load is under way by then
    timeout = aiohttp.ClientTimeout(total=10)
    lags: list[float] = []
    stale, cycles_stale, timed_out = 0, 0, 0
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout) as on_a,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=timeout) as on_b,
    ):

        async def call(
            session: aiohttp.ClientSession, method: str, url: str, body: Any = None
        ) -> tuple[int, bytes, float]:
            async with session.request(method, url, json=body) as answer:
                arrived = time.perf_counter()  # the answer's head is in
                return answer.status, await answer.read(), arrived

        for n in range(cycles):
            if time.monotonic() >= deadline:
                break
            user = f"unlink-{n:04d}"
            account = f"{a}/users/{user}/accounts/benepia"
            points = f"{b}/users/{user}/points/benepia"
            fields = {"benepia_user": f"unlink.user{n}", "benepia_password": "bench-password"}
            status, _, _ = await call(on_a, "PUT", account, fields)
            if status not in (200, 201):
                raise RuntimeError(f"A answered the link of {user} with {status}")
            linked = time.perf_counter()
            while (await call(on_b, "GET", points))[0] != 200:  # B holds the account now
                if time.perf_counter() - linked > UNLINK_POLL_LIMIT_S:
                    raise RuntimeError(f"B did not serve {user} within {UNLINK_POLL_LIMIT_S} s")
            status, _, t0 = await call(on_a, "DELETE", account)
            if status != 204:
                raise RuntimeError(f"A answered the unlink of {user} with {status}")
            answered = 0
            while True:
                status, body, arrived = await call(on_b, "GET", points)
                if status == 404:
                    code = json.loads(body).get("code")
                    if code != "account_not_linked":
                        raise RuntimeError(f"B answered 404 {code} for {user}")
                    break
                if status != 200:
                    raise RuntimeError(f"B answered {status} for {user} after the unlink")
                answered += 1
                if arrived - t0 > UNLINK_POLL_LIMIT_S:
                    timed_out += 1
                    break
            lags.append((arrived - t0) * 1000)
            stale += answered
            cycles_stale += answered > 0
    return {
        "lags_ms": [round(lag, 2) for lag in lags],
        "stale_answers": stale,
        "cycles_with_stale_answers": cycles_stale,
        "timed_out": timed_out,
    }


def unlink_visibility(
    bench: Bench, tmp: Path, upstream: str, store: Store, seconds: int
) -> dict[str, Any]:
    """Two cached gateways on one PostgreSQL database, B under c=50 cached load while fresh users
    are linked and unlinked on A: how long B still answers an account A has unlinked."""
    if store.url is None:
        log("unlink visibility: not measured (SQLite: no replicas, no change notifications)")
        return {}
    with (
        running(start_gateway(tmp, "gateway-A", upstream, store, ttl=3600)) as a,
        running(start_gateway(tmp, "gateway-B", upstream, store, ttl=3600)) as b,
    ):
        asyncio.run(_prefill(b.url))
        bench.warm(b, ROTATING)
        _, ready = http("GET", f"{b.url}/readyz")
        account_cache = json.loads(ready).get("checks", {}).get("account_cache")
        before = lag_buckets(b)
        started = time.monotonic()
        coroutine = _unlink_cycles(a.url, b.url, UNLINK_CYCLES, started + 1.0, started + seconds)
        with ThreadPoolExecutor(1) as pool:
            cycles = pool.submit(asyncio.run, coroutine)
            bench.load(
                "unlink-visibility",
                b,
                ROTATING,
                50,
                notes="replica B, cached, while users are linked and unlinked on A",
                seconds=seconds,
            )
            try:
                found = cycles.result(timeout=UNLINK_POLL_LIMIT_S * 4 + 30)
            except Exception as exc:
                log(f"unlink visibility failed: {type(exc).__name__}: {exc}")
                return {"error": f"{type(exc).__name__}: {exc}"}
        le, observed = bucket_quantile(before, lag_buckets(b), 0.99)
    lags = found["lags_ms"]
    if not lags:
        return {"error": "no cycle finished"}
    unlink = {
        "cycles": len(lags),
        "load_seconds": seconds,
        "concurrency": 50,
        "account_cache": account_cache,
        "p50_ms": round(percentile(lags, 0.50), 1),
        "p99_ms": round(percentile(lags, 0.99), 1),
        "max_ms": round(max(lags), 1),
        "histogram_p99_le_ms": None if le is None else round(le * 1000, 3),
        "histogram_count": observed,
        **found,
    }
    log(
        f"unlink visibility: {len(lags)} cycles, p50 {unlink['p50_ms']} ms, p99 "
        f"{unlink['p99_ms']} ms, max {unlink['max_ms']} ms; B's histogram p99 <= "
        f"{unlink['histogram_p99_le_ms']} ms over {observed} changes"
    )
    return unlink


def upstream_hits(access_log: Path) -> dict[str, int]:
    lines = access_log.read_text().splitlines() if access_log.exists() else []
    return {
        "getToken": sum("/users/getToken" in line for line in lines),
        "benepia": sum("/benepia/point" in line for line in lines),
        "gafapay": sum("user_points" in line for line in lines),
    }


# --- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {p: metadata.version(p) for p in ("uvicorn", "fastapi", "aiohttp", "httpx")}
    nginx_v = subprocess.run(
        ["nginx", "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
        "nginx": nginx_v,
    }


def find(results: list[Result], scenario: str, target: str, c: int | None = None) -> Result | None:
    for r in results:
        if r.scenario == scenario and r.target == target and (c is None or r.concurrency == c):
            return r
    return None


def targets(
    results: list[Result],
    cold: dict[str, Any],
    soaked: dict[str, Any],
    unlink: dict[str, Any],
) -> list[dict[str, Any]]:
    """Issue-17 targets: (name, measured, bound, met, detail). Ratios are gateway / reference,
    both from this run; `met` None: not measured."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, bound: float, met: bool | None, detail: str = "") -> None:
        out.append({"target": name, "value": value, "bound": bound, "met": met, "detail": detail})

    def ratio(
        name: str,
        num: Result | None,
        den: Result | None,
        attr: str,
        bound: float,
        higher_is_better: bool = True,
    ) -> None:
        if num is None or den is None:
            add(name, None, bound, None)
            return
        value = getattr(num, attr) / max(getattr(den, attr), 1e-9)
        add(name, round(value, 2), bound, value >= bound if higher_is_better else value <= bound)

    static = find(results, "static", "reference-static")
    ratio(
        "uncached c=50 req/s >= 0.65 x fan-out reference",
        find(results, "uncached", "gateway", 50),
        find(results, "uncached", "reference-fanout", 50),
        "requests_per_s",
        0.65,
    )
    ratio(
        "cached c=50 req/s >= 0.5 x static FastAPI route (reference-static)",
        find(results, "cached", "gateway"),
        static,
        "requests_per_s",
        0.5,
    )
    ratio(
        "c=1 p50 <= 1.8 x fan-out reference (uncached)",
        find(results, "uncached", "gateway", 1),
        find(results, "uncached", "reference-fanout", 1),
        "p50_ms",
        1.8,
        higher_is_better=False,
    )
    ratio(
        "100 and 150 ms upstreams: c=50 p50 <= 1.07 x fan-out reference",
        find(results, SLOW_SCENARIO, "gateway"),
        find(results, SLOW_SCENARIO, "reference-fanout"),
        "p50_ms",
        1.07,
        higher_is_better=False,
    )
    c200 = [
        r.p99_ms / max(r.p50_ms, 1e-9)
        for r in results
        if r.scenario == "uncached" and r.target == "gateway" and r.concurrency == 200
    ]
    runs = f"{len(c200)} run{'s' if len(c200) != 1 else ''}"
    if c200:
        median = statistics.median(c200)
        add(
            "c=200 p99 / p50 of the gateway (uncached) <= 2.0, median of the runs",
            round(median, 2),
            2.0,
            median <= 2.0,
            f"median of {runs}: " + ", ".join(f"{v:.2f}" for v in c200),
        )
    else:
        add("c=200 p99 / p50 of the gateway (uncached) <= 2.0, median of the runs", None, 2.0, None)
    ratio(
        "JWT auth on: cached c=50 req/s >= 0.4 x static FastAPI route (reference-static)",
        find(results, "cached-jwt", "gateway"),
        static,
        "requests_per_s",
        0.4,
    )
    name = "unlink on replica A no longer answered by replica B: p99 <= 50 ms under c=50 load"
    if unlink.get("p99_ms") is not None:
        histogram = unlink["histogram_p99_le_ms"]
        add(
            name,
            unlink["p99_ms"],
            50,
            unlink["p99_ms"] <= 50 and not unlink["timed_out"],
            f"{unlink['cycles']} cycles: p50 {unlink['p50_ms']} ms, max {unlink['max_ms']} ms; "
            f"B's {LAG_METRIC} p99 <= {histogram} ms",
        )
    else:
        add(name, None, 50, None, unlink.get("error", "needs PostgreSQL"))
    name = (
        f"soak {soaked.get('seconds', SOAK_SECONDS)} s c=50: RSS flat (<= {SOAK_FLAT_MIB:.0f} "
        f"MiB fitted growth over the last {soaked.get('trend_window_s', SOAK_TREND_WINDOW):.0f} "
        "s) and 0 errors"
    )
    if soaked:
        add(
            name,
            f"{soaked['trend_growth_mib']:+} MiB, {soaked['errors']} errors",
            SOAK_FLAT_MIB,
            soaked["flat"] and soaked["errors"] == 0,
            f"peak worker RSS {soaked['peak_rss_mib']} MiB",
        )
    else:
        add(name, None, SOAK_FLAT_MIB, None)
    hits = cold.get("upstream_hits", {})
    worst = max(hits.get("benepia", 99), hits.get("gafapay", 99))
    add(
        "cold burst of 200 identical requests -> 1 upstream call per program",
        worst,
        1,
        worst <= 1 and cold.get("all_ok", False),
    )
    code = [r for r in results if r.scenario == "single-provider-code" and r.cpu_ms_per_request]
    declared = [
        r for r in results if r.scenario == "single-provider-declared" and r.cpu_ms_per_request
    ]
    if code and declared:
        cpu_code = sorted(r.cpu_ms_per_request or 0 for r in code)[len(code) // 2]
        cpu_declared = sorted(r.cpu_ms_per_request or 0 for r in declared)[len(declared) // 2]
        value = cpu_declared / max(cpu_code, 1e-9)
        add(
            "GafaPay as a definition: CPU per request within 10% of the code "
            "adapter (declared / code, c=50, single-provider route)",
            round(value, 2),
            1.1,
            0.9 <= value <= 1.1,
        )
    return out


def write_report(report: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    rows = [
        "| scenario | target | c | req/s | p50 ms | p99 ms | errors | CPU ms/req | RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        cpu = "" if r["cpu_ms_per_request"] is None else f"{r['cpu_ms_per_request']:.3f}"
        rss = "" if r["rss_mib"] is None else f"{r['rss_mib']:.0f}"
        rows.append(
            f"| {r['scenario']} | {r['target']} | {r['concurrency']} | "
            f"{r['requests_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} "
            f"| {cpu} | {rss} |"
        )
    marks = ["| target | measured | bound | status |", "|---|---|---|---|"]
    for t in report["targets"]:
        status = {True: "met", False: "**not met**", None: "not measured"}[t["met"]]
        measured = f"{t['value']} ({t['detail']})" if t.get("detail") else f"{t['value']}"
        marks.append(f"| {t['target']} | {measured} | {t['bound']} | {status} |")
    cold = report["cold_burst"]
    text = f"""# Performance

Generated by `make bench` (`bench/run.py`{" --quick" if report["quick"] else ""}) on
{report["date"]}; do not edit by hand, rerun the harness. Raw numbers: `bench/results/latest.json`.

Machine: {m["nproc"]} CPUs ({m["cpu_model"]}), Python {m["python"]}, uvicorn {m["uvicorn"]},
FastAPI {m["fastapi"]}, aiohttp {m["aiohttp"]}, {m["nginx"]}.

## Setup

Everything on 127.0.0.1. The providers are nginx answering their JSON (`bench/upstream_bodies.py`),
or for the latency rows a small aiohttp server that sleeps first (`bench/slow_upstream.py`). The
gateway runs `points-gateway serve --workers 1` (2 for the worker row) with auth disabled
(except in the JWT rows), the rate limit out of reach, accounts in {report["store"]} (the
compose/Kubernetes configuration; SQLite when no local PostgreSQL answers), JSON request logs
at `info` (its production default, written to a file). {USERS} users are each linked to both
programs (`points-gateway accounts import`) and wrk cycles through them with a Lua script, as a
gateway's traffic spreads over users; only the cold burst asks for one user.
*uncached*: `POINTS_CACHE__TTL=0`, every request asks both providers. *cached*: TTL 3600 s,
every request is a cache hit. *cached-jwt* and *uncached-jwt*: the same with
`POINTS_AUTH__MODE=required` and an HS256 secret generated for the run
(`POINTS_AUTH__JWT_SECRET`), every request (load, warm-up, prefill) sending
`Authorization: Bearer` with one service token (`gateway_service: true`, scope `points:read`,
valid two hours; `bench/jwt_auth.py`), so after the first request each verification is the
gateway's verified-token cache; the rate limit, per principal, stays out of reach for that one
token. The uncached gateway runs c=200 {C200_RUNS} times (once with `--quick`); its p99 / p50
target is the median of the runs' ratios. *unlink-visibility* (PostgreSQL only): two cached
gateways A and B on the same database, each holding linked accounts in process and dropping them
on a PostgreSQL notification. While wrk loads B's cached path at c=50, up to {UNLINK_CYCLES}
fresh users are each linked on A (`PUT /users/<u>/accounts/benepia`), read on B until B answers
200, unlinked on A (`DELETE`), and polled on B back to back (one keep-alive connection) until B
answers 404 `account_not_linked`; the time from A's answer to the unlink to B's first 404 is an
upper bound of how long B still served the unlinked account (it includes the poll's own queueing
behind the load). B's histogram
`{LAG_METRIC}` (scraped before and after; it counts the links'
notifications too) gives the notification's own lag, to the bucket. References:
`reference-fanout` (FastAPI + uvicorn, the same two calls on one shared aiohttp session,
`bench/reference_fanout.py`), `reference-static` (a FastAPI route answering a body the size of
the gateway's, `bench/reference_static.py`), and nginx answering directly. Load:
`wrk -t1 -c<c> -d{report["seconds"]}s --latency`, one 1 s warm-up per server. wrk, nginx and the
servers share the {m["nproc"]} CPUs, so absolute numbers are lower than on a dedicated load
generator; compare rows, not machines. In `{SLOW_SCENARIO}` the slow upstream answers Benepia
after 100 ms and GafaPay after 150 ms; it is one Python process, so at c=50 it adds its own
queueing to both the gateway and the reference. CPU per request is utime+stime of
the server's process tree (/proc) over the run divided by the requests
served; RSS is the process tree's after the run.

## Results

{chr(10).join(rows)}

{workers_text(report["results"])}

Cold burst: {cold.get("requests", 0)} identical concurrent requests to a freshly started gateway
(cache on) made {cold.get("upstream_hits", {})} upstream calls (nginx access log); all answered
200: {cold.get("all_ok")}.

{unlink_text(report.get("unlink") or {})}

![throughput](perf-throughput.png)
![p99](perf-p99.png)

{soak_text(report.get("soak") or {})}

## Targets (issue 17)

{chr(10).join(marks)}

Ratios are gateway / reference, both measured in this run. The c=200 row is the median of the
p99 / p50 ratios of the uncached gateway's c=200 runs; the unlink row's measure is the poll-based
p99 (with up to {UNLINK_CYCLES} cycles, the slowest one).

{ANALYSIS.read_text() if ANALYSIS.exists() else ""}"""
    DOC.write_text(text)


def workers_text(results: list[dict[str, Any]]) -> str:
    """CPU per request of one and two workers, side by side."""
    one = [r for r in results if r["scenario"] == "uncached" and r["target"] == "gateway"]
    two = [r for r in results if r["scenario"] == "uncached-2-workers"]
    one = [r for r in one if r["concurrency"] == 50]
    if not (one and two) or one[0]["cpu_ms_per_request"] is None:
        return ""
    a, b = one[0], two[0]
    return textwrap.fill(
        f"Uncached c=50: 1 worker {a['cpu_ms_per_request']:.3f} ms CPU/request "
        f"({a['requests_per_s']:,.0f} req/s), 2 workers {b['cpu_ms_per_request']:.3f} ms "
        f"({b['requests_per_s']:,.0f} req/s).",
        width=100,
    )


def unlink_text(unlink: dict[str, Any]) -> str:
    if not unlink:
        return "Unlink visibility: not measured (accounts in SQLite)."
    if "error" in unlink:
        return f"Unlink visibility: not measured ({unlink['error']})."
    return textwrap.fill(
        f"Unlink visibility: {unlink['cycles']} link/unlink cycles on A while B served "
        f"c={unlink['concurrency']} cached load (B's account cache: {unlink['account_cache']}). "
        f"From A's answer to the unlink to B's first 404: p50 {unlink['p50_ms']} ms, "
        f"p99 {unlink['p99_ms']} ms, max {unlink['max_ms']} ms. B's polls still got the "
        f"unlinked account's balance (200) {unlink['stale_answers']} times, in "
        f"{unlink['cycles_with_stale_answers']} of the cycles; in {unlink['timed_out']} cycles B "
        f"still answered it after {UNLINK_POLL_LIMIT_S:.0f} s. B's `{LAG_METRIC}` "
        f"(notification to cache drop): p99 <= {unlink['histogram_p99_le_ms']} ms (bucket bound, "
        f"{unlink['histogram_count']} notifications, links included).",
        width=100,
    )


def soak_text(soaked: dict[str, Any]) -> str:
    if not soaked:
        return ""
    return f"""## Soak

{soaked["seconds"]} s of uncached load at c={soaked["concurrency"]} on one worker:
{soaked["requests_per_s"]:,.0f} req/s, p50 {soaked["p50_ms"]} ms, p99 {soaked["p99_ms"]} ms,
{soaked["errors"]} errors. RSS sampled every few seconds: peak {soaked["peak_rss_mib"]} MiB;
fitted trend over the last {soaked["trend_window_s"]:.0f} s {soaked["trend_mib_per_min"]:+} MiB/min
({soaked["trend_growth_mib"]:+} MiB over the window; flat: {soaked["flat"]}).

![RSS during the soak](perf-soak-rss.png)
"""


def plot(report: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing (pip install -e '.[bench]'): no plots")
        return
    series = {"gateway": "gateway (uncached)", "reference-fanout": "fan-out reference"}
    for metric, label, name in (
        ("requests_per_s", "req/s", "perf-throughput.png"),
        ("p99_ms", "p99 latency (ms)", "perf-p99.png"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for target, legend in series.items():
            by_c: dict[int, list[float]] = {}
            for r in report["results"]:
                if r["scenario"] == "uncached" and r["target"] == target:
                    by_c.setdefault(r["concurrency"], []).append(r[metric])
            # the median where a level ran more than once (the gateway's c=200)
            points = sorted((c, statistics.median(v)) for c, v in by_c.items())
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=legend)
        ax.set_xscale("log")
        ax.set_xlabel("concurrent connections (wrk -c)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs concurrency, two-upstream fan-out")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(ROOT / "docs" / name, dpi=100)
        plt.close(fig)
    soaked = report.get("soak") or {}
    if soaked.get("samples"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(
            [t for t, _ in soaked["samples"]],
            [r for _, r in soaked["samples"]],
            marker=".",
            label="largest worker RSS",
        )
        ax.set_ylim(0, max(r for _, r in soaked["samples"]) * 1.2)
        ax.set_xlabel("seconds into the soak")
        ax.set_ylabel("worker RSS (MiB)")
        ax.set_title("Gateway worker RSS under uncached load")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(ROOT / "docs" / "perf-soak-rss.png", dpi=100)
        plt.close(fig)


# --- main --------------------------------------------------------------------------------------


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def run(quick: bool) -> dict[str, Any]:
    nginx, wrk = ensure_tools()
    seconds = 3 if quick else 10
    levels = [1, 50, 200] if quick else [1, 10, 50, 200]
    c200_runs = 1 if quick else C200_RUNS
    soak_seconds = 30 if quick else SOAK_SECONDS
    unlink_seconds = 10 if quick else 15  # 60 cycles take 6-8 s under the load; bounded by it
    cold: dict[str, Any] = {}
    soaked: dict[str, Any] = {}
    unlink: dict[str, Any] = {}
    store = open_store()
    log(f"accounts in {store.label}")
    with tempfile.TemporaryDirectory(prefix="points-bench-") as tmpname:
        tmp = Path(tmpname)
        bench = Bench(wrk, seconds, tmp)
        servers: list[Server] = []
        try:
            placeholder = '{"points":[]}'
            ngx = start_nginx(nginx, tmp, placeholder)
            servers.append(ngx)
            # Cold burst first, on a fresh gateway with the cache on; then cached load on it.
            cached = start_gateway(tmp, "gateway-cached", ngx.url, store, ttl=3600)
            servers.append(cached)
            access = tmp / "nginx-access.log"
            access.write_text("")  # nginx keeps its fd; truncate in place
            statuses = asyncio.run(_burst(f"{cached.url}{MERGED}", 200))
            time.sleep(0.5)
            cold = {
                "requests": 200,
                "upstream_hits": upstream_hits(access),
                "all_ok": all(s == 200 for s in statuses),
            }
            log(f"cold burst: {cold}")
            _, body = http("GET", f"{cached.url}{MERGED}")
            static_file = tmp / "static.json"
            static_file.write_bytes(body)
            cached.name = "gateway"
            asyncio.run(_prefill(cached.url))  # every user's balances in the cache
            bench.warm(cached, ROTATING)
            bench.load("cached", cached, ROTATING, 50)
            cached.stop()
            # nginx again, now answering the gateway-sized body directly too.
            ngx.stop()
            ngx = start_nginx(nginx, tmp, body.decode().replace("'", ""))
            servers.append(ngx)
            bench.warm(ngx, ROTATING)
            bench.load("static", ngx, ROTATING, 50)
            with running(
                start_uvicorn(
                    tmp,
                    "reference-static",
                    "bench.reference_static",
                    {"BENCH_STATIC_BODY": str(static_file)},
                )
            ) as ref:
                bench.warm(ref, ROTATING)
                bench.load("static", ref, ROTATING, 50)
            with running(
                start_uvicorn(
                    tmp, "reference-fanout", "bench.reference_fanout", {"BENCH_UPSTREAM": ngx.url}
                )
            ) as ref:
                bench.warm(ref, ROTATING)
                for c in levels:
                    bench.load("uncached", ref, ROTATING, c)
            with running(start_gateway(tmp, "gateway", ngx.url, store, ttl=0)) as gw:
                bench.warm(gw, ROTATING)
                for c in levels:
                    runs = c200_runs if c == 200 else 1
                    for n in range(runs):
                        notes = f"run {n + 1} of {runs}" if runs > 1 else ""
                        bench.load("uncached", gw, ROTATING, c, notes=notes)
                bench.load("single-program", gw, SINGLE, 50)
            # With auth on: one service token, sent by the prefill, the warm-up and wrk.
            auth = new_jwt_auth()
            with running(
                start_gateway(tmp, "gateway-jwt-cached", ngx.url, store, ttl=3600, auth=auth)
            ) as gw:
                gw.name = "gateway"
                asyncio.run(_prefill(gw.url, gw.headers))
                bench.warm(gw, ROTATING)
                bench.load("cached-jwt", gw, ROTATING, 50)
            with running(start_gateway(tmp, "gateway-jwt", ngx.url, store, ttl=0, auth=auth)) as gw:
                gw.name = "gateway"
                bench.warm(gw, ROTATING)
                bench.load("uncached-jwt", gw, ROTATING, 50)
            unlink = unlink_visibility(bench, tmp, ngx.url, store, unlink_seconds)
            # The GafaPay definition against the code adapter, one gateway serving both.
            with running(
                start_gateway(tmp, "gateway-defs", ngx.url, store, ttl=0, providers=ALL_PROVIDERS)
            ) as gw:
                gw.name = "gateway"
                for path in (SINGLE, DECLARED):
                    bench.warm(gw, path)
                for _ in range(1 if quick else 2):
                    bench.load("single-provider-code", gw, SINGLE, 50)
                    bench.load("single-provider-declared", gw, DECLARED, 50)
            with running(start_gateway(tmp, "gateway-2w", ngx.url, store, ttl=0, workers=2)) as gw:
                bench.warm(gw, ROTATING)
                bench.load("uncached-2-workers", gw, ROTATING, 50)
            # Benepia 100 ms and GafaPay 150 ms at once: the answer should take the slower one.
            with running(start_slow(tmp, 0.100, 0.150)) as slow:
                with running(start_gateway(tmp, "gateway-slow", slow.url, store, ttl=0)) as gw:
                    gw.name = "gateway"
                    bench.warm(gw, ROTATING)
                    bench.load(SLOW_SCENARIO, gw, ROTATING, 50)
                with running(
                    start_uvicorn(
                        tmp, "fanout-slow", "bench.reference_fanout", {"BENCH_UPSTREAM": slow.url}
                    )
                ) as ref:
                    ref.name = "reference-fanout"
                    bench.warm(ref, ROTATING)
                    bench.load(SLOW_SCENARIO, ref, ROTATING, 50)
            with running(start_gateway(tmp, "gateway-soak", ngx.url, store, ttl=0)) as gw:
                gw.name = "gateway"
                bench.warm(gw, ROTATING)
                soaked = bench.soak(gw, ROTATING, 50, soak_seconds)
        finally:
            for server in servers:
                server.stop()
            drop_store(store)
    results = [asdict(r) for r in bench.results]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "quick": quick,
        "seconds": seconds,
        "store": store.label,
        "machine": machine(),
        "results": results,
        "cold_burst": cold,
        "soak": soaked,
        "unlink": unlink,
        "targets": targets(bench.results, cold, soaked, unlink),
    }
    write_report(report)
    plot(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="3 s per run, c=1, 50 and 200 once, a 30 s soak"
    )
    args = parser.parse_args()
    started = time.monotonic()
    report = run(args.quick)
    for t in report["targets"]:
        status = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[t["met"]]
        detail = f"; {t['detail']}" if t.get("detail") else ""
        log(f"target {status}: {t['target']} ({t['value']}{detail})")
    log(
        f"done in {time.monotonic() - started:.0f} s: {RESULTS.relative_to(ROOT)}, "
        f"{DOC.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
