"""The run's results: the JSON report (a stable schema for CI), its text rendering, and the
comparison of two reports.

Schema ``sipmask.loadtest/1`` (keys are only ever added; a removed or renamed key means a new
schema version). Times are seconds unless the key says ``_ms``/``_us``; memory is KiB::

    schema, scenario, started_at (ISO 8601 UTC), exit ("ok" | "failed" | "incomplete")
    config:   mode ("rate"|"ramp"|"concurrency"), rate, ramp {start,end,seconds}, concurrency,
              limit, calls, duration_s, hold_ms, pairings, virtual_pool, transport, target,
              sut ("sipmask" | "external" | "external+pid"), busy_pct, ring_ms
    calls:    attempted, ok, failed, unfinished, failed_by_cause {cause: n},
              unexpected_responses {code: n}, responses {code: n}
    rate:     elapsed_s, cps (ok / elapsed), cps_attempted, peak_cps
    retransmissions: caller, callee, total
    response_times_ms: {rtd name: {count, mean, p50, p90, p99, max}}
    sut:      measured, pid, processes, cpu_s, cpu_us_per_call, rss_start_kib, rss_peak_kib,
              rss_final_kib, python (the interpreter of a sipmask the runner started: version,
              build date, path)
    load_generator: caller_cpu_s, callee_cpu_s, sipp_version
    callee:   calls, ok, failed
    timeline: [{t, period_s, cps_attempted, cps, failed, in_flight, p50_ms, p99_ms,
               sut_cpu_pct}]
    files:    paths of what the run left behind
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .sipp_output import RttSample, StatTable

__all__ = [
    "COMPARED",
    "SCHEMA",
    "compare",
    "latency_summary",
    "load",
    "percentile",
    "render_compare",
    "render_text",
    "timeline",
]

SCHEMA = "sipmask.loadtest/1"


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(samples: Iterable[RttSample]) -> dict[str, dict[str, float | int | None]]:
    """Response times by rtd name: count, mean, p50, p90, p99, max (milliseconds)."""
    by_rtd: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        by_rtd[s.rtd].append(s.rtt_ms)
    out = {}
    for rtd, values in sorted(by_rtd.items()):
        values.sort()
        out[rtd] = {
            "count": len(values),
            "mean": round(sum(values) / len(values), 3),
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "p99": percentile(values, 99),
            "max": values[-1],
        }
    return out


def timeline(stat: StatTable, samples: Sequence[RttSample], rtd: str,
             sut_cpu: Sequence[tuple[float, float]] = ()) -> list[dict[str, Any]]:
    """One point per SIPp statistics period: call rates, failures and calls in flight from the
    caller's statistics, p50/p99 of ``rtd`` over the samples that ended in that period, and
    the SUT's CPU use (percent of one core) from ``sut_cpu`` ((t, cpu_s) pairs, t in seconds
    since SIPp started)."""
    start = stat.start
    if start is None:
        return []
    points: list[dict[str, Any]] = []
    prev_t = 0.0
    rtts = sorted((s.at_ms / 1000, s.rtt_ms) for s in samples if s.rtd == rtd)
    cpu = list(sut_cpu)
    i = 0
    for row in stat.rows:
        now = row.time
        if now is None:
            continue
        t = now - start
        period = t - prev_t
        if period < 0.05:  # the start line, and SIPp's final line repeating the last period
            continue
        window = []
        while i < len(rtts) and rtts[i][0] <= t:
            window.append(rtts[i][1])
            i += 1
        window.sort()
        points.append({
            "t": round(t, 3),
            "period_s": round(period, 3),
            "cps_attempted": round(row.count("OutgoingCall", cumulative=False) / period, 3),
            "cps": round(row.count("SuccessfulCall", cumulative=False) / period, 3),
            "failed": row.count("FailedCall", cumulative=False),
            "in_flight": row.count("CurrentCall"),
            "p50_ms": percentile(window, 50),
            "p99_ms": percentile(window, 99),
            "sut_cpu_pct": _cpu_pct(cpu, prev_t, t),
        })
        prev_t = t
    return points


def _cpu_pct(cpu: Sequence[tuple[float, float]], t0: float, t1: float) -> float | None:
    """CPU use between t0 and t1 (percent of one core) from cumulative (t, cpu_s) samples."""
    before = [c for c in cpu if c[0] <= t0]
    after = [c for c in cpu if c[0] >= t1]
    if not before or not after or after[0][0] <= before[-1][0]:
        return None
    (ta, ca), (tb, cb) = before[-1], after[0]
    return round(100 * (cb - ca) / (tb - ta), 1)


# --------------------------------------------------------------------------- text rendering


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_text(report: dict[str, Any]) -> str:
    """The summary printed at the end of a run."""
    cfg, calls, rate = report["config"], report["calls"], report["rate"]
    lines = [
        f"scenario {report['scenario']}  mode {cfg['mode']}  target {cfg['target']}  "
        f"sut {cfg['sut']}  -> {report['exit']}",
        f"calls     attempted {_fmt(calls['attempted'])}  ok {_fmt(calls['ok'])}  "
        f"failed {_fmt(calls['failed'])}  unfinished {_fmt(calls['unfinished'])}",
    ]
    if calls["failed_by_cause"]:
        causes = ", ".join(f"{k} {v}" for k, v in calls["failed_by_cause"].items())
        lines.append(f"  failed by cause: {causes}")
    if calls["unexpected_responses"]:
        codes = ", ".join(f"{k} x{v}" for k, v in calls["unexpected_responses"].items())
        lines.append(f"  unexpected responses: {codes}")
    if calls["responses"]:
        codes = ", ".join(f"{k} x{v}" for k, v in calls["responses"].items())
        lines.append(f"  responses received: {codes}")
    lines.append(f"rate      {_fmt(rate['cps'])} cps over {_fmt(rate['elapsed_s'], 2)} s  "
                 f"(attempted {_fmt(rate['cps_attempted'])} cps, peak {_fmt(rate['peak_cps'])} cps)")
    rt = report["retransmissions"]
    lines.append(f"retrans   caller {_fmt(rt['caller'])}  callee {_fmt(rt['callee'])}")
    for rtd, s in report["response_times_ms"].items():
        lines.append(f"latency   {rtd:<8} n={_fmt(s['count'])}  p50 {_fmt(s['p50'], 0)} ms  "
                     f"p90 {_fmt(s['p90'], 0)} ms  p99 {_fmt(s['p99'], 0)} ms  "
                     f"max {_fmt(s['max'], 0)} ms")
    sut = report["sut"]
    if sut["measured"]:
        lines.append(f"sut       cpu {_fmt(sut['cpu_s'], 2)} s  = {_fmt(sut['cpu_us_per_call'], 0)} us/call"
                     f"  rss peak {_fmt(sut['rss_peak_kib'])} KiB  final {_fmt(sut['rss_final_kib'])} KiB")
        if sut.get("python"):
            lines.append(f"sut       python {sut['python']}")
    else:
        lines.append("sut       not measured (external target without --sut-pid)")
    gen = report["load_generator"]
    lines.append(f"sipp      caller cpu {_fmt(gen['caller_cpu_s'], 2)} s  "
                 f"callee cpu {_fmt(gen['callee_cpu_s'], 2)} s")
    files = report["files"]
    for key in ("json", "png"):
        if files.get(key):
            lines.append(f"{key:<9} {files[key]}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ comparison

#: (dotted path, better when "higher" or "lower")
COMPARED: list[tuple[str, str]] = [
    ("calls.attempted", "higher"),
    ("calls.ok", "higher"),
    ("calls.failed", "lower"),
    ("rate.cps", "higher"),
    ("rate.peak_cps", "higher"),
    ("retransmissions.total", "lower"),
    ("response_times_ms.setup.p50", "lower"),
    ("response_times_ms.setup.p90", "lower"),
    ("response_times_ms.setup.p99", "lower"),
    ("sut.cpu_us_per_call", "lower"),
    ("sut.rss_peak_kib", "lower"),
]


def load(path: str | Path) -> dict[str, Any]:
    report = json.loads(Path(path).read_text())
    if not str(report.get("schema", "")).startswith("sipmask.loadtest/"):
        raise ValueError(f"{path}: not a loadtest report (no 'schema': {SCHEMA!r})")
    return report


def _get(report: dict[str, Any], dotted: str) -> float | None:
    value: Any = report
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare(a: dict[str, Any], b: dict[str, Any],
            metrics: Sequence[tuple[str, str]] = COMPARED) -> list[dict[str, Any]]:
    """Each metric in A and B with the ratio B/A (None when either is missing or A is 0)."""
    rows = []
    for path, better in metrics:
        va, vb = _get(a, path), _get(b, path)
        ratio = vb / va if va not in (None, 0) and vb is not None else None
        rows.append({"metric": path, "a": va, "b": vb, "ratio": ratio, "better": better})
    return rows


def render_compare(rows: Sequence[dict[str, Any]], a_name: str, b_name: str) -> str:
    width = max(len(r["metric"]) for r in rows)
    out = [f"{'metric':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>7}",
           f"{'':<{width}}  {a_name[-12:]:>12}  {b_name[-12:]:>12}"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        note = ""
        if r["ratio"] is not None and r["ratio"] != 1:
            good = (r["ratio"] > 1) == (r["better"] == "higher")
            note = "  better" if good else "  worse"
        out.append(f"{r['metric']:<{width}}  {_fmt(r['a'], 2):>12}  {_fmt(r['b'], 2):>12}  "
                   f"{ratio:>7}{note}")
    return "\n".join(out)
