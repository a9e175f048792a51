"""Micro-benchmark of the pairing hot path: PairingCache.lookup at scale.

    python -m loadtest.bench_pairing [N] [--lookups 1000000] [--batch 100] [--virtuals 1000]

Builds a cache of N open sessions (default 1,000,000; virtual numbers drawn from a pool, as in
production), then times lookups with `time.perf_counter_ns` in batches (one clock read per
batch, so the clock's own ~50 ns does not swamp a ~100 ns lookup) and reports p50/p99/max of
the per-lookup time over batches, for hits and for misses. Key strings are built fresh for every
batch, as a SIP parser would hand them over, so their hashes are not precomputed.

It then times every lookup on its own (two clock reads around each call, keys again built fresh
per batch) and reports p50/p99/p99.9/max of those individual times, with the clock's own cost
measured alongside (read it as an upper bound: the figures include one clock call). The issue's
target is on this figure: p99 < 5 us per lookup.

Memory per session: RSS growth while building the cache, divided by N (sessions are streamed
in, so only what the cache keeps stays), then the same from tracemalloc on a second build
(skip with --no-trace).
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterator

from proxy.pairing import PairingCache, Participant, Session, normalize_number
from proxy.pairing.policy import DEFAULT_POLICY, parse_policy

T0 = 1_700_000_000.0
#: Half the sessions carry a call policy, of two kinds (as a courier service's would): the
#: cache holds one CallPolicy object per kind and direction, and every Match a reference.
POLICIES = (
    DEFAULT_POLICY,
    parse_policy({"calling_windows": [{"days": "mon-sat", "from": "08:00", "to": "20:00",
                                       "tz": "Asia/Singapore"}], "direction": "a_to_b"}),
    DEFAULT_POLICY,
    parse_policy({"single_use": True, "max_call_s": 900, "ring_timeout_s": 30}),
)


def real(i: int) -> str:
    """The i-th real number: +1, an area code from 200 up, 7 digits (unique below 8e8)."""
    return f"+1{200 + i // 10_000_000:03d}{i % 10_000_000:07d}"


def sessions(n: int, virtuals: list[str]) -> Iterator[Session]:
    """N sessions: participant 2k pairs with 2k+1; each side dials a pool number."""
    pool = len(virtuals)
    for k in range(n):
        yield Session(
            id=f"ps_{k:016x}",
            a=Participant(real(2 * k), virtuals[k % pool]),
            b=Participant(real(2 * k + 1), virtuals[(k * 7 + 3) % pool]),
            status="open",
            created_at=T0,
            expires_at=T0 + 86_400 if k % 2 else None,
            ttl_s=3_600.0 if k % 3 else None,
            last_activity=T0,
            policy=POLICIES[k % len(POLICIES)],
        )


def rss_kib() -> int:
    """Current resident set size in KiB (Linux), else peak RSS."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * (resource.getpagesize() // 1024)
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def percentiles(samples_ns: list[float]) -> str:
    samples_ns.sort()
    p50 = statistics.median(samples_ns)
    p99 = samples_ns[min(len(samples_ns) - 1, int(len(samples_ns) * 0.99))]
    return f"p50 {p50:7.1f} ns   p99 {p99:7.1f} ns   max {samples_ns[-1]:8.1f} ns"


def fresh(text: str) -> str:
    """A new string object equal to `text` (its hash not yet computed)."""
    return "".join([text[:4], text[4:]])


def time_lookups(
    cache: PairingCache, keys: list[tuple[str, str]], batch: int, now: float
) -> tuple[list[float], list[float]]:
    """Per-lookup mean (ns) of each batch of `batch` lookups: (first pass, repeat).

    Each batch gets new string objects built just before it is timed, as a SIP parser would
    hand them over: hot in the CPU cache, hashes not yet computed. The first pass pays for
    fetching the sessions' routing objects from RAM; the repeat finds them in the CPU cache
    and so shows the interpreter's share of the cost.
    """
    lookup = cache.lookup
    clock = time.perf_counter_ns
    cold: list[float] = []
    warm: list[float] = []
    for start in range(0, len(keys) - batch + 1, batch):
        chunk = [(fresh(caller), fresh(dialed)) for caller, dialed in keys[start : start + batch]]
        t0 = clock()
        for caller, dialed in chunk:
            lookup(caller, dialed, now)
        t1 = clock()
        for caller, dialed in chunk:
            lookup(caller, dialed, now)
        t2 = clock()
        cold.append((t1 - t0) / batch)
        warm.append((t2 - t1) / batch)
    return cold, warm


def time_each(
    cache: PairingCache, keys: list[tuple[str, str]], batch: int, now: float
) -> list[int]:
    """The time (ns) of each lookup on its own, keys built fresh per batch as above."""
    lookup = cache.lookup
    clock = time.perf_counter_ns
    samples: list[int] = []
    add = samples.append
    for start in range(0, len(keys) - batch + 1, batch):
        chunk = [(fresh(caller), fresh(dialed)) for caller, dialed in keys[start : start + batch]]
        for caller, dialed in chunk:
            t0 = clock()
            lookup(caller, dialed, now)
            add(clock() - t0)
    return samples


def clock_cost(reads: int = 1_000_000) -> list[int]:
    """What two back-to-back clock reads measure: the floor of every individual sample."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(reads):
        t0 = clock()
        samples.append(clock() - t0)
    return samples


def tail(samples_ns: list[int]) -> str:
    samples_ns.sort()
    n = len(samples_ns)

    def at(q: float) -> int:
        return samples_ns[min(n - 1, int(n * q))]

    return (f"p50 {at(0.5):6d} ns   p99 {at(0.99):6d} ns   p99.9 {at(0.999):6d} ns   "
            f"max {samples_ns[-1]:8d} ns")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=1_000_000, help="sessions in the cache")
    parser.add_argument("--lookups", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--virtuals", type=int, default=1_000, help="size of the virtual-number pool")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-trace", dest="trace", action="store_false",
                        help="skip the tracemalloc build (slow: ~4x the plain build)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    virtuals = [f"+1555999{i:04d}" for i in range(args.virtuals)]

    gc.collect()
    rss_before = rss_kib()
    t_build = time.perf_counter()
    cache = PairingCache()
    cache.load(sessions(args.n, virtuals))
    t_build = time.perf_counter() - t_build
    gc.collect()
    rss_grown = (rss_kib() - rss_before) * 1024

    print(f"python {sys.version.split()[0]}  sessions {args.n:,}  virtual pool {args.virtuals:,}")
    print(f"build: {t_build:.1f} s  ({args.n / t_build:,.0f} sessions/s, making the Session objects included)")
    print(f"memory: RSS +{rss_grown / 2**20:.0f} MiB = {rss_grown / args.n:.0f} B/session")
    if args.trace:
        # A second, traced build counts only what the cache keeps (tracemalloc's own
        # bookkeeping would inflate an RSS figure taken with it on).
        tracemalloc.start()
        traced_cache = PairingCache()
        traced_cache.load(sessions(args.n, virtuals))
        gc.collect()
        traced, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del traced_cache
        print(f"memory: tracemalloc {traced / 2**20:.0f} MiB = {traced / args.n:.0f} B/session")

    # Hits: a random session, a random direction; misses: unknown callers on pool numbers.
    hits: list[tuple[str, str]] = []
    for _ in range(args.lookups):
        k = rng.randrange(args.n)
        if rng.random() < 0.5:
            hits.append((real(2 * k), virtuals[k % args.virtuals]))
        else:
            hits.append((real(2 * k + 1), virtuals[(k * 7 + 3) % args.virtuals]))
    misses = [(f"+1666{rng.randrange(10**7):07d}", rng.choice(virtuals)) for _ in range(args.lookups)]
    now = T0 + 60
    assert all(cache.lookup(c, d, now) is not None for c, d in hits[:1000]), "benchmark keys miss"

    gc.disable()
    try:
        hit_cold, hit_warm = time_lookups(cache, hits, args.batch, now)
        miss_cold, miss_warm = time_lookups(cache, misses, args.batch, now)
    finally:
        gc.enable()
    print(f"per lookup, over batches of {args.batch} ({args.lookups:,} lookups each):")
    print(f"  hit,  first pass     : {percentiles(hit_cold)}")
    print(f"  hit,  repeat (cached): {percentiles(hit_warm)}")
    print(f"  miss, first pass     : {percentiles(miss_cold)}")
    print(f"  miss, repeat (cached): {percentiles(miss_warm)}")

    gc.disable()
    try:
        floor = clock_cost()
        hit_each = time_each(cache, hits, args.batch, now)
        miss_each = time_each(cache, misses, args.batch, now)
    finally:
        gc.enable()
    print(f"individual lookups ({args.lookups:,} each; every sample includes one clock read):")
    print(f"  hit : {tail(hit_each)}")
    print(f"  miss: {tail(miss_each)}")
    print(f"  clock read alone: {tail(floor)}")

    # The normalisation fast path that precedes every lookup.
    raws = [fresh(caller) for caller, _ in hits[:200_000]]
    t0 = time.perf_counter_ns()
    for raw in raws:
        normalize_number(raw)
    print(f"normalize_number (E.164 fast path): {(time.perf_counter_ns() - t0) / len(raws):.1f} ns/call")
    slow = ["+1 (555) 123-0001", "tel:+1-555-123-0001", "555-123-0001"] * 3_000
    t0 = time.perf_counter_ns()
    for raw in slow:
        normalize_number(raw)
    print(f"normalize_number (phonenumbers path): {(time.perf_counter_ns() - t0) / len(slow) / 1000:.1f} us/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
