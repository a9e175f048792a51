"""The runner's pieces that need no SIPp: options, seeded numbers, CSV files, progress lines,
/proc sampling and the PNG."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from loadtest import catalog, procstat
from loadtest.cli import parser
from loadtest.progress import Progress, Snapshot
from loadtest.runner import Ramp, RunError, RunOptions, _read_pairs
from loadtest.sut import CALLEE_PREFIX, pairings, write_csv


def test_ramp_parse_and_rate():
    ramp = Ramp.parse("10:200:60")
    assert (ramp.start, ramp.end, ramp.seconds) == (10, 200, 60)
    assert ramp.rate_at(0) == 10
    assert ramp.rate_at(30) == 105
    assert ramp.rate_at(600) == 200
    for bad in ("10:200", "a:b:c", "10:200:0"):
        with pytest.raises(ValueError):
            Ramp.parse(bad)


def test_one_load_shape_only():
    with pytest.raises(RunError, match="one of"):
        RunOptions(rate=10, concurrency=5).check()
    with pytest.raises(RunError, match="together"):
        RunOptions(caller="+15551230001").check()
    with pytest.raises(KeyError, match="known"):
        RunOptions(scenario="nope").check()
    assert RunOptions(concurrency=5).mode == "concurrency"
    assert RunOptions(ramp=Ramp(1, 2, 3)).mode == "ramp"
    assert RunOptions().mode == "rate"


def test_cli_parses_addresses_and_shapes():
    ns = parser().parse_args(["run", "--sipmask", "[::1]:0", "--uas", "127.0.0.3:5090",
                              "--ramp", "5:50:10", "--scenario", "busy"])
    assert ns.sipmask == ("::1", 0) and ns.uas == ("127.0.0.3", 5090)
    assert ns.ramp == Ramp(5, 50, 10)
    with pytest.raises(SystemExit):
        parser().parse_args(["run", "--uas", "localhost"])


def test_seeded_numbers_are_distinct_and_routed_to_the_callee():
    pairs = list(pairings(1000, pool=10))
    assert len({p.caller for p in pairs}) == 1000
    assert len({p.virtual for p in pairs}) == 10
    assert all(p.callee.startswith(CALLEE_PREFIX) for p in pairs)
    assert pairs[0].caller == "+15551000000" and pairs[999].callee == "+15552000999"
    assert not {p.caller for p in pairs} & {p.virtual for p in pairs}
    with pytest.raises(ValueError):
        list(pairings(0))


def test_csv_round_trip(tmp_path):
    path = write_csv(tmp_path / "pairs.csv", [("+15551000000", "+15557000000")])
    assert path.read_text() == "SEQUENTIAL\n+15551000000;+15557000000;\n"
    assert _read_pairs(path) == [("+15551000000", "+15557000000")]
    plain = tmp_path / "plain.csv"
    plain.write_text("# caller;virtual\n+1;+2\n\n+3;+4\n")
    assert _read_pairs(plain) == [("+1", "+2"), ("+3", "+4")]
    (tmp_path / "empty.csv").write_text("SEQUENTIAL\n")
    with pytest.raises(RunError):
        _read_pairs(tmp_path / "empty.csv")


def test_progress_lines_and_bar():
    out = io.StringIO()
    p = Progress("lines", stream=out, every_s=0)
    p.update(Snapshot(1.0, 10, 9, 1, 2, 9.5, target=100))
    assert out.getvalue() == ("loadtest:    1.0s  calls 10/100  ok 9  failed 1  in flight 2  "
                              "9.5 cps\n")
    out = io.StringIO()
    p = Progress("bar", stream=out, width=10)
    p.update(Snapshot(1.0, 50, 50, 0, 0, 50.0, target=100))
    p.close()
    assert "[#####.....]  50%" in out.getvalue() and out.getvalue().endswith("\n")


def test_scenario_files_exist():
    for s in catalog.SCENARIOS.values():
        assert s.uac_path.exists() and s.uas_path.exists(), s


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_procstat_reads_this_process():
    sum(i * i for i in range(200_000))  # some CPU
    s = procstat.sample_tree(os.getpid())
    assert s.cpu_s > 0 and s.rss_kib > 1000 and s.processes >= 1
    assert procstat.sample_tree(2**22 + 12345) == procstat.TreeSample(0.0, 0, 0)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from loadtest.plot import plot_timeline

    points = [{"t": t, "period_s": 1.0, "cps_attempted": 10.0, "cps": 9.0, "failed": t % 2,
               "in_flight": 1, "p50_ms": 4.0, "p99_ms": 8.0, "sut_cpu_pct": 12.5}
              for t in range(1, 6)]
    path = plot_timeline(points, tmp_path / "x.png", "title")
    assert path.read_bytes()[:4] == b"\x89PNG"
