"""CDR export at scale: time and peak memory of exporting N call records (issue 16).

    python -m loadtest.bench_cdr_export --rows 1000000 [--backend sqlite|redis] [--dir DIR]

Seeds a fresh store with N CDRs (one every 10 ms of ended_at; 1,000 distinct caller/callee
tokens; written with `record_cdrs` in batches of 20,000 rows: one executemany per batch on
SQLite, one script call per 5,000 on Redis), then exports the whole range three ways, each in
a child process of its own so that its peak RSS (``ru_maxrss`` from ``wait4``) is its alone:

- *store API*: `iter_pages` + `export_page` (CSV) in one process, written to /dev/null;
- *CLI, all rows*: ``sipmask cdr export --from --to`` (CSV) with stdout on /dev/null;
- *CLI, 1% of the rows*: the same command on the first 1% of the range, the baseline that
  shows whether memory grows with the row count.

Reports wall time (interpreter start included), rows/s and peak RSS of each. The peak is the
child's own ``VmHWM`` (/proc/self/status), printed by the child as it exits: ``ru_maxrss``
would not do, since Linux carries the parent's high-water mark across fork and exec. The CLI
child runs ``proxy.cli.main`` exactly as ``python -m proxy`` does, through a two-line wrapper
that prints the figure afterwards. Redis runs against a private ``redis-server`` on a unix
socket in DIR (no persistence), started and stopped here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proxy.pairing import Cdr, NumberVault
from proxy.pairing.stores import PairingStore, RedisStore, SqliteStore

T0 = 1_764_547_200.0  # 2025-12-01T00:00:00Z
STEP_S = 0.01
BATCH = 20_000


def seed(store: PairingStore, vault: NumberVault, rows: int) -> float:
    """Write `rows` CDRs; return the seconds it took."""
    tokens = [vault.token(f"+1555{i:07d}") for i in range(1000)]
    started = time.perf_counter()
    for first in range(0, rows, BATCH):
        batch = [
            Cdr(f"n_{i:012x}", f"ps_{i // 4:016x}", tokens[i % 1000], tokens[(i * 7 + 1) % 1000],
                T0 + i * STEP_S - 65.0, None if i % 5 == 0 else T0 + i * STEP_S - 60.0,
                T0 + i * STEP_S, "busy" if i % 5 == 0 else "answered",
                486 if i % 5 == 0 else 200, "callee busy" if i % 5 == 0 else "caller hung up",
                0.0 if i % 5 == 0 else 60.0)
            for i in range(first, min(rows, first + BATCH))
        ]
        if isinstance(store, RedisStore):
            for part in range(0, len(batch), 5000):
                store.record_cdrs(batch[part:part + 5000])
        else:
            store.record_cdrs(batch)
    return time.perf_counter() - started


# Runs the sipmask CLI as `python -m proxy` does, then reports this process's peak RSS.
_CLI = ("import sys; from proxy.cli import main; code = main(sys.argv[1:]); "
        "from loadtest.bench_cdr_export import report_peak; report_peak(); sys.exit(code)")


def report_peak() -> None:
    """Print this process's peak RSS (VmHWM, KiB) on stderr as ``peak_kib=N``."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                print(f"peak_kib={line.split()[1]}", file=sys.stderr)


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run `cmd` with stdout on /dev/null: (wall seconds, the peak RSS KiB it reported)."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        res = subprocess.run(cmd, stdout=null, stderr=subprocess.PIPE, env=env, check=False)
    elapsed = time.perf_counter() - started
    text = res.stderr.decode(errors="replace")
    peaks = [int(line.partition("=")[2]) for line in text.splitlines()
             if line.startswith("peak_kib=")]
    if res.returncode != 0 or not peaks:
        raise SystemExit(f"{cmd[1:5]} failed ({res.returncode}): {text.strip()[-500:]}")
    return elapsed, peaks[-1]


def store_export(args: argparse.Namespace) -> int:
    """Child mode: export through the store API to /dev/null; print rows on stderr."""
    from proxy.pairing.cdr_export import export_header, export_page, iter_pages
    from proxy.pairing.stores import open_store

    vault = NumberVault.from_key_file(args.key_file, create=False)
    store = open_store(args.backend, vault, path=args.db, redis_url=args.redis_url)
    rows = 0
    with open(os.devnull, "w", encoding="utf-8") as null:
        null.write(export_header("csv"))
        for page in iter_pages(store, args.start, args.end):
            null.write(export_page(page, "csv"))
            rows += len(page)
    store.close()
    if rows != round((args.end - args.start) / STEP_S):
        raise SystemExit(f"exported {rows} rows, expected {(args.end - args.start) / STEP_S}")
    report_peak()
    return 0


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc, f"unix://{sock}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="CDRs to seed and export")
    parser.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite",
                        help="store to seed and export from")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    parser.add_argument("--store-export", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--key-file", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--end", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.store_export:
        return store_export(args)

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="bench-cdr-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db, key_file = workdir / "cdrs.db", workdir / "cdrs.key"
    for stale in (db, key_file):
        stale.unlink(missing_ok=True)
    redis_proc, redis_url = start_redis(workdir) if args.backend == "redis" else (None, "")
    try:
        vault = NumberVault.from_key_file(key_file, create=True)
        store: PairingStore = (SqliteStore(db, vault) if args.backend == "sqlite"
                               else RedisStore.from_url(redis_url, vault))
        seconds = seed(store, vault, args.rows)
        store.close()
        print(f"seeded {args.rows:,} CDRs ({args.backend}) in {seconds:.1f} s "
              f"({args.rows / seconds:,.0f} rows/s)")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
        env.pop("SIPMASK_CONFIG", None)
        python = os.environ.get("SIPMASK_PYTHON", sys.executable)
        end = T0 + args.rows * STEP_S
        store_flags = ["--backend", args.backend, "--db", str(db), "--key-file", str(key_file)]
        if redis_url:
            store_flags += ["--redis-url", redis_url]
        runs = [
            ("store API (CSV to /dev/null)", args.rows,
             [python, "-m", "loadtest.bench_cdr_export", "--store-export", *store_flags,
              "--start", repr(T0), "--end", repr(end)]),
            ("CLI, all rows (CSV to /dev/null)", args.rows,
             [python, "-c", _CLI, *store_flags, "cdr", "export", "--from", repr(T0),
              "--to", repr(end)]),
            ("CLI, first 1% of the rows", max(1, args.rows // 100),
             [python, "-c", _CLI, *store_flags, "cdr", "export", "--from", repr(T0),
              "--to", repr(T0 + max(1, args.rows // 100) * STEP_S)]),
        ]
        print(f"{'export':38} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13}")
        for name, rows, cmd in runs:
            elapsed, peak_kib = measured(cmd, env)
            print(f"{name:38} {rows:>10,} {elapsed:>8.1f} {rows / elapsed:>10,.0f} "
                  f"{peak_kib / 1024:>13.1f}")
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
