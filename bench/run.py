"""Load benchmark of the gateway against references (issue 8). `make bench`, or `--quick`.

Everything listens on 127.0.0.1. Upstreams: nginx serving the providers' JSON (and a slow aiohttp
stand-in for the latency scenarios). References: a minimal FastAPI fan-out on one aiohttp session,
a trivial FastAPI JSON route, nginx itself. Load: wrk, one thread. Writes bench/results/latest.json,
docs/performance.md and docs/perf-*.png.
"""

# ruff: noqa: S310, S603, S607  (a local harness: loopback URLs, fixed local tools)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

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
SOAK_RSS_LIMIT_MIB = 150.0
# "Flat": RSS grew by at most this much over the trend window (a fitted line, not two samples).
SOAK_FLAT_MIB = 3.0
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


def http(method: str, url: str, body: Any = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status), bytes(answer.read())


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str

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
) -> Server:
    """A gateway over `upstream`; `source`: serve another checkout's `app` (A/B runs).

    The first gateway on a shared database migrates it (in an A/B run, the newer side): an older
    checkout does not know the newer revisions, and serves from the newer schema as it is.
    """
    env = gateway_env(tmp, name, upstream, ttl, store)
    if providers is not None:
        env["POINTS_ENABLED_PROVIDERS"] = providers
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
    return Server(name, proc, url)


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
        """wrk's last arguments: the URL, with a script rotating users for a `{user}` path."""
        if "{user}" not in path:
            return [f"{server.url}{path}"]
        return ["-s", str(lua_for(path, self.tmp)), f"{server.url}/"]

    def load(
        self,
        scenario: str,
        server: Server,
        path: str,
        c: int,
        notes: str = "",
        measure: bool = True,
    ) -> Result:
        duration = max(self.seconds, 1)
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
        out = subprocess.run(
            argv, capture_output=True, text=True, check=True, timeout=duration + 30
        ).stdout
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
        subprocess.run(
            [self.wrk, "-t1", "-c10", "-d1s", *self.target(server, path)],
            capture_output=True,
            check=True,
            timeout=30,
        )


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


async def _prefill(base: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as session:

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
    results: list[Result], cold: dict[str, Any], soaked: dict[str, Any]
) -> list[dict[str, Any]]:
    """Issue-8 targets: (name, measured, bound, met). Ratios are gateway / reference."""
    out: list[dict[str, Any]] = []

    def ratio(
        name: str,
        num: Result | None,
        den: Result | None,
        attr: str,
        bound: float,
        higher_is_better: bool = True,
    ) -> None:
        if num is None or den is None:
            out.append({"target": name, "value": None, "bound": bound, "met": None})
            return
        value = getattr(num, attr) / max(getattr(den, attr), 1e-9)
        met = value >= bound if higher_is_better else value <= bound
        out.append({"target": name, "value": round(value, 2), "bound": bound, "met": met})

    gw50 = find(results, "uncached", "gateway", 50)
    ref50 = find(results, "uncached", "reference-fanout", 50)
    ratio("uncached req/s at c=50 >= 0.8 x fan-out reference", gw50, ref50, "requests_per_s", 0.8)
    ratio(
        "uncached p99 at c=50 <= 1.5 x fan-out reference",
        gw50,
        ref50,
        "p99_ms",
        1.5,
        higher_is_better=False,
    )
    gw1 = find(results, "uncached", "gateway", 1)
    ref1 = find(results, "uncached", "reference-fanout", 1)
    if gw1 is not None and ref1 is not None:
        extra = gw1.p50_ms - ref1.p50_ms
        out.append(
            {
                "target": "c=1: gateway p50 <= fan-out reference p50 + 1 ms",
                "value": round(extra, 2),
                "bound": 1.0,
                "met": extra <= 1.0,
            }
        )
    ratio(
        "cached req/s >= 0.6 x no-upstream FastAPI reference",
        find(results, "cached", "gateway"),
        find(results, "static", "reference-static"),
        "requests_per_s",
        0.6,
    )
    ratio(
        "2 workers >= 1.6 x 1 worker (c=50, uncached)",
        find(results, "uncached-2-workers", "gateway-2w"),
        gw50,
        "requests_per_s",
        1.6,
    )
    slow = find(results, SLOW_SCENARIO, "gateway")
    if slow is not None:
        out.append(
            {
                "target": "p50 with 100 and 150 ms upstreams <= 165 ms (the slower, not the sum)",
                "value": round(slow.p50_ms, 1),
                "bound": 165,
                "met": slow.p50_ms <= 165,
            }
        )
    if soaked:
        out.append(
            {
                "target": f"soak: peak RSS per worker < {SOAK_RSS_LIMIT_MIB:.0f} MiB and flat "
                f"(<= {SOAK_FLAT_MIB:.0f} MiB fitted growth over the last "
                f"{soaked['trend_window_s']:.0f} s)",
                "value": f"{soaked['peak_rss_mib']} MiB, {soaked['trend_growth_mib']:+} MiB",
                "bound": SOAK_RSS_LIMIT_MIB,
                "met": soaked["peak_rss_mib"] < SOAK_RSS_LIMIT_MIB and soaked["flat"],
            }
        )
    code = [r for r in results if r.scenario == "single-provider-code" and r.cpu_ms_per_request]
    declared = [
        r for r in results if r.scenario == "single-provider-declared" and r.cpu_ms_per_request
    ]
    if code and declared:
        cpu_code = sorted(r.cpu_ms_per_request or 0 for r in code)[len(code) // 2]
        cpu_declared = sorted(r.cpu_ms_per_request or 0 for r in declared)[len(declared) // 2]
        value = cpu_declared / max(cpu_code, 1e-9)
        out.append(
            {
                "target": "GafaPay as a definition: CPU per request within 10% of the code "
                "adapter (declared / code, c=50, single-provider route)",
                "value": round(value, 2),
                "bound": 1.1,
                "met": 0.9 <= value <= 1.1,
            }
        )
    hits = cold.get("upstream_hits", {})
    worst = max(hits.get("benepia", 99), hits.get("gafapay", 99))
    out.append(
        {
            "target": "200 identical cold requests -> 1 upstream call per program",
            "value": worst,
            "bound": 1,
            "met": worst <= 1 and cold.get("all_ok", False),
        }
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
        marks.append(f"| {t['target']} | {t['value']} | {t['bound']} | {status} |")
    cold = report["cold_burst"]
    text = f"""# Performance

Generated by `make bench` (`bench/run.py`{" --quick" if report["quick"] else ""}) on
{report["date"]}; do not edit by hand, rerun the harness. Raw numbers: `bench/results/latest.json`.

Machine: {m["nproc"]} CPUs ({m["cpu_model"]}), Python {m["python"]}, uvicorn {m["uvicorn"]},
FastAPI {m["fastapi"]}, aiohttp {m["aiohttp"]}, {m["nginx"]}.

## Setup

Everything on 127.0.0.1. The providers are nginx answering their JSON (`bench/upstream_bodies.py`),
or for the latency rows a small aiohttp server that sleeps first (`bench/slow_upstream.py`). The
gateway runs `points-gateway serve --workers 1` (2 for the worker row) with auth disabled,
the rate limit out of reach, accounts in {report["store"]} (the compose/Kubernetes
configuration; SQLite when no local PostgreSQL answers), JSON request logs at `info` (its
production default, written to a file). {USERS} users are each linked to both programs
(`points-gateway accounts import`) and wrk cycles through them with a Lua script, as a gateway's
traffic spreads over users; only the cold burst asks for one user.
*uncached*: `POINTS_CACHE__TTL=0`, every request asks both providers. *cached*: TTL 3600 s,
every request is a cache hit. References:
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

Cold burst: {cold.get("requests", 0)} identical concurrent requests to a freshly started gateway
(cache on) made {cold.get("upstream_hits", {})} upstream calls (nginx access log); all answered
200: {cold.get("all_ok")}.

![throughput](perf-throughput.png)
![p99](perf-p99.png)

{soak_text(report.get("soak") or {})}

## Issue 8 targets

{chr(10).join(marks)}

Ratios are gateway / reference.

{ANALYSIS.read_text() if ANALYSIS.exists() else ""}"""
    DOC.write_text(text)


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
            points = sorted(
                (r["concurrency"], r[metric])
                for r in report["results"]
                if r["scenario"] == "uncached" and r["target"] == target
            )
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
        ax.plot([t for t, _ in soaked["samples"]], [r for _, r in soaked["samples"]], marker=".")
        ax.axhline(SOAK_RSS_LIMIT_MIB, color="grey", linestyle="--", label="target bound")
        ax.set_ylim(0, SOAK_RSS_LIMIT_MIB * 1.1)
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
    levels = [1, 50] if quick else [1, 10, 50, 200]
    soak_seconds = 30 if quick else SOAK_SECONDS
    cold: dict[str, Any] = {}
    soaked: dict[str, Any] = {}
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
                    bench.load("uncached", gw, ROTATING, c)
                bench.load("single-program", gw, SINGLE, 50)
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
        "targets": targets(bench.results, cold, soaked),
    }
    write_report(report)
    plot(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 s per run, c=1 and 50 only")
    args = parser.parse_args()
    started = time.monotonic()
    report = run(args.quick)
    for t in report["targets"]:
        log(f"target {'MET' if t['met'] else 'NOT MET'}: {t['target']} ({t['value']})")
    log(
        f"done in {time.monotonic() - started:.0f} s: {RESULTS.relative_to(ROOT)}, "
        f"{DOC.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
