"""Logs and CDRs of real calls carry no real number, at DEBUG level, in any spelling.

sipmask runs as a subprocess with ``level = "debug"`` and JSON logs; the calls cover an
answered call, a busy callee and an unknown caller, so every code path that logs a call
(received, routed, answered, rejected, ended) has had its chance to leak.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    CALLEE_IP,
    assert_sipp_ok,
    number_forms,
)

pytestmark = pytest.mark.e2e

STRANGER = "+15553334444"


def _assert_no_number(text: str, where: str) -> None:
    for number in (A_REAL, B_REAL, STRANGER):
        for form in number_forms(number):
            assert form not in text, f"{form} (a real number) appears in {where}"


def test_debug_logs_and_cdrs_hold_no_real_number(sipp, sipmask_factory, tmp_path):
    callee = sipp.start_uas("uas_basic.xml", calls=1)
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])])
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL, calls=1)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)

    # an unknown caller: rejected, and the number it called from must not be logged either
    csv = tmp_path / "stranger.csv"
    csv.write_text(f"SEQUENTIAL\n{STRANGER};{A_VIRTUAL};\n")
    stranger = sipp.run_uac("uac_rejected.xml", sm.udp_target, service="unused",
                            name="stranger", calls=1, extra=["-inf", str(csv)])
    assert_sipp_ok(stranger)

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # CDRs are flushed by a periodic task
        with sqlite3.connect(sm.db) as conn:
            if conn.execute("SELECT count(*) FROM cdrs").fetchone()[0] >= 1:
                break
        time.sleep(0.1)
    sm.stop()

    log = sm.stderr()
    events = sm.log_events()
    names = [e.get("event") for e in events]
    # the log is not empty: the events the issue names are there, with debug lines besides
    assert "call.received" in names and "call.answered" in names and "call.ended" in names, names
    assert any(e.get("level") == "debug" for e in events), "no debug line was logged"
    # the message trace is there (whole messages, numbers replaced by tokens)
    traced = [e for e in events if e.get("event") in ("sip.recv", "sip.sent")]
    assert any("INVITE sip:#n_" in str(e.get("message")) for e in traced), traced[:3]
    ended = [e for e in events if e.get("event") == "call.ended"]
    assert any(e.get("cause") for e in ended), ended
    assert any("duration_s" in e or "duration" in e for e in ended), ended
    _assert_no_number(log, "sipmask's DEBUG log")

    with sqlite3.connect(sm.db) as conn:
        rows = conn.execute("SELECT * FROM cdrs").fetchall()
    assert rows, "no CDR was written"
    _assert_no_number(repr(rows), "the CDR table")
