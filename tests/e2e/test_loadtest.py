"""``python -m loadtest`` end to end: the runner seeds pairings, starts sipmask and a SIPp callee
on free ports, drives a SIPp caller, and writes a JSON report and a PNG; then ``compare``; then
``--target`` against a sipmask started here, measured through ``--sut-pid``.

Small runs (tens of calls), so the file takes well under a minute on two cores.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import B_PREFIX, ROOT, free_port

pytestmark = pytest.mark.e2e

pytest.importorskip("matplotlib", reason="the PNG needs matplotlib (pip install -e '.[loadtest]')")


def _loadtest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtest", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _run(tmp_path: Path, name: str, *args: str) -> dict:
    """``loadtest run`` on ports the runner picks (port 0: any free one, retried if another
    program takes it first); returns the JSON report."""
    out = tmp_path / name
    json_path = tmp_path / f"{name}.json"
    ports = {"--sipmask": "127.0.0.1:0", "--uas": "127.0.0.1:0", "--uac": "127.0.0.1:0"}
    for arg in args:  # an address the test gives wins
        ports.pop(arg, None)
    res = _loadtest(
        "run", *[x for kv in ports.items() for x in kv], "--out", str(out),
        "--json", str(json_path), "--progress", "lines", "--timeout", "40", *args,
    )
    details = f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr[-4000:]}"
    assert json_path.exists(), details
    report = json.loads(json_path.read_text())
    report["_details"] = details
    report["_returncode"] = res.returncode
    report["_stdout"] = res.stdout
    return report


def _assert_all_ok(report: dict, calls: int) -> None:
    details = report["_details"]
    assert report["schema"] == "sipmask.loadtest/1"
    assert report["exit"] == "ok", details
    assert report["_returncode"] == 0, details
    c = report["calls"]
    assert c["attempted"] == calls, details
    assert c["ok"] == c["attempted"], details
    assert c["failed"] == 0 and c["failed_by_cause"] == {}, details
    assert c["unexpected_responses"] == {}, details
    assert report["callee"]["calls"] == calls, details
    assert report["rate"]["cps"] > 0
    assert report["sut"]["measured"] is True
    assert report["sut"]["cpu_us_per_call"] > 0, details
    assert report["sut"]["rss_peak_kib"] > 10_000  # a Python process: tens of MB
    assert report["sut"]["rss_peak_kib"] >= report["sut"]["rss_final_kib"] > 0
    if report["config"]["sut"] == "sipmask":
        # the interpreter that ran sipmask: version (build date) path
        assert report["sut"]["python"].startswith(platform.python_version() + " ("), report["sut"]
    else:
        assert report["sut"]["python"] is None  # not ours to know
    setup = report["response_times_ms"]["setup"]
    assert setup["count"] == calls and setup["p50"] <= setup["p90"] <= setup["p99"] <= setup["max"]
    assert report["timeline"], details
    png = Path(report["files"]["png"])
    assert png.exists() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_basic_busy_cancel_and_compare(tmp_path):
    basic = _run(tmp_path, "basic", "--scenario", "basic", "--calls", "50", "--rate", "50",
                 "--pairings", "25")
    _assert_all_ok(basic, 50)
    assert basic["config"]["pairings"] == 25 and basic["config"]["sut"] == "sipmask"
    assert basic["calls"]["responses"]["200"] == 100  # INVITE and BYE
    assert basic["calls"]["responses"]["180"] == 50
    assert "scenario basic" in basic["_stdout"] and "us/call" in basic["_stdout"]

    busy = _run(tmp_path, "busy", "--scenario", "busy", "--calls", "20", "--rate", "40",
                "--pairings", "20")
    _assert_all_ok(busy, 20)
    assert busy["calls"]["responses"]["486"] == 20, busy["_details"]
    assert "200" not in busy["calls"]["responses"]
    assert busy["config"]["busy_pct"] == 100

    cancel = _run(tmp_path, "cancel", "--scenario", "cancel", "--calls", "20",
                  "--concurrency", "10", "--pairings", "20")
    _assert_all_ok(cancel, 20)
    assert cancel["calls"]["responses"]["487"] == 20, cancel["_details"]
    assert cancel["response_times_ms"]["cancel"]["count"] == 20
    assert cancel["config"]["mode"] == "concurrency"

    res = _loadtest("compare", str(tmp_path / "basic.json"), str(tmp_path / "busy.json"))
    assert res.returncode == 0, res.stderr
    assert "sut.cpu_us_per_call" in res.stdout and "B/A" in res.stdout
    res = _loadtest("compare", str(tmp_path / "basic.json"), str(tmp_path / "busy.json"),
                    "--max-ratio", "calls.ok=0.5")  # 20/50 = 0.4: passes
    assert res.returncode == 0, res.stdout + res.stderr
    res = _loadtest("compare", str(tmp_path / "basic.json"), str(tmp_path / "busy.json"),
                    "--min-ratio", "calls.ok=0.5")  # 0.4 < 0.5: fails
    assert res.returncode == 1 and "calls.ok" in res.stderr


def test_message_scenario_is_relayed_through_sessions(tmp_path):
    """Out-of-dialog MESSAGE (RFC 3428) crosses sipmask through the pairings: every one of
    them reaches the PBX-like callee and its 200 comes back."""
    report = _run(tmp_path, "message", "--scenario", "message", "--calls", "20", "--rate", "40",
                  "--pairings", "10")
    c = report["calls"]
    assert c["attempted"] == c["ok"] == 20 and c["failed"] == 0, report["_details"]
    assert c["responses"] == {"200": 20}, report["_details"]
    assert report["callee"]["calls"] == 20, report["_details"]


def test_target_a_running_sipmask_with_csv_and_sut_pid(tmp_path, sipmask_factory):
    """A load tester's set-up: the system is already running with its own pairing; the runner
    gets its address, the numbers (CSV) and the process to measure."""
    uas_port = free_port()
    sm = sipmask_factory([(B_PREFIX, [f"udp:127.0.0.1:{uas_port}"])], log_level="warning")
    csv = tmp_path / "numbers.csv"
    csv.write_text("# caller;virtual\n+15551230001;+15557770001\n")
    report = _run(tmp_path, "target", "--target", sm.udp_target, "--sut-pid", str(sm.proc.pid),
                  "--csv", str(csv), "--uas", f"127.0.0.1:{uas_port}", "--calls", "20",
                  "--rate", "40")
    assert report["config"]["sut"] == "external+pid"
    assert report["config"]["target"] == sm.udp_target
    assert report["config"]["pairings"] == 1
    _assert_all_ok(report, 20)


def test_bench_workers_runs_two_workers_on_one_store():
    """``loadtest/bench-workers``: two sipmask workers sharing one SQLite store, a SIPp caller
    each; every call completes and the figures it prints are there."""
    res = subprocess.run([str(ROOT / "loadtest" / "bench-workers"), "2", "40", "5"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    line = res.stdout.strip().splitlines()[-1]
    fields = dict(kv.split("=", 1) for kv in line.split())
    assert fields["workers"] == "2" and fields["ok"] == "80" and fields["failed"] == "0", line
    assert float(fields["workers_cpu_s"]) > 0 and int(fields["cpu_us_per_call"]) > 0, line
