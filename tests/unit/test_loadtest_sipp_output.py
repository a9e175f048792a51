"""Readers of SIPp's output files (loadtest/sipp_output.py) and the figures built from them
(loadtest/report.py), on files SIPp 3.6 wrote during real runs (tests/unit/loadtest_fixtures):

- stat.csv: 60 basic calls at 30 cps with the callee answering 486 to 30% of them at random
  (43 ok, 17 failed on the unexpected 486);
- rtt.csv: the first lines of a -trace_rtt file (rtds "setup" and "bye");
- counts.csv, error_codes.csv: 40 basic calls, 21 answered 486.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import report, sipp_output
from loadtest.sipp_output import RttSample

FIXTURES = Path(__file__).resolve().parent / "loadtest_fixtures"


# ------------------------------------------------------------------------------ stat CSV


def test_stat_csv_final_row_has_cumulative_counts():
    table = sipp_output.read_stat_csv(FIXTURES / "stat.csv")
    assert len(table.rows) == 5
    last = table.last
    assert last.count("TotalCallCreated") == 60
    assert last.count("SuccessfulCall") == 43
    assert last.count("FailedCall") == 17
    assert last.count("CurrentCall") == 0
    assert last.count("Retransmissions") == 0
    assert last.failures() == {"unexpected_message": 17}


def test_stat_csv_periodic_counts_and_times():
    table = sipp_output.read_stat_csv(FIXTURES / "stat.csv")
    second = table.rows[1]
    assert second.count("SuccessfulCall", cumulative=False) == 21
    assert second.count("FailedCall", cumulative=False) == 8
    assert second.time == pytest.approx(1795427831.458045)
    assert table.start == pytest.approx(1795427830.453, abs=0.01)
    assert second.elapsed_s == pytest.approx(1.0, abs=0.01)
    assert second.target_rate == 30


def test_stat_csv_drops_a_torn_last_line_and_survives_a_missing_file(tmp_path):
    text = (FIXTURES / "stat.csv").read_text()
    torn = tmp_path / "stat.csv"
    torn.write_text(text + text.splitlines()[-1][:40])
    assert len(sipp_output.read_stat_csv(torn).rows) == 5
    assert sipp_output.read_stat_csv(tmp_path / "missing.csv").last is None


def test_stat_follower_reads_what_was_appended(tmp_path):
    lines = (FIXTURES / "stat.csv").read_text().splitlines(keepends=True)
    path = tmp_path / "stat.csv"
    follower = sipp_output.StatFollower(path)
    assert follower.poll() is None  # not written yet
    path.write_text("".join(lines[:2]) + lines[2][:30])  # header, one row, half a row
    assert follower.poll().count("TotalCallCreated") == 0
    with open(path, "a") as f:
        f.write(lines[2][30:] + "".join(lines[3:]))
    assert follower.poll().count("SuccessfulCall") == 43
    assert follower.previous is not None


def test_parse_duration_and_epoch():
    assert sipp_output.parse_duration("00:01:02:500000") == pytest.approx(62.5)
    assert sipp_output.parse_duration("01:00:00") == 3600
    assert sipp_output.parse_duration("junk") is None
    assert sipp_output.parse_epoch("2026-11-23\t09:57:10.454270\t1795427830.454270") == \
        pytest.approx(1795427830.45427)
    assert sipp_output.parse_epoch("") is None


# ------------------------------------------------------------------------------- rtt CSV


def test_rtt_csv_samples():
    samples = sipp_output.read_rtt_csv(FIXTURES / "rtt.csv")
    assert len(samples) == 11
    assert samples[0] == RttSample(40.001, 4.0, "setup")
    assert samples[1].rtd == "bye"
    assert {s.rtd for s in samples} == {"setup", "bye"}


def test_latency_summary_by_rtd():
    summary = report.latency_summary(sipp_output.read_rtt_csv(FIXTURES / "rtt.csv"))
    assert set(summary) == {"bye", "setup"}
    assert summary["setup"]["count"] == 6
    assert summary["setup"]["p50"] == 4.0
    assert summary["bye"]["max"] == 0.0


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert report.percentile(values, 50) == 50
    assert report.percentile(values, 90) == 90
    assert report.percentile(values, 99) == 99
    assert report.percentile(values, 100) == 100
    assert report.percentile([7.0], 99) == 7.0
    assert report.percentile([], 50) is None


# ------------------------------------------------------------------ counts, error codes


def test_counts_csv_last_line_and_responses_by_code():
    counts = sipp_output.read_counts_csv(FIXTURES / "counts.csv")
    assert counts["0_INVITE_Sent"] == 40
    assert counts["2_180_Unexp"] == 21
    assert sipp_output.responses_by_code(counts) == {"100": 40, "180": 19, "200": 38}


def test_error_codes_are_counted_over_periods():
    assert sipp_output.read_error_codes(FIXTURES / "error_codes.csv") == {"486": 21}


def test_error_codes_missing_file(tmp_path):
    assert sipp_output.read_error_codes(tmp_path / "none.csv") == {}


# ---------------------------------------------------------------------- timeline, compare


def test_timeline_rates_per_period_and_latency_window():
    table = sipp_output.read_stat_csv(FIXTURES / "stat.csv")
    samples = sipp_output.read_rtt_csv(FIXTURES / "rtt.csv")
    points = report.timeline(table, samples, "setup", [(0.0, 1.0), (1.0, 1.25), (2.0, 1.5)])
    assert [p["cps"] for p in points[:2]] == pytest.approx([21.0, 22.0], abs=0.2)
    assert points[0]["failed"] == 8
    assert points[0]["p50_ms"] == 4.0  # all fixture samples end in the first second
    assert points[1]["p50_ms"] is None
    assert points[0]["sut_cpu_pct"] == pytest.approx(25.0, abs=1)


def _report(cps: float, cpu: float | None) -> dict:
    return {"schema": report.SCHEMA, "calls": {"ok": 100, "failed": 0, "attempted": 100},
            "rate": {"cps": cps}, "sut": {"cpu_us_per_call": cpu},
            "response_times_ms": {"setup": {"p50": 4, "p90": 4, "p99": 8}}}


def test_compare_ratios(tmp_path):
    a, b = _report(100.0, 400.0), _report(150.0, 300.0)
    rows = {r["metric"]: r for r in report.compare(a, b)}
    assert rows["rate.cps"]["ratio"] == pytest.approx(1.5)
    assert rows["sut.cpu_us_per_call"]["ratio"] == pytest.approx(0.75)
    assert rows["calls.failed"]["ratio"] is None  # 0 in A
    assert rows["sut.rss_peak_kib"]["a"] is None
    text = report.render_compare(list(rows.values()), "a.json", "b.json")
    assert "0.750  better" in text and "1.500  better" in text


def test_load_refuses_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a loadtest report"):
        report.load(path)
