"""The end of calls and of unwanted dialogs (proxy/b2bua/teardown.py): BYE and the CDR, the
maximum duration, 2xx responses after the call or from unknown dialogs (RFC 3261 §13.2.2.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.sip.message import Request, Response
from proxy.sip.transaction import Address

from .b2bua_harness import (
    CALLEE,
    CALLEE_V,
    GW1,
    A,
    Harness,
    a_tag,
    answered_call,
    everything,
    in_dialog_request,
    only,
    response_to,
)


@pytest.fixture()
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_basic_call_relays_answer_ack_and_bye_and_frees_everything(h: Harness) -> None:
    a_inv, b_inv = answered_call(h)
    a_side = everything(h.sent, A)
    assert CALLEE.encode() not in a_side and b"5559990001" not in a_side and b"127.0.0.3" not in a_side
    out = h.feed(
        "BYE sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKbye1\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
        A,
    )
    assert only(out, Response, status=200)[0][1] == A
    (b_bye, dest), = only(out, Request, method="BYE")
    assert dest.host == "127.0.0.3" and b_bye.call_id == b_inv.call_id
    h.feed(response_to(b_bye, 200, "OK"), GW1)
    assert h.b2b.active_calls == 0 and not h.b2b.dialogs
    h.advance(64)
    assert sum(h.layer.counts.values()) == 0, h.layer.counts
    h.service.flush()
    cdrs = h.store.list_cdrs()
    assert [c.outcome for c in cdrs] == ["completed"]


def test_max_duration_hangs_up_both_legs(h: Harness) -> None:
    answered_call(h)
    out = h.advance(601)
    byes = only(out, Request, method="BYE")
    assert {d.host for _, d in byes} == {"127.0.0.2", "127.0.0.3"}
    assert h.b2b.active_calls == 0


def test_after_the_call_ended_a_2xx_retransmission_is_reacked_and_another_forks_2xx_released(h: Harness) -> None:
    """The ended call is let go at BYE; its B-leg INVITE transaction still lingers (RFC 6026)."""
    _, b_inv = answered_call(h)
    out = h.feed(in_dialog_request(h, "BYE", "byeF", 2), A)
    (b_bye, _), = only(out, Request, method="BYE")
    h.feed(response_to(b_bye, 200, "OK"), GW1)
    assert h.b2b.active_calls == 0
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)  # the same 2xx again: ACK only
    assert [m.method for m, _ in only(out, Request)] == ["ACK"]
    out = h.feed(response_to(b_inv, 200, "OK", to_tag="fork2"), GW1)
    assert sorted(m.method for m, _ in only(out, Request)) == ["ACK", "BYE"]
    assert all(m.to_tag == "fork2" for m, _ in only(out, Request))


def _stray_2xx(call_id: str, contact: str, extra: str = "") -> str:
    """A 2xx to an INVITE of ours that no transaction or dialog of the B2BUA knows."""
    return (
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgone1;rport=5060\n"
        f"From: <sip:{CALLEE_V}@127.0.0.1>;tag=ourtag\nTo: <sip:{CALLEE}@127.0.0.3>;tag=fartag\n"
        f"Call-ID: {call_id}\nCSeq: 7 INVITE\nContact: <{contact}>\n{extra}Content-Length: 0\n\n"
    )


def test_13_2_2_4_a_2xx_of_an_unknown_dialog_is_acked_and_released_with_bye(h: Harness) -> None:
    """A 2xx whose client transaction is gone and whose dialog is unknown: ACK it and send BYE,
    both built from the response itself, to its Contact when that is an IP address."""
    out = h.feed(_stray_2xx("gone-1", f"sip:{CALLEE}@127.0.0.3:5082", "Record-Route: <sip:127.0.0.5:5070;lr>\n"), GW1)
    (ack, ack_dest), = only(out, Request, method="ACK")
    (bye, bye_dest), = only(out, Request, method="BYE")
    # the route set (Record-Route reversed) is the way in: its first hop is where they go
    assert ack_dest == bye_dest == Address("udp", "127.0.0.5", 5070)
    for req in (ack, bye):
        assert req.uri == f"sip:{CALLEE}@127.0.0.3:5082"
        assert req.call_id == "gone-1" and req.from_tag == "ourtag" and req.to_tag == "fartag"
        assert req.headers.get("route") == "<sip:127.0.0.5:5070;lr>"
        assert req.top_via.host == "127.0.0.1" and req.branch != "z9hG4bKgone1"
    assert (ack.cseq.number, ack.cseq.method) == (7, "ACK")
    assert (bye.cseq.number, bye.cseq.method) == (8, "BYE")
    assert ack.branch != bye.branch
    assert h.b2b.active_calls == 0


def test_13_2_2_4_a_stray_2xx_with_a_host_name_contact_is_released_at_its_source(h: Harness) -> None:
    out = h.feed(_stray_2xx("gone-2", f"sip:{CALLEE}@pbx.example.com"), GW1)
    assert sorted((m.method, d) for m, d in only(out, Request)) == [("ACK", GW1), ("BYE", GW1)]


def test_13_2_2_4_another_forks_2xx_after_the_ended_calls_transaction_is_gone_is_released(h: Harness) -> None:
    _, b_inv = answered_call(h)
    out = h.feed(in_dialog_request(h, "BYE", "byeG", 2), A)
    (b_bye, _), = only(out, Request, method="BYE")
    h.feed(response_to(b_bye, 200, "OK"), GW1)
    h.advance(64)  # RFC 6026 Timer M: the B-leg INVITE transaction is gone
    assert sum(h.layer.counts.values()) == 0, h.layer.counts
    out = h.feed(response_to(b_inv, 200, "OK", to_tag="fork3"), GW1)
    requests = only(out, Request)
    assert sorted(m.method for m, _ in requests) == ["ACK", "BYE"]
    assert all(m.to_tag == "fork3" and m.call_id == b_inv.call_id and d == GW1 for m, d in requests)


def test_a_2xx_of_a_known_dialog_after_its_transaction_is_gone_starts_nothing(h: Harness) -> None:
    """The call is up; its B-leg INVITE transaction has ended (Timer M): a late copy of the 2xx
    is neither ACKed again nor taken for a stray (the dialog is ours)."""
    _, b_inv = answered_call(h)
    h.advance(40)
    assert h.b2b.active_calls == 1
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert not only(out, Request)
    assert h.b2b.active_calls == 1
