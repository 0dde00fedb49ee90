"""Header flood and slow headers against `points-gateway serve` (issue 13); prints the figures.

Starts the gateway as the bench does (SQLite, auth off), probes /healthz from a separate process
on a fresh connection every 50 ms, samples the server's RSS and open sockets, and reports each
phase on its own freshly started server:

- flood: 4 connections each trying to send a 100 MiB `X-Pad` header (the issue's attack);
- flood-repeat: 4 clients that reconnect and try again whenever they are cut off;
- trickle: 1,500 connections each sending one header byte a second.

`python -m bench.header_flood` (about 90 s). Everything is on 127.0.0.1, every phase is bounded in
time and stops by itself. To measure other code, put its checkout first on PYTHONPATH: the server
subprocess imports `app` from there.
"""

# ruff: noqa: S603  (a local harness: fixed local commands, loopback only)
from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import multiprocessing.connection
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.run import HOST, VENV_BIN, Server, Store, free_port, gateway_env, log, spawn, wait_http

MIB = 1024 * 1024
CHUNK = b"a" * (64 * 1024)
FLOOD_BYTES = 100 * MIB
FLOOD_CLIENTS = 4
TRICKLE_CLIENTS = 1500
PROBE_EVERY = 0.05
PROBE_TIMEOUT = 5.0
SAMPLE_EVERY = 0.2
REQUEST_HEAD = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Pad: "
PHASES = ["flood", "flood-repeat", "trickle"]


# --- the probe, in its own process so the attackers' threads cannot delay it ------------------


def _probe(port: int, seconds: float, out: multiprocessing.connection.Connection) -> None:
    """GET /healthz on a fresh connection every PROBE_EVERY s; sends [(latency s, ok)]."""
    results: list[tuple[float, bool]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        ok = False
        conn = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT)
        try:
            conn.request("GET", "/healthz")
            answer = conn.getresponse()
            answer.read()
            ok = answer.status == 200
        except OSError:
            pass
        finally:
            conn.close()
        elapsed = time.perf_counter() - started
        results.append((elapsed, ok))
        time.sleep(max(0.0, PROBE_EVERY - elapsed))
    out.send(results)
    out.close()


@dataclass
class Probes:
    """Latencies of the /healthz probes of one phase."""

    count: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, results: list[tuple[float, bool]]) -> Probes:
        # A failed probe counts with the time it took (PROBE_TIMEOUT when it timed out).
        latencies = sorted(elapsed * 1000 for elapsed, _ in results)
        return cls(
            count=len(results),
            failed=sum(1 for _, ok in results if not ok),
            p50_ms=round(_quantile(latencies, 0.50), 2),
            p99_ms=round(_quantile(latencies, 0.99), 2),
            max_ms=round(latencies[-1], 2),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


# --- server ----------------------------------------------------------------------------------


def sockets_of(pid: int) -> int:
    """How many sockets the process holds open."""
    count = 0
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                count += os.readlink(fd).startswith("socket:")
    return count


@contextlib.contextmanager
def gateway(tmp: Path, name: str, key: str, extra: dict[str, str]) -> Iterator[Server]:
    """`points-gateway serve` with the bench's environment, on a free port."""
    env = {**gateway_env(tmp, name, f"http://{HOST}:9", 0, Store(None, key)), **extra}
    exe = str(VENV_BIN / "points-gateway")
    subprocess.run([exe, "db", "upgrade"], env=env, check=True, timeout=120, capture_output=True)
    port = free_port()
    argv = [exe, "serve", "--host", HOST, "--port", str(port)]
    server = Server(name, spawn(name, argv, env, tmp), f"http://{HOST}:{port}")
    try:
        wait_http(f"{server.url}/healthz", proc=server.proc)
        yield server
    finally:
        server.stop()


@dataclass
class Samples:
    """RSS (MiB) and open sockets of the server, sampled while a phase runs."""

    rss: list[float] = field(default_factory=list)
    sockets: list[int] = field(default_factory=list)


def _sample(server: Server, stop: threading.Event, samples: Samples) -> None:
    while not stop.is_set():
        samples.rss.append(server.rss_mib())
        samples.sockets.append(sockets_of(server.proc.pid))
        stop.wait(SAMPLE_EVERY)


# --- attackers -------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One attacking connection: what it sent, and what it saw."""

    sent_mib: float
    seconds: float
    status_line: str  # the server's answer, or how the connection ended


def _answer(sock: socket.socket) -> str:
    try:
        sock.settimeout(2.0)
        data = sock.recv(256)
    except OSError as exc:
        return type(exc).__name__
    return data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed"


def _flood(port: int, deadline: float, repeat: bool, attempts: list[Attempt]) -> None:
    """Send a FLOOD_BYTES header (once, or again whenever cut off) until the deadline."""
    while time.monotonic() < deadline:
        started = time.monotonic()
        sent = 0
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.settimeout(1.0)
            ended = ""
            try:
                sock.sendall(REQUEST_HEAD)
                while sent < FLOOD_BYTES and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        sock.sendall(CHUNK)
                        sent += len(CHUNK)
                if sent >= FLOOD_BYTES:
                    sock.sendall(b"\r\n\r\n")
                else:
                    ended = "still sending at the phase's end"
            except OSError as exc:
                ended = type(exc).__name__
            answer = _answer(sock)
            status = answer if answer.startswith("HTTP/") else ended or answer
            attempts.append(Attempt(round(sent / MIB, 2), time.monotonic() - started, status))
        if not repeat:
            return


async def _trickle_one(port: int, deadline: float, closed_after: list[float]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    opened = time.monotonic()
    request = REQUEST_HEAD.replace(b"X-Pad: ", b"X-Slow: ")
    reading = asyncio.ensure_future(reader.read(1024))
    sent = 0
    try:
        while time.monotonic() < deadline:
            byte = request[sent : sent + 1] or b"a"
            with contextlib.suppress(OSError):
                writer.write(byte)
            sent += 1
            done, _ = await asyncio.wait({reading}, timeout=1.0)
            if done:  # the server answered or closed: either way it gave up on us
                closed_after.append(time.monotonic() - opened)
                return
    finally:
        reading.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _trickle(port: int, seconds: float, clients: int) -> tuple[list[float], int]:
    deadline = time.monotonic() + seconds
    closed_after: list[float] = []
    outcomes = await asyncio.gather(
        *(_trickle_one(port, deadline, closed_after) for _ in range(clients)),
        return_exceptions=True,
    )
    refused = sum(1 for outcome in outcomes if isinstance(outcome, BaseException))
    return closed_after, refused


# --- phases ----------------------------------------------------------------------------------


def phase(
    server: Server, seconds: float, attack: Any, *, settle: float = 1.0
) -> tuple[Probes, Samples, float, Any]:
    """Probe and sample for `seconds`; the attack starts after `settle` s and gets the rest."""
    port = int(server.url.rsplit(":", 1)[1])
    baseline = server.rss_mib()
    receiving, sending = multiprocessing.get_context("spawn").Pipe(duplex=False)
    prober = multiprocessing.get_context("spawn").Process(
        target=_probe, args=(port, seconds, sending)
    )
    prober.start()
    samples, stop = Samples(), threading.Event()
    sampler = threading.Thread(target=_sample, args=(server, stop, samples), daemon=True)
    sampler.start()
    time.sleep(settle)
    outcome = attack(port, time.monotonic() + seconds - settle)
    results = receiving.recv()
    prober.join(10)
    stop.set()
    sampler.join(5)
    return Probes.of(results), samples, baseline, outcome


def flood_attack(repeat: bool) -> Any:
    def attack(port: int, deadline: float) -> list[Attempt]:
        attempts: list[Attempt] = []
        threads = [
            threading.Thread(target=_flood, args=(port, deadline, repeat, attempts), daemon=True)
            for _ in range(FLOOD_CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic() + 10))
        time.sleep(max(0.0, deadline - time.monotonic()))
        return attempts

    return attack


def trickle_attack(clients: int) -> Any:
    def attack(port: int, deadline: float) -> tuple[list[float], int]:
        return asyncio.run(_trickle(port, deadline - time.monotonic(), clients))

    return attack


def report(name: str, probes: Probes, samples: Samples, baseline: float) -> dict[str, Any]:
    figures = {
        "phase": name,
        "healthz": asdict(probes),
        "rss_baseline_mib": round(baseline, 1),
        "rss_growth_peak_mib": round(max(samples.rss) - baseline, 1),
        "rss_growth_end_mib": round(samples.rss[-1] - baseline, 1),
        "server_sockets_peak": max(samples.sockets),
        "server_sockets_end": samples.sockets[-1],
    }
    log(
        f"{name}: healthz p50 {probes.p50_ms} ms, p99 {probes.p99_ms} ms, max {probes.max_ms} ms, "
        f"{probes.failed}/{probes.count} failed; RSS {baseline:.1f} MiB "
        f"+{figures['rss_growth_peak_mib']} peak, +{figures['rss_growth_end_mib']} at the end; "
        f"server sockets peak {figures['server_sockets_peak']}, "
        f"end {figures['server_sockets_end']}"
    )
    return figures


def flood_figures(attempts: list[Attempt]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for attempt in attempts:
        statuses[attempt.status_line] = statuses.get(attempt.status_line, 0) + 1
    sent = sorted(a.sent_mib for a in attempts)
    figures = {
        "connections": len(attempts),
        "answers": statuses,
        "sent_mib_max": sent[-1] if sent else 0,
        "sent_mib_median": sent[len(sent) // 2] if sent else 0,
        "seconds_max": round(max((a.seconds for a in attempts), default=0), 2),
    }
    log(f"  attackers: {figures}")
    return figures


def run_flood(server: Server, seconds: float, repeat: bool) -> dict[str, Any]:
    name = "flood-repeat" if repeat else "flood"
    probes, samples, baseline, attempts = phase(server, seconds, flood_attack(repeat))
    return {**report(name, probes, samples, baseline), **flood_figures(attempts)}


def run_trickle(server: Server, seconds: float, clients: int) -> dict[str, Any]:
    probes, samples, baseline, (closed_after, refused) = phase(
        server, seconds, trickle_attack(clients)
    )
    closed = sorted(closed_after)
    trickle = {
        "clients": clients,
        "refused": refused,
        "closed_by_server": len(closed),
        "closed_after_s_min": round(closed[0], 1) if closed else None,
        "closed_after_s_max": round(closed[-1], 1) if closed else None,
    }
    log(f"  trickle: {trickle}")
    return {**report("trickle", probes, samples, baseline), **trickle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flood-seconds", type=float, default=20.0)
    parser.add_argument("--trickle-seconds", type=float, default=20.0)
    parser.add_argument("--trickle-clients", type=int, default=TRICKLE_CLIENTS)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument(
        "--phase", action="append", choices=PHASES, help="run only these phases (repeatable)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    key = subprocess.run(
        [str(VENV_BIN / "points-gateway"), "keys", "generate"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="points-header-flood-") as tmpname:
        tmp = Path(tmpname)
        for name in args.phase or PHASES:
            with gateway(tmp, name, key, extra) as server:
                if name == "trickle":
                    figures.append(run_trickle(server, args.trickle_seconds, args.trickle_clients))
                else:
                    figures.append(run_flood(server, args.flood_seconds, name == "flood-repeat"))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
