"""Sessions created per second through the HTTP API (a benchmark, not a test).

Starts a real ``sipmask run`` (SQLite store in a temporary directory, SIP and API on free
loopback ports), creates an admin token with the CLI, fills the pool, optionally pre-loads
the store with N open sessions (written straight into the file, as a warm production table
would be), then POSTs ``/v1/sessions`` from C concurrent HTTP clients for D seconds and prints
throughput and latency percentiles::

    python -m loadtest.bench_api --seconds 10 --concurrency 1 8 32 --prefill 100000

Every session has two fresh participants, so the pool never runs out; the virtual numbers
come from the pool (allocation included in the figure). Results go to stdout as a table and,
with ``--json``, as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cli(workdir: Path, *args: str) -> str:
    cmd = [sys.executable, "-m", "proxy", "--db", str(workdir / "sipmask.db"),
           "--key-file", str(workdir / "sipmask.key"), *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def _prefill(workdir: Path, count: int, pool: list[str]) -> float:
    """Insert `count` open sessions directly (one transaction); return seconds taken."""
    sys.path.insert(0, str(ROOT))
    from proxy.pairing import NumberVault, SqliteStore

    started = time.perf_counter()
    vault = NumberVault.from_key_file(workdir / "sipmask.key", create=False)
    SqliteStore(workdir / "sipmask.db", vault).close()  # migrate
    conn = sqlite3.connect(workdir / "sipmask.db")
    conn.execute("BEGIN IMMEDIATE")
    seq = conn.execute("SELECT value FROM counters WHERE name = 'session_seq'").fetchone()[0]
    now = time.time()
    rows = []
    for i in range(count):
        a, b = f"+1201{i:07d}", f"+1202{i:07d}"
        virtual = pool[i % len(pool)]
        rows.append((f"ps_pre{i:011x}"[:19], seq + i + 1, vault.encrypt(a), vault.index(a),
                     virtual, vault.encrypt(b), vault.index(b), virtual, now, now))
        if len(rows) == 10_000 or i == count - 1:
            conn.executemany(
                "INSERT INTO sessions (id, seq, status, mode, number_a, index_a, virtual_a, "
                "number_b, index_b, virtual_b, created_at, last_activity, metadata) "
                "VALUES (?, ?, 'open', 'voice', ?, ?, ?, ?, ?, ?, ?, ?, '{}')", rows)
            rows = []
    conn.execute("UPDATE counters SET value = ? WHERE name = 'session_seq'", (seq + count,))
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


async def _worker(url: str, token: str, stop_at: float, start: int, step: int,
                  latencies: list[float], errors: list[int]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        i = start
        while time.perf_counter() < stop_at:
            body = {"a": {"number": f"+1303{i:07d}"}, "b": {"number": f"+1304{i:07d}"},
                    "ttl_s": 3600, "metadata": {"order_id": f"o-{i}"}}
            t0 = time.perf_counter()
            async with http.post(url, json=body) as reply:
                await reply.read()
                if reply.status != 201:
                    errors.append(reply.status)
                else:
                    latencies.append(time.perf_counter() - t0)
            i += step


async def _run_level(base: str, token: str, seconds: float, concurrency: int,
                     offset: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(
        _worker(base + "/v1/sessions", token, stop_at, offset + w, concurrency, latencies, errors)
        for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "concurrency": concurrency,
        "created": len(latencies),
        "errors": len(errors),
        "per_second": len(latencies) / elapsed,
        "p50_ms": pct(0.50) if latencies else None,
        "p99_ms": pct(0.99) if latencies else None,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--pool", type=int, default=100, help="virtual numbers in the pool")
    parser.add_argument("--prefill", type=int, default=0, help="open sessions loaded first")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        workdir = Path(tmp)
        pool = [f"+1800555{i:04d}" for i in range(args.pool)]
        token = _cli(workdir, "token", "create", "bench", "--role", "admin").splitlines()[-1]
        _cli(workdir, "pool", "add", *pool)
        prefill_s = _prefill(workdir, args.prefill, pool) if args.prefill else 0.0
        api_port, sip_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMASK_")}
        env.update(SIPMASK_API_LISTEN=f"127.0.0.1:{api_port}",
                   SIPMASK_LISTEN=f"udp:127.0.0.1:{sip_port}", SIPMASK_LOG_LEVEL="warning")
        # the per-token rate limit (50/s by default) is what a load test of the API must lift
        (workdir / "bench.toml").write_text("[api]\nrate_limit_per_token = 0\n")
        proc = subprocess.Popen([sys.executable, "-m", "proxy", "-c", "bench.toml", "run"], cwd=workdir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{api_port}"
        try:
            deadline = time.monotonic() + 900  # a pre-loaded table is read into memory first
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", api_port), timeout=0.2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"sipmask did not start: {proc.stderr.read()!r}") from None
                    time.sleep(0.1)
            results = []
            offset = 0
            for level in args.concurrency:
                cpu_before = _cpu_s(proc.pid)
                result = asyncio.run(_run_level(base, token, args.seconds, level, offset))
                cpu = _cpu_s(proc.pid) - cpu_before
                result["server_cpu_us_per_session"] = (
                    cpu / result["created"] * 1e6 if result["created"] else None)
                results.append(result)
                offset += 10_000_000 // len(args.concurrency)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

    print(f"# POST /v1/sessions on loopback: pool {args.pool} numbers, "
          f"{args.prefill} sessions pre-loaded ({prefill_s:.1f} s), {args.seconds:g} s per level")
    print(f"{'clients':>7} {'created':>8} {'errors':>6} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'server cpu us/session':>22}")
    for r in results:
        print(f"{r['concurrency']:>7} {r['created']:>8} {r['errors']:>6} {r['per_second']:>8.0f} "
              f"{r['p50_ms'] or 0:>7.2f} {r['p99_ms'] or 0:>7.2f} "
              f"{r['server_cpu_us_per_session'] or 0:>22.0f}")
    if args.json:
        print(json.dumps({"pool": args.pool, "prefill": args.prefill, "levels": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
