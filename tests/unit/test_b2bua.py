"""The B2BUA's dispatch (proxy/b2bua/b2bua.py), and what every flow must leave behind: nothing
for the cyclic GC. The flows themselves are tested in test_b2bua_<flow>.py."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from proxy.sip.message import Request, Response

from . import test_b2bua_in_dialog as in_dialog_tests
from . import test_b2bua_invite as invite_tests
from . import test_b2bua_teardown as teardown_tests
from .b2bua_harness import A, Harness, only


@pytest.fixture()
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_options_out_of_dialog_is_answered_locally(h: Harness) -> None:
    out = h.feed(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKopt1\n"
        "From: <sip:ping@127.0.0.2>;tag=p1\nTo: <sip:127.0.0.1>\nCall-ID: ping-1\nCSeq: 1 OPTIONS\n"
        "Max-Forwards: 70\nContent-Length: 0\n\n",
        A,
    )
    (ok, dest), = only(out, Response)
    assert (ok.status, dest) == (200, A)
    assert "INVITE" in (ok.headers.get("allow") or "")
    assert not only(out, Request), "an OPTIONS ping is not relayed anywhere"


@pytest.mark.parametrize("flow", [
    teardown_tests.test_basic_call_relays_answer_ack_and_bye_and_frees_everything,
    invite_tests.test_busy_is_relayed,
    invite_tests.test_cancel_before_any_provisional_waits_for_one,
    invite_tests.test_ring_timeout_answers_480_and_cancels_b,
    in_dialog_tests.test_bye_crossing_a_reinvite_frees_both_legs,
    invite_tests.test_failover_on_503_goes_to_next_gateway,
])
def test_a_finished_call_leaves_nothing_for_the_cyclic_gc(h: Harness, flow: object) -> None:
    """Calls are freed by reference counting once their transactions end: the cyclic GC's
    pauses grow with what it has to scan (at 1,000 calls/s a full pass over lingering calls
    took ~0.9 s and made peers retransmit)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        flow(h)  # type: ignore[operator]
        h.advance(200)  # every transaction timer and the ring timer have fired
        gc.collect()
        left = sorted({type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("proxy.")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


@pytest.mark.parametrize("method, status", [("FOO", 501), ("REGISTER", 405), ("SUBSCRIBE", 405)])
def test_8_2_1_an_unknown_method_is_501_and_a_known_unsupported_one_405(h: Harness, method: str,
                                                                          status: int) -> None:
    out = h.feed(
        f"{method} sip:127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKm{method}\n"
        "From: <sip:probe@127.0.0.2>;tag=p\nTo: <sip:127.0.0.1:5060>\nCall-ID: m-1\n"
        f"CSeq: 1 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n", A)
    (reply, dest), = [(m, d) for m, d in only(out, Response) if m.status >= 200]
    assert reply.status == status and dest == A
    assert "INVITE" in (reply.headers.get("allow") or "")
