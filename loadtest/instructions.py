"""Instructions per basic call through the sans-IO call path: ``python -m loadtest.instructions``.

Wall-clock figures on a shared VM move by 10% between runs; an instruction count does not.
This runs the :mod:`loadtest.bench_call` harness (parse, transactions, B2BUA, serialise of the
14 messages of a call, real SQLite pairing store, no sockets) under valgrind's cachegrind
twice, with ``--calls`` calls and with none after the same warm-up, and prints the difference
per call: start-up and warm-up cancel out. The hash seed is pinned (``PYTHONHASHSEED=0``
unless set), so the same code gives the same count. Needs valgrind (Debian: ``apt-get install
valgrind``); takes about 30 s. Used for the before/after figures in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _inner(calls: int) -> None:
    from proxy.observability.logging import configure_logging

    from .bench_call import Bench

    configure_logging("warning", "json", stream=open(os.devnull, "w"))  # noqa: SIM115 - open for the whole run
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        gc.freeze()
        gc.set_threshold(20_000, 2, 50_000)  # as proxy/app.py does
        for n in range(1, 300):
            bench.call(n)
        bench.tick(70.0)
        for n in range(1000, 1000 + calls):
            bench.call(n)
            if n % 50 == 0:
                bench.tick(0.05)
        bench.tick(70.0)


def _count(calls: int) -> int:
    cmd = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, "-m", "loadtest.instructions", "--inner", str(calls),
    ]
    # a fixed hash seed: with random ones, set and dict layouts (and so the count) moved by
    # +-10k instructions per call between runs of the same code; pinned, a run repeats exactly
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if match is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--inner", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner is not None:
        _inner(args.inner)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    per_call = (_count(args.calls) - _count(0)) / args.calls
    print(f"# CPython {sys.version.split()[0]}, cachegrind, {args.calls} calls after a warm-up")
    print(f"sans-IO call path: {per_call / 1000:.0f}k instructions per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
