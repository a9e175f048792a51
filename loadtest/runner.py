"""One load test run, start to finish.

1. Without ``--target``: write a sipmask config routing the seeded callees to the callee SIPp,
   seed N pairings into a fresh store, start sipmask and wait until it answers OPTIONS.
   With ``--target``: use the CSV (or the single caller/virtual pair) given.
2. Write the SIPp CSV and start the callee SIPp (unless ``--no-uas``).
3. Start the caller SIPp at a fixed rate, a ramp, or a closed loop, and watch it: progress,
   the SUT's CPU and RSS every second, the rate during a ramp, the clock for a timed run.
4. Stop everything, read SIPp's files, and build the report (:mod:`loadtest.report`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import catalog, procstat, sipp_output
from .plot import PlotUnavailable, plot_timeline
from .progress import Progress, Snapshot
from .report import SCHEMA, latency_summary, timeline
from .sipp import Sipp, SippError, find_sipp, free_port, sipp_version
from .sut import Sipmask, pairings, write_csv

__all__ = ["Ramp", "RunError", "RunOptions", "run"]

#: Closed loop: SIPp starts a call whenever fewer than N are in flight; the rate only caps it.
CLOSED_LOOP_RATE = 100_000
#: The caller and virtual number of the shared benchmark harness, for --target without a CSV.
DEFAULT_PAIR = ("+15551230001", "+15557770001")
#: Tries at starting a process on a port picked free (another program may take it meanwhile).
_BIND_ATTEMPTS = 6
_SIPP_BIND_FAILED = 254


class RunError(RuntimeError):
    """The run could not be set up (bad options, a process that did not start)."""


@dataclass(frozen=True, slots=True)
class Ramp:
    start: float
    end: float
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Ramp:
        """``START:END:SECONDS``, e.g. ``10:200:60``."""
        try:
            start, end, seconds = (float(x) for x in text.split(":"))
        except ValueError:
            raise ValueError(f"ramp must be START:END:SECONDS (e.g. 10:200:60), got {text!r}") from None
        if start <= 0 or end <= 0 or seconds <= 0:
            raise ValueError(f"ramp values must be positive, got {text!r}")
        return cls(start, end, seconds)

    def rate_at(self, t: float) -> float:
        return self.start + (self.end - self.start) * min(max(t / self.seconds, 0.0), 1.0)


@dataclass
class RunOptions:
    """Everything ``python -m loadtest run`` takes (see ``--help`` and docs/loadtest.md)."""

    scenario: str = "basic"
    calls: int | None = None
    duration_s: float | None = None
    rate: float | None = None
    ramp: Ramp | None = None
    concurrency: int | None = None
    limit: int | None = None
    hold_ms: int | None = None
    pairings: int = 100
    virtual_pool: int | None = None
    csv: Path | None = None
    caller: str | None = None
    virtual: str | None = None
    target: str | None = None
    sut_pid: int | None = None
    transport: str = "udp"
    sipmask_ip: str = "127.0.0.1"
    sipmask_port: int = 5060
    uas_ip: str = "127.0.0.1"
    uas_port: int = 5080
    uac_ip: str = "127.0.0.1"
    uac_port: int = 5070
    no_uas: bool = False
    busy_pct: float | None = None
    ring_ms: int = 0
    recv_timeout_ms: int = 32_000
    out_dir: Path | None = None
    json_path: Path | None = None
    png_path: Path | None = None
    plot: bool = True
    log_level: str = "warning"
    sipp: str | None = None
    python: str | None = None
    timeout_s: float | None = None
    progress: str = "auto"
    extra_sipp_args: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        if self.concurrency:
            return "concurrency"
        if self.ramp:
            return "ramp"
        return "rate"

    def check(self) -> None:
        chosen = [n for n, v in (("--rate", self.rate), ("--ramp", self.ramp),
                                 ("--concurrency", self.concurrency)) if v]
        if len(chosen) > 1:
            raise RunError(f"choose one of --rate, --ramp, --concurrency (got {', '.join(chosen)})")
        if self.calls is not None and self.calls < 1:
            raise RunError("--calls must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise RunError("--duration must be positive")
        if (self.caller is None) != (self.virtual is None):
            raise RunError("--caller and --virtual go together")
        if self.transport not in ("udp", "tcp"):
            raise RunError("--transport must be udp or tcp")
        catalog.get(self.scenario)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_out_dir(scenario: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("loadtest-results") / f"{stamp}-{scenario}"


def python_description(python: str) -> str:
    """``VERSION (BUILD DATE) PATH`` of an interpreter, for the report: a distribution's
    optimised build (Debian: PGO + LTO, libpython linked in) and a plain source build of the
    same version differ by 15-25% in CPU per call."""
    try:
        out = subprocess.run(
            [python, "-c", "import platform, sys; print(platform.python_version(), "
             "platform.python_build()[1], sys.executable)"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return python
    if len(out) < 3:
        return python
    return f"{out[0]} ({' '.join(out[1:-1])}) {out[-1]}"


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    """``caller;virtual`` lines of a CSV (a SIPp injection file or a plain one)."""
    pairs = []
    for line in path.read_text().splitlines():
        fields = [f.strip() for f in line.split(";")]
        if len(fields) < 2 or not fields[0] or fields[0].upper() in ("SEQUENTIAL", "RANDOM", "USER"):
            continue
        if fields[0].startswith("#"):
            continue
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise RunError(f"{path}: no caller;virtual lines")
    return pairs


class _Run:
    """State of one run; :func:`run` drives it."""

    def __init__(self, opts: RunOptions, progress: Progress) -> None:
        self.opts = opts
        self.progress = progress
        self.scenario = catalog.get(opts.scenario)
        self.sipp_path = find_sipp(opts.sipp)
        self.out = (opts.out_dir or _default_out_dir(opts.scenario)).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in ("uac", "uas", "sipmask"):  # a previous run into the same --out
            shutil.rmtree(self.out / stale, ignore_errors=True)
        self.sipmask: Sipmask | None = None
        self.uas: Sipp | None = None
        self.uac: Sipp | None = None
        self.sut_pid: int | None = opts.sut_pid
        self.target = opts.target or ""
        self.pairs: list[tuple[str, str]] = []
        self.seed_s: float | None = None
        self.sut_samples: list[tuple[float, float]] = []  # (t since caller start, cpu_s)
        self.rss_start = self.rss_peak = self.rss_final = 0
        self.sut_cpu0 = self.sut_cpu1 = 0.0
        self.sut_processes = 0
        self.caller_cpu = self.callee_cpu = 0.0
        self.t0 = self.t1 = 0.0
        self.incomplete = False
        self.started_at = _now_iso()
        self.follower: sipp_output.StatFollower | None = None

    # -- set-up ---------------------------------------------------------------------------

    def port(self, ip: str, port: int) -> int:
        return port or free_port(ip)

    def setup(self) -> None:
        o = self.opts
        # The callee first: sipmask's route names its port, which is only sure once it is bound.
        uas_port = o.uas_port
        if not o.no_uas:
            uas_port = self.start_uas()
        if not o.target:
            self.start_sipmask(uas_port or self.port(o.uas_ip, 0))
        elif o.csv:
            self.pairs = _read_pairs(o.csv)
        else:
            self.pairs = [(o.caller, o.virtual)] if o.caller and o.virtual else [DEFAULT_PAIR]
        write_csv(self.out / "pairs.csv", self.pairs)

    def start_sipmask(self, uas_port: int) -> None:
        o = self.opts
        host = f"[{o.uas_ip}]" if ":" in o.uas_ip else o.uas_ip
        sm = Sipmask(self.out / "sipmask", o.sipmask_ip, self.port(o.sipmask_ip, o.sipmask_port),
                     f"{o.transport}:{host}:{uas_port}", log_level=o.log_level,
                     python=o.python or sys.executable)
        seeded = list(pairings(o.pairings, o.virtual_pool))
        self.seed_s = sm.seed(seeded)
        self.pairs = [(p.caller, p.virtual) for p in seeded]
        self.sipmask = sm
        for attempt in range(_BIND_ATTEMPTS):
            try:
                sm.start()
                break
            except RuntimeError as exc:
                # A port picked free can be taken by another program before sipmask binds it.
                text = str(exc)
                if o.sipmask_port or ("bind" not in text and "in use" not in text) \
                        or attempt == _BIND_ATTEMPTS - 1:
                    raise
                sm.port = free_port(o.sipmask_ip)
        self.sut_pid = sm.pid
        self.target = f"[{sm.ip}]:{sm.port}" if ":" in sm.ip else f"{sm.ip}:{sm.port}"

    def start_uas(self) -> int:
        """Start the callee SIPp; returns its port."""
        o = self.opts
        args: list[str] = []
        if self.scenario.uas_takes_settings:
            busy = self.scenario.busy_pct if o.busy_pct is None else o.busy_pct
            args += ["-set", "busy_pct", f"{busy:g}", "-set", "ring_ms", str(o.ring_ms)]
        for attempt in range(_BIND_ATTEMPTS):
            self.uas = Sipp(self.sipp_path, "uas", self.scenario.uas_path, o.uas_ip,
                            self.port(o.uas_ip, o.uas_port), self.out, transport=o.transport,
                            args=args)
            self.uas.start()
            try:
                self.uas.wait_bound()
                return self.uas.port
            except SippError:
                if o.uas_port or self.uas.returncode != _SIPP_BIND_FAILED \
                        or attempt == _BIND_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def uac_args(self) -> list[str]:
        o = self.opts
        hold = self.scenario.hold_ms if o.hold_ms is None else o.hold_ms
        args = ["-inf", str(self.out / "pairs.csv"), "-d", str(hold),
                "-trace_rtt", "-rtt_freq", "1", "-trace_counts", "-trace_error_codes",
                "-recv_timeout", str(o.recv_timeout_ms)]
        if o.concurrency:
            args += ["-r", str(CLOSED_LOOP_RATE), "-rp", "1000", "-l", str(o.concurrency)]
        else:
            rate = o.ramp.start if o.ramp else o.rate or 10.0
            args += ["-r", f"{rate:g}", "-rp", "1000"]
            if o.limit:
                args += ["-l", str(o.limit)]
        if self.calls is not None:
            args += ["-m", str(self.calls)]
        return args + list(o.extra_sipp_args)

    @property
    def calls(self) -> int | None:
        """Calls to place: --calls; or a default of 100 when nothing else ends the run."""
        o = self.opts
        if o.calls is not None:
            return o.calls
        if o.duration_s is None and o.ramp is None:
            return 100
        return None

    @property
    def duration_s(self) -> float | None:
        o = self.opts
        if o.duration_s is not None:
            return o.duration_s
        if o.ramp is not None and o.calls is None:
            return o.ramp.seconds
        return None

    # -- the run ----------------------------------------------------------------------------

    def drive(self) -> None:
        o = self.opts
        uac = self.start_uac()
        if self.sut_pid:
            self.sut_samples.append((0.0, self.sut_cpu0))
        stopping = False
        last_sample = -1.0
        last_rate: float | None = None
        while uac.running():
            time.sleep(0.25)
            t = time.monotonic() - self.t0
            if t - last_sample >= 1.0:
                last_sample = t
                self.sample(t)
            if o.ramp and not stopping:
                rate = round(o.ramp.rate_at(t), 1)
                if rate != last_rate:
                    uac.set_rate(rate)
                    last_rate = rate
            if self.duration_s is not None and t >= self.duration_s and not stopping:
                uac.control("q")  # no new calls; the ones in flight finish
                stopping = True
            if o.timeout_s is not None and t >= o.timeout_s:
                self.incomplete = True
                uac.stop(grace_s=3)
                break
            self.progress.update(self.snapshot(t, last_rate))
        self.t1 = time.monotonic()
        if self.sut_pid:
            s = procstat.sample_tree(self.sut_pid)
            self.sut_cpu1, self.rss_final, self.sut_processes = s.cpu_s, s.rss_kib, s.processes
            self.rss_peak = max(self.rss_peak, s.rss_kib)
            self.sut_samples.append((self.t1 - self.t0, s.cpu_s))
        self.progress.close(self.snapshot(self.t1 - self.t0, last_rate))

    def start_uac(self) -> Sipp:
        """Start the caller SIPp (again on another port if the one picked free was taken)."""
        o = self.opts
        for attempt in range(_BIND_ATTEMPTS):
            uac = Sipp(self.sipp_path, "uac", self.scenario.uac_path, o.uac_ip,
                       self.port(o.uac_ip, o.uac_port), self.out, transport=o.transport,
                       args=self.uac_args(), remote=self.target)
            self.uac = uac
            if self.sut_pid:
                s = procstat.sample_tree(self.sut_pid)
                self.sut_cpu0, self.rss_start, self.rss_peak = s.cpu_s, s.rss_kib, s.rss_kib
            self.t0 = time.monotonic()
            uac.start()
            if o.uac_port or attempt == _BIND_ATTEMPTS - 1:
                break
            assert uac.proc is not None
            try:
                uac.proc.wait(timeout=0.3)  # a SIPp that cannot bind exits at once
            except subprocess.TimeoutExpired:
                break
            if uac.returncode != _SIPP_BIND_FAILED:
                break
        return uac

    def sample(self, t: float) -> None:
        if self.sut_pid:
            s = procstat.sample_tree(self.sut_pid)
            self.rss_peak = max(self.rss_peak, s.rss_kib)
            self.sut_samples.append((t, s.cpu_s))
        if self.uac and self.uac.proc:
            # The caller's CPU: read while it runs (its /proc entry goes when it exits).
            self.caller_cpu = procstat.sample_tree(self.uac.proc.pid).cpu_s or self.caller_cpu

    def snapshot(self, t: float, rate: float | None) -> Snapshot:
        assert self.uac is not None
        if self.follower is None:
            self.follower = sipp_output.StatFollower(self.uac.stat_csv)
        row = self.follower.poll()
        o = self.opts
        target_rate = rate if o.ramp else (o.rate or None) if not o.concurrency else None
        if row is None:
            return Snapshot(t, 0, 0, 0, 0, 0.0, self.calls, self.duration_s, target_rate)
        return Snapshot(t, row.count("TotalCallCreated"), row.count("SuccessfulCall"),
                        row.count("FailedCall"), row.count("CurrentCall"),
                        self.follower.recent_rate(), self.calls, self.duration_s,
                        target_rate)

    def teardown(self) -> None:
        if self.uac is not None and self.uac.running():
            self.uac.stop(grace_s=2)
        if self.uas is not None:
            if self.uas.proc is not None and self.uas.running():
                self.callee_cpu = procstat.sample_tree(self.uas.proc.pid).cpu_s
            self.uas.stop(grace_s=2)
        if self.sipmask is not None:
            self.sipmask.stop()

    # -- results ----------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        o = self.opts
        assert self.uac is not None
        stat = sipp_output.read_stat_csv(self.uac.stat_csv)
        last = stat.last
        rtt_file = self.uac.trace_file("rtt.csv")
        samples = sipp_output.read_rtt_csv(rtt_file) if rtt_file else []
        counts_file = self.uac.trace_file("counts.csv")
        counts = sipp_output.read_counts_csv(counts_file) if counts_file else {}
        codes_file = self.uac.trace_file("error_codes.csv")
        unexpected = sipp_output.read_error_codes(codes_file) if codes_file else {}
        uas_last = sipp_output.read_stat_csv(self.uas.stat_csv).last if self.uas else None

        attempted = last.count("TotalCallCreated") if last else 0
        ok = last.count("SuccessfulCall") if last else 0
        failed = last.count("FailedCall") if last else 0
        elapsed = self.t1 - self.t0
        points = timeline(stat, samples, self.scenario.main_rtd, self.sut_samples)
        sut_measured = bool(self.sut_pid)
        cpu_s = self.sut_cpu1 - self.sut_cpu0 if sut_measured else None
        hold = self.scenario.hold_ms if o.hold_ms is None else o.hold_ms
        busy = (self.scenario.busy_pct if o.busy_pct is None else o.busy_pct) \
            if self.scenario.uas_takes_settings and not o.no_uas else None
        exit_state = "incomplete" if self.incomplete else ("ok" if failed == 0 and ok == attempted
                                                           and ok > 0 else "failed")
        report: dict[str, Any] = {
            "schema": SCHEMA,
            "scenario": self.scenario.name,
            "started_at": self.started_at,
            "exit": exit_state,
            "config": {
                "mode": o.mode,
                "rate": o.rate if o.mode == "rate" else None,
                "ramp": ({"start": o.ramp.start, "end": o.ramp.end, "seconds": o.ramp.seconds}
                         if o.ramp else None),
                "concurrency": o.concurrency,
                "limit": o.limit,
                "calls": self.calls,
                "duration_s": self.duration_s,
                "hold_ms": hold,
                "pairings": len(self.pairs),
                "virtual_pool": o.virtual_pool if not o.target else None,
                "transport": o.transport,
                "target": self.target,
                "sut": "sipmask" if self.sipmask else ("external+pid" if sut_measured else "external"),
                "busy_pct": busy,
                "ring_ms": o.ring_ms if busy is not None else None,
                "seed_s": round(self.seed_s, 3) if self.seed_s is not None else None,
            },
            "calls": {
                "attempted": attempted,
                "ok": ok,
                "failed": failed,
                "unfinished": max(0, attempted - ok - failed),
                "failed_by_cause": last.failures() if last else {},
                "unexpected_responses": unexpected,
                "responses": sipp_output.responses_by_code(counts),
            },
            "rate": {
                "elapsed_s": round(elapsed, 3),
                "cps": round(ok / elapsed, 3) if elapsed > 0 else None,
                "cps_attempted": round(attempted / elapsed, 3) if elapsed > 0 else None,
                # over whole periods: a short last period would make a peak out of a few calls
                "peak_cps": max((p["cps"] for p in points if p["period_s"] >= 0.5), default=None),
            },
            "retransmissions": {
                "caller": last.count("Retransmissions") if last else 0,
                "callee": uas_last.count("Retransmissions") if uas_last else 0,
            },
            "response_times_ms": latency_summary(samples),
            "sut": {
                "measured": sut_measured,
                "pid": self.sut_pid,
                "processes": self.sut_processes if sut_measured else None,
                "cpu_s": round(cpu_s, 3) if cpu_s is not None else None,
                "cpu_us_per_call": round(cpu_s * 1e6 / ok, 1) if cpu_s is not None and ok else None,
                "rss_start_kib": self.rss_start if sut_measured else None,
                "rss_peak_kib": self.rss_peak if sut_measured else None,
                "rss_final_kib": self.rss_final if sut_measured else None,
                # the interpreter sipmask ran on: its build moves CPU per call by 15-25%
                # (docs/benchmarks.md, "The interpreter")
                "python": (python_description(self.sipmask.python)
                           if self.sipmask is not None else None),
            },
            "load_generator": {
                "caller_cpu_s": round(self.caller_cpu, 3),
                "callee_cpu_s": round(self.callee_cpu, 3),
                "sipp_version": sipp_version(self.sipp_path),
                "caller_exit": self.uac.returncode,
            },
            "callee": {
                "calls": uas_last.count("TotalCallCreated") if uas_last else None,
                "ok": uas_last.count("SuccessfulCall") if uas_last else None,
                "failed": uas_last.count("FailedCall") if uas_last else None,
            },
            "timeline": points,
            "files": {
                "dir": str(self.out),
                "pairs_csv": str(self.out / "pairs.csv"),
                "caller_stat_csv": str(self.uac.stat_csv),
                "caller_rtt_csv": str(rtt_file) if rtt_file else None,
                "caller_errors": str(self.uac.errors_log),
                "sipmask_log": str(self.sipmask.log_path) if self.sipmask else None,
                "json": None,
                "png": None,
            },
        }
        rt = report["retransmissions"]
        rt["total"] = rt["caller"] + rt["callee"]
        return report


def run(opts: RunOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run a load test and return the report; also writes the JSON and PNG it names."""
    opts.check()
    r = _Run(opts, progress or Progress(opts.progress))
    try:
        r.setup()
        r.drive()
    finally:
        r.teardown()
    report = r.report()
    out = r.out
    if opts.plot:
        png = opts.png_path or out / "loadtest.png"
        try:
            plot_timeline(report["timeline"], png,
                          f"{report['scenario']} via {report['config']['target']} "
                          f"({report['config']['mode']})")
            report["files"]["png"] = str(png)
        except PlotUnavailable as exc:
            report["files"]["png"] = None
            report["plot_error"] = str(exc)
    json_path = opts.json_path or out / "report.json"
    report["files"]["json"] = str(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    if opts.json_path and opts.json_path.resolve() != (out / "report.json"):
        shutil.copyfile(json_path, out / "report.json")
    return report

