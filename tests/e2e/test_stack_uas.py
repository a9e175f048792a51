"""Issue 2 acceptance: SIPp's built-in ``uac`` scenario completes 100 calls against a tiny UAS
built on sipmask's SIP stack, over UDP and over TCP, with 0 failed calls and 0 unexpected messages."""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        return int(port)


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_sipp_builtin_uac_completes_100_calls_against_stack_uas(transport: str, tmp_path: Path) -> None:
    assert shutil.which("sipp"), "SIPp (Debian sip-tester) is required: scripts/system-deps.sh installs it"
    port = _free_port()
    proto = "udp" if transport == "u1" else "tcp"
    uas = subprocess.Popen(
        [sys.executable, "-m", "loadtest.uas", "--listen", f"{proto}:127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert uas.stdout is not None
        assert uas.stdout.readline().strip() == "ready"
        stat = tmp_path / "stat.csv"
        sipp = subprocess.run(
            ["sipp", "-sn", "uac", f"127.0.0.1:{port}", "-t", transport, "-i", "127.0.0.1", "-p", str(_free_port()),
             "-m", "100", "-r", "50", "-l", "20", "-nostdin", "-timeout", "60s", "-timeout_error",
             "-trace_stat", "-stf", str(stat), "-trace_err", "-error_file", str(tmp_path / "err.log")],
            cwd=tmp_path, capture_output=True, text=True, timeout=90,
        )
        rows = list(csv.reader(stat.read_text().splitlines(), delimiter=";"))
        header, last = rows[0], rows[-1]
        col = {name: i for i, name in enumerate(header)}
        assert sipp.returncode == 0, sipp.stdout[-2000:] + sipp.stderr[-2000:]
        assert int(last[col["SuccessfulCall(C)"]]) == 100
        assert int(last[col["FailedCall(C)"]]) == 0
        assert int(last[col["FailedUnexpectedMessage(C)"]]) == 0
    finally:
        uas.terminate()
        out, err = uas.communicate(timeout=10)
    assert uas.returncode == 0, err
    assert "Traceback" not in err and "internal error" not in err
