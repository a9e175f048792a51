"""RFC 3261 §17.2.3 / §9.2 matching, §8.2.2.2 merged requests, §18.2 Via stamping and response
routing (with RFC 3581 rport), malformed requests, and leak checks over whole flows."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from proxy.sip.message import Request, Response, build_response
from proxy.sip.parser import parse_message
from proxy.sip.transaction import (
    Address,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionState,
    TransactionTerminated,
    build_cancel,
)

from .test_sip_transaction_support import (
    PEER_TCP,
    PEER_UDP,
    make_layer,
    make_request,
    reply,
    run_until,
    wire,
)

ZERO = {"client_invite": 0, "client_non_invite": 0, "server_invite": 0, "server_non_invite": 0}


def _txn(events: Sequence[object]) -> ServerTransaction:
    (event,) = events
    assert isinstance(event, RequestReceived) and event.transaction is not None
    return event.transaction


# ------------------------------------------------------------------------ §17.2.3 / §9.2


def test_17_2_3_same_branch_other_sent_by_is_another_transaction() -> None:
    layer = make_layer()
    a = _txn(layer.receive(make_request(), PEER_UDP, 0.0))
    b = _txn(layer.receive(make_request(sent_by="192.0.2.99:5060", call_id="c2"), PEER_UDP, 0.0))
    assert a is not b and layer.counts["server_invite"] == 2


def test_17_2_3_same_branch_other_method_is_another_transaction() -> None:
    layer = make_layer()
    a = _txn(layer.receive(make_request("OPTIONS"), PEER_UDP, 0.0))
    b = _txn(layer.receive(make_request("INFO", to_tag="x", cseq=2), PEER_UDP, 0.0))
    assert a is not b


def test_9_2_cancel_matched_to_invite_but_forms_own_transaction() -> None:
    layer = make_layer()
    invite_txn = _txn(layer.receive(make_request(), PEER_UDP, 0.0))
    cancel = wire(build_cancel(make_request()))
    assert isinstance(cancel, Request)
    (event,) = layer.receive(cancel, PEER_UDP, 1.0)
    assert isinstance(event, RequestReceived)
    assert event.cancelled is invite_txn
    cancel_txn = event.transaction
    assert cancel_txn is not None and cancel_txn is not invite_txn
    assert cancel_txn.method == "CANCEL" and cancel_txn.state is TransactionState.TRYING
    assert layer.find_server_invite(cancel) is invite_txn
    # TU: 200 to the CANCEL, 487 to the INVITE, and the peer ACKs the 487
    layer.take_outgoing()
    layer.send_response(cancel_txn, build_response(cancel, 200, to_tag="u1"), 1.0)
    layer.send_response(invite_txn, build_response(invite_txn.request, 487, to_tag="u1"), 1.0)
    assert [s.message.status for s in layer.take_outgoing()] == [200, 487]  # type: ignore[union-attr]
    assert layer.receive(make_request("ACK", to_tag="u1"), PEER_UDP, 1.1) == []
    assert invite_txn.state is TransactionState.CONFIRMED
    run_until(layer, 100.0)
    assert layer.counts == ZERO


def test_9_2_cancel_for_unknown_invite() -> None:
    layer = make_layer()
    (event,) = layer.receive(make_request("CANCEL", branch="z9hG4bK-nope"), PEER_UDP, 0.0)
    assert isinstance(event, RequestReceived)
    assert event.transaction is not None and event.cancelled is None


def test_17_2_3_rfc2543_matching_without_magic_cookie() -> None:
    layer = make_layer()
    txn = _txn(layer.receive(make_request(branch=None), PEER_UDP, 0.0))
    assert txn.branch == ""
    layer.take_outgoing()
    # retransmission: same Request-URI, tags, Call-ID, CSeq and top Via
    assert layer.receive(make_request(branch=None), PEER_UDP, 0.5) == []
    assert [s.message.status for s in layer.take_outgoing()] == [100]  # type: ignore[union-attr]
    # old-style branch (no cookie) is matched the same way
    legacy = _txn(layer.receive(make_request(branch="1234", call_id="c9"), PEER_UDP, 0.0))
    assert layer.receive(make_request(branch="1234", call_id="c9"), PEER_UDP, 0.1) == []
    # a different Call-ID is a new transaction
    other = _txn(layer.receive(make_request(branch=None, call_id="c3"), PEER_UDP, 0.6))
    assert other is not txn and legacy is not txn
    # CANCEL (§9.2 with RFC 2543 rules)
    (event,) = layer.receive(make_request("CANCEL", branch=None), PEER_UDP, 0.7)
    assert isinstance(event, RequestReceived) and event.cancelled is txn
    # ACK for the 486 carries the response's To tag
    layer.send_response(txn, build_response(txn.request, 486, to_tag="u7"), 1.0)
    assert layer.receive(make_request("ACK", branch=None, to_tag="wrong"), PEER_UDP, 1.1) != []
    assert txn.state is TransactionState.COMPLETED
    assert layer.receive(make_request("ACK", branch=None, to_tag="u7"), PEER_UDP, 1.2) == []
    assert txn.state is TransactionState.CONFIRMED  # type: ignore[comparison-overlap]


def test_17_2_3_rfc2543_reinvite_ack_matching() -> None:
    layer = make_layer()
    txn = _txn(layer.receive(make_request(branch=None, to_tag="u1", cseq=5), PEER_UDP, 0.0))
    layer.send_response(txn, build_response(txn.request, 491), 0.1)
    assert layer.receive(make_request("ACK", branch=None, to_tag="u1", cseq=5), PEER_UDP, 0.2) == []
    assert txn.state is TransactionState.CONFIRMED


# ------------------------------------------------------------------------ §8.2.2.2


def test_8_2_2_2_merged_request_answered_482_without_event() -> None:
    layer = make_layer()
    _txn(layer.receive(make_request(), PEER_UDP, 0.0))
    layer.take_outgoing()
    # same From tag, Call-ID and CSeq, no To tag, another branch (it forked and came back)
    merged = make_request(branch="z9hG4bK-other-path", sent_by="198.51.100.2:5060")
    assert layer.receive(merged, PEER_UDP, 0.1) == []
    (send,) = layer.take_outgoing()
    assert isinstance(send.message, Response) and send.message.status == 482
    assert send.message.reason == "Loop Detected" and send.message.to_tag
    assert layer.counts["server_invite"] == 1
    # with a To tag it is not a merged request (in-dialog): a transaction of its own
    _txn(layer.receive(make_request("INFO", branch="z9hG4bK-x", to_tag="t", cseq=1), PEER_UDP, 0.2))


# ------------------------------------------------------------------------ §18.2.1 / §18.2.2 / RFC 3581


def test_18_2_1_received_added_when_sent_by_host_differs() -> None:
    layer = make_layer()
    request = make_request(sent_by="pc33.example.com:5070")
    txn = _txn(layer.receive(request, Address("udp", "192.0.2.33", 5070), 0.0))
    assert request.top_via.params["received"] == "192.0.2.33"
    assert request.headers.get("via") == "SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bK-1;received=192.0.2.33"
    # §18.2.2: to the received address, the sent-by port
    assert txn.response_dest == Address("udp", "192.0.2.33", 5070)
    (trying,) = layer.take_outgoing()
    assert trying.dest == Address("udp", "192.0.2.33", 5070)
    assert isinstance(trying.message, Response)
    assert trying.message.top_via.params["received"] == "192.0.2.33"


def test_18_2_1_no_received_when_sent_by_matches_source() -> None:
    layer = make_layer()
    request = make_request()
    _txn(layer.receive(request, PEER_UDP, 0.0))
    assert "received" not in request.top_via.params
    assert request.headers.get("via") == "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1"


def test_rfc3581_rport_filled_and_used_for_response() -> None:
    layer = make_layer()
    request = make_request(sent_by="192.0.2.10:5060", via_params=";rport")
    source = Address("udp", "203.0.113.9", 34567)  # behind a NAT
    txn = _txn(layer.receive(request, source, 0.0))
    params = request.top_via.params
    assert params["rport"] == "34567" and params["received"] == "203.0.113.9"
    assert txn.response_dest == source
    assert [s.dest for s in layer.take_outgoing()] == [source]


def test_rfc3581_rport_forces_received_even_when_host_matches() -> None:
    layer = make_layer()
    request = make_request(via_params=";rport")
    _txn(layer.receive(request, Address("udp", "192.0.2.10", 5062), 0.0))
    assert request.top_via.params == {"branch": "z9hG4bK-1", "rport": "5062", "received": "192.0.2.10"}


def test_18_2_2_udp_response_to_sent_by_port_or_5060() -> None:
    layer = make_layer()
    txn = _txn(layer.receive(make_request(sent_by="client.example.com"), Address("udp", "192.0.2.44", 6000), 0.0))
    assert txn.response_dest == Address("udp", "192.0.2.44", 5060)


def test_18_2_2_reliable_response_on_the_connection() -> None:
    layer = make_layer()
    txn = _txn(layer.receive(make_request(transport="TCP", sent_by="client.example.com:5060"), PEER_TCP, 0.0))
    assert txn.response_dest is PEER_TCP
    assert [s.dest for s in layer.take_outgoing()] == [PEER_TCP]


def test_18_2_1_stamping_keeps_other_via_values() -> None:
    layer = make_layer()
    raw = (
        "OPTIONS sip:x@sipmask SIP/2.0\r\n"
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-p;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-u\r\n"
        "Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-v\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:x@sipmask>\r\nCall-ID: v\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    request = parse_message(raw.encode())
    assert isinstance(request, Request)
    _txn(layer.receive(request, Address("udp", "192.0.2.5", 5099), 0.0))
    assert request.headers.get_all("via") == [
        "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK-p;rport=5099;received=192.0.2.5, "
        "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-u",
        "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-v",
    ]
    assert [v.host for v in request.via] == ["proxy.example.com", "10.0.0.1", "10.0.0.2"]


# ------------------------------------------------------------------------ malformed input


def _malformed(header: str, value: str, method: str = "INVITE") -> Request:
    lines = {
        "Via": "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-bad",
        "From": "<sip:alice@example.com>;tag=a1",
        "To": "<sip:bob@example.com>",
    }
    lines[header] = value
    raw = (
        f"{method} sip:x@sipmask SIP/2.0\r\nVia: {lines['Via']}\r\nFrom: {lines['From']}\r\n"
        f"To: {lines['To']}\r\nCall-ID: m1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(raw.encode())
    assert isinstance(request, Request)
    return request


@pytest.mark.parametrize(
    ("header", "value"),
    [("From", "<sip:alice@example.com"), ("To", '"unterminated <sip:b@c>'), ("Via", "SIP/2.0/UDP")],
)
def test_8_2_malformed_request_answered_400_and_rejected(header: str, value: str) -> None:
    layer = make_layer()
    events = layer.receive(_malformed(header, value), PEER_UDP, 0.0)
    assert len(events) == 1 and isinstance(events[0], MessageRejected)
    assert events[0].source == PEER_UDP
    (send,) = layer.take_outgoing()
    assert isinstance(send.message, Response) and send.message.status == 400
    assert send.message.reason == events[0].reason and send.dest == PEER_UDP
    assert layer.counts == ZERO


def test_8_2_malformed_ack_dropped_and_rejected() -> None:
    layer = make_layer()
    events = layer.receive(_malformed("From", "<sip:broken", "ACK"), PEER_UDP, 0.0)
    assert len(events) == 1 and isinstance(events[0], MessageRejected)
    assert layer.take_outgoing() == []


def test_8_2_request_without_via_dropped() -> None:
    layer = make_layer()
    request = Request("OPTIONS", "sip:x@sipmask")
    events = layer.receive(request, PEER_UDP, 0.0)
    assert len(events) == 1 and isinstance(events[0], MessageRejected)
    assert layer.take_outgoing() == []


# ------------------------------------------------------------------------ whole flows, no leaks


def test_17_full_call_both_sides_leaves_no_transactions() -> None:
    """A B2BUA-shaped flow: INVITE in (A leg), INVITE out (B leg), 180/200 back, ACKs, BYE."""
    layer = make_layer()
    a_invite = make_request()
    a_txn = _txn(layer.receive(a_invite, PEER_UDP, 0.0))
    b_dest = Address("udp", "198.51.100.20", 5060)
    b_invite = make_request(branch="z9hG4bK-b1", call_id="b-call", sent_by="203.0.113.1:5060")
    b_txn = layer.send_request(b_invite, b_dest, 0.01)
    ringing = reply(b_invite, 180, to_tag="bt")
    assert layer.receive(ringing, b_dest, 0.2) == [ResponseReceived(ringing, b_txn)]
    layer.send_response(a_txn, build_response(a_invite, 180, to_tag="at"), 0.2)
    ok = reply(b_invite, 200, to_tag="bt")
    assert layer.receive(ok, b_dest, 1.0) == [ResponseReceived(ok, b_txn)]
    b_ack = make_request("ACK", branch="z9hG4bK-b2", call_id="b-call", to_tag="bt", sent_by="203.0.113.1:5060")
    layer.send_ack(b_txn, b_ack, b_dest)
    layer.send_response(a_txn, build_response(a_invite, 200, to_tag="at"), 1.0)
    a_ack = make_request("ACK", branch="z9hG4bK-a2", to_tag="at")
    assert layer.receive(a_ack, PEER_UDP, 1.1) == [RequestReceived(a_ack, PEER_UDP, None)]
    bye = make_request("BYE", branch="z9hG4bK-a3", to_tag="at", cseq=2)
    bye_txn = _txn(layer.receive(bye, PEER_UDP, 10.0))
    b_bye = make_request("BYE", branch="z9hG4bK-b3", call_id="b-call", to_tag="bt", cseq=2)
    b_bye_txn = layer.send_request(b_bye, b_dest, 10.0)
    layer.receive(reply(b_bye, 200, to_tag="bt"), b_dest, 10.1)
    layer.send_response(bye_txn, build_response(bye, 200), 10.1)
    log = run_until(layer, 200.0)
    terminated = [e.transaction for _, _, events in log for e in events if isinstance(e, TransactionTerminated)]
    assert set(map(id, terminated)) == {id(a_txn), id(b_txn), id(bye_txn), id(b_bye_txn)}
    assert layer.counts == ZERO
    assert layer.next_deadline() is None
    assert not layer._clients and not layer._servers and not layer._merged and not layer._acks_2xx


def test_18_2_1_ipv6_sent_by_compared_without_brackets() -> None:
    layer = make_layer()
    same = make_request(sent_by="[2001:db8::1]:5060")
    txn = _txn(layer.receive(same, Address("udp", "2001:db8::1", 5060), 0.0))
    assert "received" not in same.top_via.params
    assert txn.response_dest == Address("udp", "2001:db8::1", 5060)
    natted = make_request(sent_by="[2001:db8::1]:5060", via_params=";rport", call_id="v6b", branch="z9hG4bK-2")
    txn = _txn(layer.receive(natted, Address("udp", "2001:db8::9", 5999), 0.0))
    assert natted.headers.get("via") == (
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-2;rport=5999;received=2001:db8::9"
    )
    assert txn.response_dest == Address("udp", "2001:db8::9", 5999)


def test_8_1_1_7_reinvite_reusing_the_first_invites_branch_is_a_new_transaction() -> None:
    # the first INVITE's transaction lingers in Accepted (RFC 6026, Timer L 64*T1) after its 2xx;
    # a re-INVITE that reuses its branch (a broken client) must not be absorbed as a copy of it
    layer = make_layer()
    first = _txn(layer.receive(make_request(), PEER_UDP, 0.0))
    layer.send_response(first, build_response(first.request, 200, to_tag="u1"), 0.1)
    assert first.state is TransactionState.ACCEPTED
    layer.take_outgoing()
    reinvite = make_request(to_tag="u1", cseq=2)
    second = _txn(layer.receive(reinvite, PEER_UDP, 1.0))
    assert second is not first and second.request is reinvite
    assert layer.reused_branches == 1 and layer.request_retransmissions == 0
    layer.send_response(second, build_response(reinvite, 200), 1.1)
    assert [s.message.status for s in layer.take_outgoing()] == [100, 200]  # type: ignore[union-attr]
    # a copy of the re-INVITE is its retransmission (absorbed in Accepted, RFC 6026 §8.7);
    # a late copy of the first INVITE is absorbed too, never taken for a new call
    assert layer.receive(make_request(to_tag="u1", cseq=2), PEER_UDP, 1.2) == []
    assert layer.request_retransmissions == 1
    assert layer.receive(make_request(), PEER_UDP, 1.3) == []
    assert layer.take_outgoing() == [] and layer.reused_branches == 1
    # the ACK of each 2xx goes to the TU (RFC 6026 §7.1), and both transactions end (Timer L)
    for cseq, branch in ((1, "z9hG4bK-a1"), (2, "z9hG4bK-a2")):
        (ack,) = layer.receive(make_request("ACK", branch=branch, to_tag="u1", cseq=cseq), PEER_UDP, 1.4)
        assert isinstance(ack, RequestReceived) and ack.request.cseq.number == cseq
    ended = [e.transaction for _, _, events in run_until(layer, 100.0) for e in events
             if isinstance(e, TransactionTerminated)]
    assert ended == [first, second]
    assert layer.counts == ZERO


def test_8_1_1_7_new_call_reusing_a_branch_is_a_new_transaction() -> None:
    layer = make_layer()
    first = _txn(layer.receive(make_request(), PEER_UDP, 0.0))
    second = _txn(layer.receive(make_request(call_id="other@192.0.2.10"), PEER_UDP, 0.5))
    assert second is not first and layer.counts["server_invite"] == 2
