"""``python -m loadtest``: run SIPp load against sipmask (or any SIP system) and compare runs.

    python -m loadtest run --scenario basic --calls 2000 --rate 50
    python -m loadtest run --scenario long --concurrency 500 --duration 120
    python -m loadtest run --ramp 10:200:60 --json ramp.json
    python -m loadtest run --target 10.0.0.5:5060 --csv pairs.csv --no-uas --rate 20
    python -m loadtest compare before.json after.json --max-ratio sut.cpu_us_per_call=1.10
    python -m loadtest scenarios

Full reference: docs/loadtest.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import catalog
from .report import compare, load, render_compare, render_text
from .runner import Ramp, RunError, RunOptions, run

__all__ = ["main", "parser"]


def _ramp(text: str) -> Ramp:
    try:
        return Ramp.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(text: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT``; port 0 means any free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected IP:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _ratio(text: str) -> tuple[str, float]:
    metric, sep, value = text.partition("=")
    try:
        return metric, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected METRIC=RATIO, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest",
        description="SIPp load tests for sipmask or any SIP system: CPS, failures by cause, "
                    "response times, SUT CPU per call and RSS, a PNG and a JSON report.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("run", help="run a load test",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = r.add_argument_group("what to run")
    g.add_argument("--scenario", "-s", default="basic", choices=list(catalog.SCENARIOS),
                   help="call flow (see: python -m loadtest scenarios)")
    g.add_argument("--calls", "-m", type=int,
                   help="calls to place (default 100 unless --duration or --ramp ends the run)")
    g.add_argument("--duration", type=float, metavar="SECONDS", dest="duration_s",
                   help="stop starting calls after this long, then let the calls in flight end")
    g.add_argument("--hold", type=int, metavar="MS", dest="hold_ms",
                   help="what the caller waits before hanging up (SIPp -d); scenario default: "
                        "0 basic, 30000 long, 100 cancel (ringing) and reinvite (between steps)")

    g = r.add_argument_group("load shape (one of)")
    g.add_argument("--rate", "-r", type=float, metavar="CPS", help="fixed rate (default 10)")
    g.add_argument("--ramp", type=_ramp, metavar="START:END:SECONDS",
                   help="rate rising linearly from START to END cps over SECONDS")
    g.add_argument("--concurrency", "-c", type=int, metavar="N",
                   help="closed loop: keep N calls in flight, a new one as soon as one ends")
    g.add_argument("--limit", "-l", type=int, metavar="N",
                   help="with --rate/--ramp: never more than N calls in flight (SIPp -l)")

    g = r.add_argument_group("system under test")
    g.add_argument("--target", metavar="HOST:PORT",
                   help="drive a running SIP system instead of starting sipmask: nothing is "
                        "seeded and its CPU is not measured unless --sut-pid")
    g.add_argument("--sut-pid", type=int, metavar="PID",
                   help="with --target: measure CPU and RSS of this process and its children")
    g.add_argument("--sipmask", type=_address, default=("127.0.0.1", 5060), metavar="IP:PORT",
                   help="where the sipmask the runner starts listens (UDP and TCP; port 0: any)")
    g.add_argument("--pairings", "-n", type=int, default=100, metavar="N",
                   help="pairings seeded into the fresh sipmask store (and CSV lines)")
    g.add_argument("--virtual-pool", type=int, metavar="V",
                   help="virtual numbers shared by the pairings (default: 2 per pairing)")
    g.add_argument("--log-level", default="warning",
                   help="sipmask's log level (info and debug cost CPU per call)")
    g.add_argument("--python", metavar="PATH",
                   help="interpreter that runs sipmask (default: this one)")

    g = r.add_argument_group("numbers, for --target")
    g.add_argument("--csv", type=Path, metavar="FILE",
                   help="caller;virtual per line (a SIPp -inf file works): one line per call, "
                        "in turn")
    g.add_argument("--caller", help="one caller number for every call (with --virtual)")
    g.add_argument("--virtual", help="the virtual number dialled (with --caller)")

    g = r.add_argument_group("SIPp peers")
    g.add_argument("--uac", type=_address, default=("127.0.0.1", 5070), metavar="IP:PORT",
                   help="the caller SIPp's address (port 0: any)")
    g.add_argument("--uas", type=_address, default=("127.0.0.1", 5080), metavar="IP:PORT",
                   help="the callee SIPp's address, where seeded callees are routed (port 0: any)")
    g.add_argument("--no-uas", action="store_true",
                   help="start no callee: the target routes calls elsewhere")
    g.add_argument("--busy-pct", type=float, metavar="PCT",
                   help="percent of calls the callee answers 486 (default 0; busy: 100)")
    g.add_argument("--ring-ms", type=int, default=0, metavar="MS",
                   help="callee's ringing time before it answers")
    g.add_argument("--transport", "-t", choices=("udp", "tcp"), default="udp")
    g.add_argument("--recv-timeout", type=int, default=32_000, metavar="MS",
                   dest="recv_timeout_ms",
                   help="a call fails when a response it waits for takes longer (SIPp "
                        "-recv_timeout)")
    g.add_argument("--sipp", metavar="PATH", help="SIPp binary (default: sipp on PATH)")
    g.add_argument("--sipp-arg", action="append", default=[], metavar="ARG",
                   dest="extra_sipp_args",
                   help="extra argument for the caller SIPp (repeat: --sipp-arg=-max_retrans "
                        "--sipp-arg=3)")

    g = r.add_argument_group("output")
    g.add_argument("--out", type=Path, metavar="DIR", dest="out_dir",
                   help="directory for every file of the run (default "
                        "loadtest-results/DATE-TIME-SCENARIO)")
    g.add_argument("--json", type=Path, metavar="FILE", dest="json_path",
                   help="write the JSON report here too (always DIR/report.json)")
    g.add_argument("--png", type=Path, metavar="FILE", dest="png_path",
                   help="the plot (default DIR/loadtest.png)")
    g.add_argument("--no-plot", action="store_false", dest="plot", help="draw no PNG")
    g.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                   help="auto: a bar on a terminal, a line every 5 s otherwise")
    g.add_argument("--timeout", type=float, metavar="SECONDS", dest="timeout_s",
                   help="abort the run after this long (the report says 'incomplete')")

    c = sub.add_parser("compare", help="compare two JSON reports: B/A for each figure")
    c.add_argument("a", type=Path, help="the reference report (A)")
    c.add_argument("b", type=Path, help="the candidate report (B)")
    c.add_argument("--max-ratio", type=_ratio, action="append", default=[],
                   metavar="METRIC=RATIO",
                   help="exit 1 when B/A of METRIC (dotted, e.g. sut.cpu_us_per_call) exceeds "
                        "RATIO; repeat for several")
    c.add_argument("--min-ratio", type=_ratio, action="append", default=[],
                   metavar="METRIC=RATIO", help="exit 1 when B/A of METRIC is below RATIO")

    sub.add_parser("scenarios", help="list the scenarios and their SIPp files")
    return p


def _options(ns: argparse.Namespace) -> RunOptions:
    if ns.sut_pid and not ns.target:
        raise RunError("--sut-pid goes with --target (without it the runner measures the "
                       "sipmask it starts)")
    opts = RunOptions(
        scenario=ns.scenario, calls=ns.calls, duration_s=ns.duration_s, rate=ns.rate,
        ramp=ns.ramp, concurrency=ns.concurrency, limit=ns.limit, hold_ms=ns.hold_ms,
        pairings=ns.pairings, virtual_pool=ns.virtual_pool, csv=ns.csv, caller=ns.caller,
        virtual=ns.virtual, target=ns.target, sut_pid=ns.sut_pid, transport=ns.transport,
        sipmask_ip=ns.sipmask[0], sipmask_port=ns.sipmask[1], uas_ip=ns.uas[0],
        uas_port=ns.uas[1], uac_ip=ns.uac[0], uac_port=ns.uac[1], no_uas=ns.no_uas,
        busy_pct=ns.busy_pct, ring_ms=ns.ring_ms, recv_timeout_ms=ns.recv_timeout_ms,
        out_dir=ns.out_dir, json_path=ns.json_path, png_path=ns.png_path, plot=ns.plot,
        log_level=ns.log_level, sipp=ns.sipp, python=ns.python, timeout_s=ns.timeout_s,
        progress=ns.progress, extra_sipp_args=ns.extra_sipp_args,
    )
    return opts


def cmd_run(ns: argparse.Namespace) -> int:
    report = run(_options(ns))
    print(render_text(report))
    if report.get("plot_error"):
        print(f"plot: {report['plot_error']}", file=sys.stderr)
    return 0 if report["exit"] == "ok" else 1


def cmd_compare(ns: argparse.Namespace) -> int:
    a, b = load(ns.a), load(ns.b)
    extra = [(m, "lower") for m, _ in ns.max_ratio + ns.min_ratio]
    from .report import COMPARED

    metrics = COMPARED + [m for m in extra if m[0] not in {k for k, _ in COMPARED}]
    rows = compare(a, b, metrics)
    print(render_compare(rows, str(ns.a), str(ns.b)))
    ratios = {r["metric"]: r["ratio"] for r in rows}
    failures = []
    for metric, limit in ns.max_ratio:
        ratio = ratios.get(metric)
        if ratio is None:
            failures.append(f"{metric}: missing in a report")
        elif ratio > limit:
            failures.append(f"{metric}: B/A {ratio:.3f} > {limit:g}")
    for metric, limit in ns.min_ratio:
        ratio = ratios.get(metric)
        if ratio is None:
            failures.append(f"{metric}: missing in a report")
        elif ratio < limit:
            failures.append(f"{metric}: B/A {ratio:.3f} < {limit:g}")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_scenarios(ns: argparse.Namespace) -> int:
    for s in catalog.SCENARIOS.values():
        print(f"{s.name:<9} {s.uac:<18} -> {s.uas:<13} {s.summary}")
    print(f"\nfiles: {catalog.SCENARIO_DIR}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = parser().parse_args(argv)
    handler = {"run": cmd_run, "compare": cmd_compare, "scenarios": cmd_scenarios}[ns.command]
    try:
        return handler(ns)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:  # RunError, SippError too
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return 130
