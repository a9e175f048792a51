"""A session's call policy through a real ``sipmask run`` between SIPp peers (sessions made
with ``sipmask session create`` before the start): a call inside its calling window is bridged
and one outside it gets the uniform 404, a one-way session refuses the other direction, a
single-use session refuses its second call, and a session's max_call_s ends a call."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    B_VIRTUAL,
    CALLEE_IP,
    assert_isolated,
    assert_sipp_ok,
    find,
    free_port,
)

pytestmark = pytest.mark.e2e

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _session(sm, *policy: str) -> str:
    res = sm.cli("session", "create", "--a", A_REAL, "--a-virtual", A_VIRTUAL, "--b", B_REAL,
                 "--b-virtual", B_VIRTUAL, *policy)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.split()[1]


def _sipmask(sipmask_factory, callee_port: int, *policy: str):
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee_port}"])], pairing=False,
                         start=False)
    _session(sm, *policy)
    sm.start()
    return sm


def _rejected(sipp, sm, tmp_path, name: str = "caller-rejected") -> list:
    """One call from A to A_VIRTUAL expected to be refused: its final responses."""
    csv = tmp_path / f"{name}.csv"
    csv.write_text(f"SEQUENTIAL\n{A_REAL};{A_VIRTUAL};\n")
    caller = sipp.run_uac("uac_rejected.xml", sm.udp_target, service="unused", name=name,
                          extra=["-inf", str(csv)])
    assert_sipp_ok(caller)
    return [(m.status, m.reason) for m in caller.messages() if m.is_response
            and (m.status or 0) >= 200]


def _half_day_without_now() -> tuple[str, str]:
    """Today (UTC) and the half of it that is not now (waits out the minutes around noon
    and midnight, so the call cannot cross into it)."""
    now = datetime.now(UTC)
    minute = now.hour * 60 + now.minute
    if minute in (719, 1439):
        time.sleep(61 - now.second)
        now = datetime.now(UTC)
        minute = now.hour * 60 + now.minute
    span = "12:00-24:00" if minute < 720 else "00:00-12:00"
    return _DAYS[now.weekday()], span


def test_a_call_inside_its_window_is_bridged(sipp, sipmask_factory):
    callee = sipp.start_uas("uas_basic.xml")
    sm = _sipmask(sipmask_factory, callee.port, "--window", "mon-sun 00:00-24:00 UTC",
                  "--window", "mon 08:00-09:00 Asia/Singapore")
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    assert find(callee.messages(), method="INVITE", request=True)
    assert_isolated(caller, callee)


def test_a_call_outside_its_window_gets_the_uniform_404(sipp, sipmask_factory, tmp_path):
    callee_port = free_port(CALLEE_IP)
    day, span = _half_day_without_now()
    sm = _sipmask(sipmask_factory, callee_port, "--window", f"{day} {span} UTC")
    assert _rejected(sipp, sm, tmp_path) == [(404, "Not Found")]
    events = [e for e in sm.log_events() if e.get("event") == "call.rejected"]
    assert [e.get("reason") for e in events] == ["outside_window"]


def test_a_one_way_session_refuses_the_other_direction(sipp, sipmask_factory, tmp_path):
    callee_port = free_port(CALLEE_IP)
    sm = _sipmask(sipmask_factory, callee_port, "--direction", "b_to_a")  # A may not call
    assert _rejected(sipp, sm, tmp_path) == [(404, "Not Found")]
    events = [e for e in sm.log_events() if e.get("event") == "call.rejected"]
    assert [e.get("reason") for e in events] == ["wrong_direction"]


def test_a_single_use_sessions_second_call_gets_the_uniform_404(sipp, sipmask_factory,
                                                                tmp_path):
    callee = sipp.start_uas("uas_basic.xml")
    sm = _sipmask(sipmask_factory, callee.port, "--single-use")
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    assert _rejected(sipp, sm, tmp_path, "caller-again") == [(404, "Not Found")]
    deadline = time.monotonic() + 5
    while " closed " not in (out := sm.cli("session", "list").stdout):
        assert time.monotonic() < deadline, out  # the close reaches the store at a flush
        time.sleep(0.2)


def test_a_sessions_max_call_s_ends_the_call(sipp, sipmask_factory):
    callee = sipp.start_uas("uas_held.xml")
    sm = _sipmask(sipmask_factory, callee.port, "--max-call", "2")
    started = time.monotonic()
    caller = sipp.run_uac("uac_bye_wait.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    elapsed = time.monotonic() - started
    assert_sipp_ok(caller, callee)
    assert find(caller.messages(), method="BYE", request=True)
    assert find(callee.messages(), method="BYE", request=True)
    assert 1.5 < elapsed < 9, elapsed  # the config's limit is hours; uas_held waits 10 s
    ended = [e for e in sm.log_events() if e.get("event") == "call.ended"]
    assert [e.get("cause") for e in ended] == ["max_duration"]
