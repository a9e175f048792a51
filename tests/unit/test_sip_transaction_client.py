"""RFC 3261 §17.1 client transactions (INVITE with RFC 6026 Accepted, and non-INVITE)."""

from __future__ import annotations

import pytest

from proxy.sip.message import Request, Response
from proxy.sip.transaction import (
    Address,
    Event,
    ResponseReceived,
    Send,
    TransactionState,
    TransactionTerminated,
    TransactionTimeout,
)

from .test_sip_transaction_support import (
    OTHER_UDP,
    PEER_TCP,
    PEER_UDP,
    make_layer,
    make_request,
    reply,
    run_until,
)

ZERO = {"client_invite": 0, "client_non_invite": 0, "server_invite": 0, "server_non_invite": 0}


def _sent_times(log: list[tuple[float, list[Send], list[Event]]], method: str) -> list[float]:
    return [t for t, sends, _ in log for s in sends if isinstance(s.message, Request) and s.message.method == method]


# ------------------------------------------------------------------------ INVITE client (§17.1.1)


def test_17_1_1_2_invite_client_timer_a_doubles_then_timer_b_times_out() -> None:
    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    assert txn.state is TransactionState.CALLING and txn.is_invite and txn.method == "INVITE"
    assert txn.branch == "z9hG4bK-1" and txn.dest == PEER_UDP
    assert [s.message for s in layer.take_outgoing()] == [invite]
    assert layer.counts["client_invite"] == 1
    log = run_until(layer, 100.0)
    assert _sent_times(log, "INVITE") == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    t, _, events = log[-1]
    assert t == 32.0  # Timer B = 64*T1
    assert events == [TransactionTimeout(txn, "B"), TransactionTerminated(txn)]
    assert txn.state is TransactionState.TERMINATED  # type: ignore[comparison-overlap]
    assert layer.counts == ZERO and layer.next_deadline() is None


def test_17_1_1_2_invite_client_respects_configured_t1() -> None:
    layer = make_layer(t1=0.1)
    txn = layer.send_request(make_request(), PEER_UDP, 10.0)
    layer.take_outgoing()
    log = run_until(layer, 100.0)
    assert _sent_times(log, "INVITE") == pytest.approx([10.1, 10.3, 10.7, 11.5, 13.1, 16.3])
    assert log[-1][0] == pytest.approx(16.4)
    assert log[-1][2][0] == TransactionTimeout(txn, "B")


def test_17_1_1_2_invite_client_reliable_has_no_timer_a() -> None:
    layer = make_layer()
    txn = layer.send_request(make_request(transport="TCP"), PEER_TCP, 0.0)
    layer.take_outgoing()
    assert layer.next_deadline() == 32.0
    log = run_until(layer, 100.0)
    assert _sent_times(log, "INVITE") == []
    assert log == [(32.0, [], [TransactionTimeout(txn, "B"), TransactionTerminated(txn)])]


def test_17_1_1_2_invite_client_provisional_stops_timer_a_and_goes_to_tu() -> None:
    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.take_outgoing()
    ringing = reply(invite, 180)
    assert layer.receive(ringing, PEER_UDP, 0.2) == [ResponseReceived(ringing, txn)]
    assert txn.state is TransactionState.PROCEEDING and txn.last_response is ringing
    again = reply(invite, 183)
    assert layer.receive(again, PEER_UDP, 0.3) == [ResponseReceived(again, txn)]
    # §17.1.1.2: no retransmissions in Proceeding; Timer B only acts in Calling
    log = run_until(layer, 100.0)
    assert all(not sends and not events for _, sends, events in log)
    assert txn.state is TransactionState.PROCEEDING
    layer.abandon(txn)
    assert layer.counts == ZERO


def test_9_1_invite_client_times_out_64_t1_after_a_cancel_with_no_final_response() -> None:
    """A callee that rings, gets our CANCEL and then says nothing: the INVITE transaction
    must still end (§9.1: 64*T1 after the CANCEL), not hold its state forever."""
    from proxy.sip.transaction import build_cancel

    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.take_outgoing()
    layer.receive(reply(invite, 180), PEER_UDP, 0.2)
    cancel_txn = layer.send_request(build_cancel(invite), PEER_UDP, 10.0)
    layer.take_outgoing()
    log = run_until(layer, 200.0)
    timeouts = [(t, e) for t, _, events in log for e in events if isinstance(e, TransactionTimeout)]
    assert (42.0, TransactionTimeout(txn, "B")) in timeouts  # 10 s + 64*T1
    assert (42.0, TransactionTimeout(cancel_txn, "F")) in timeouts
    assert txn.state is TransactionState.TERMINATED
    assert layer.counts == ZERO and layer.next_deadline() is None


def test_9_1_a_cancel_sent_in_calling_still_ends_a_callee_that_goes_silent_after_100() -> None:
    """Found by loadtest.fuzz: the CANCEL went out before any response (Calling), then the
    callee's 100 moved the INVITE to Proceeding, which disarmed Timer B, and no final response
    came: the transaction was held forever. Its §9.1 timer now survives the move."""
    from proxy.sip.transaction import build_cancel

    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.send_request(build_cancel(invite), PEER_UDP, 1.0)
    layer.receive(reply(invite, 100), PEER_UDP, 1.2)
    assert txn.state is TransactionState.PROCEEDING
    log = run_until(layer, 200.0)
    timeouts = [(t, e) for t, _, events in log for e in events if isinstance(e, TransactionTimeout)]
    assert (33.0, TransactionTimeout(txn, "B")) in timeouts  # 1 s + 64*T1
    assert txn.state is TransactionState.TERMINATED
    assert layer.counts == ZERO and layer.next_deadline() is None


def test_17_1_1_2_without_a_cancel_proceeding_waits_for_the_final_response() -> None:
    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive(reply(invite, 100), PEER_UDP, 0.2)
    log = run_until(layer, 200.0)
    assert not [e for _, _, events in log for e in events if isinstance(e, TransactionTimeout)]
    assert txn.state is TransactionState.PROCEEDING


def test_9_1_a_final_response_after_the_cancel_ends_the_invite_as_usual() -> None:
    from proxy.sip.transaction import build_cancel

    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive(reply(invite, 180), PEER_UDP, 0.2)
    layer.send_request(build_cancel(invite), PEER_UDP, 1.0)
    terminated = reply(invite, 487)
    assert layer.receive(terminated, PEER_UDP, 1.1) == [ResponseReceived(terminated, txn)]
    assert txn.state is TransactionState.COMPLETED
    log = run_until(layer, 100.0)
    assert not [e for _, _, events in log for e in events if isinstance(e, TransactionTimeout) and e.transaction is txn]


@pytest.mark.parametrize("status", [300, 404, 486, 503, 603])
def test_17_1_1_2_invite_client_non_2xx_acked_and_timer_d_over_udp(status: int) -> None:
    layer = make_layer()
    invite = make_request(extra=("Route: <sip:edge.example.com;lr>",))
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.take_outgoing()
    layer.receive(reply(invite, 180), PEER_UDP, 0.1)
    final = reply(invite, status, to_tag="x9")
    assert layer.receive(final, PEER_UDP, 1.0) == [ResponseReceived(final, txn)]
    assert txn.state is TransactionState.COMPLETED
    (ack,) = layer.take_outgoing()
    assert ack.dest == PEER_UDP and isinstance(ack.message, Request)
    assert ack.message.method == "ACK" and ack.message.branch == invite.branch
    assert ack.message.to_tag == "x9" and ack.message.headers.get_all("route") == ["<sip:edge.example.com;lr>"]
    # §17.1.1.2: a retransmitted final response is re-ACKed and absorbed
    assert layer.receive(reply(invite, status, to_tag="x9"), PEER_UDP, 2.0) == []
    assert [s.message for s in layer.take_outgoing()] == [ack.message]
    assert layer.next_deadline() == 33.0  # Timer D: 32 s on UDP
    assert layer.handle_timers(32.9) == []
    assert layer.handle_timers(33.0) == [TransactionTerminated(txn)]
    assert layer.counts == ZERO


def test_17_1_1_2_invite_client_timer_d_zero_over_reliable() -> None:
    layer = make_layer()
    invite = make_request(transport="TCP")
    txn = layer.send_request(invite, PEER_TCP, 0.0)
    layer.receive(reply(invite, 486), PEER_TCP, 1.0)
    assert [s.message.method for s in layer.take_outgoing()] == ["INVITE", "ACK"]  # type: ignore[union-attr]
    assert layer.next_deadline() == 1.0
    assert layer.handle_timers(1.0) == [TransactionTerminated(txn)]
    assert layer.counts == ZERO


def test_rfc6026_invite_client_accepted_passes_2xx_retransmissions_and_timer_m() -> None:
    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.take_outgoing()
    ok = reply(invite, 200, to_tag="b1")
    assert layer.receive(ok, PEER_UDP, 0.2) == [ResponseReceived(ok, txn)]
    assert txn.state is TransactionState.ACCEPTED
    assert layer.take_outgoing() == []  # the layer never ACKs a 2xx itself
    # retransmission before the TU's ACK: to the TU, nothing re-sent
    ok2 = reply(invite, 200, to_tag="b1")
    assert layer.receive(ok2, PEER_UDP, 0.6) == [ResponseReceived(ok2, txn)]
    assert layer.take_outgoing() == []
    ack = make_request("ACK", branch="z9hG4bK-ack", to_tag="b1", uri="sip:callee@192.0.2.10")
    layer.send_ack(txn, ack, PEER_UDP)
    assert [s.message for s in layer.take_outgoing()] == [ack]
    # RFC 6026 §8.4: each retransmitted 2xx goes to the TU and the stored ACK is re-sent
    ok3 = reply(invite, 200, to_tag="b1")
    assert layer.receive(ok3, PEER_UDP, 1.6) == [ResponseReceived(ok3, txn)]
    assert [s.message for s in layer.take_outgoing()] == [ack]
    # a 2xx from another fork (other To tag) reaches the TU but is not ACKed with our ACK
    fork = reply(invite, 200, to_tag="b2")
    assert layer.receive(fork, PEER_UDP, 1.7) == [ResponseReceived(fork, txn)]
    assert layer.take_outgoing() == []
    # non-2xx in Accepted is discarded
    assert layer.receive(reply(invite, 486), PEER_UDP, 1.8) == []
    # Timer M = 64*T1 from the first 2xx
    assert layer.next_deadline() == pytest.approx(32.2)
    assert layer.handle_timers(32.2) == [TransactionTerminated(txn)]
    assert layer.counts == ZERO
    # §13.2.2.4: a 2xx after the transaction is gone still reaches the TU (it re-ACKs)
    late = reply(invite, 200, to_tag="b1")
    assert layer.receive(late, PEER_UDP, 40.0) == [ResponseReceived(late, None, PEER_UDP)]


def test_rfc6026_invite_client_timer_m_scales_with_t1() -> None:
    layer = make_layer(t1=0.25)
    invite = make_request(transport="TCP")
    txn = layer.send_request(invite, PEER_TCP, 0.0)
    layer.receive(reply(invite, 200), PEER_TCP, 1.0)
    assert layer.next_deadline() == 17.0
    assert layer.handle_timers(17.0) == [TransactionTerminated(txn)]


def test_17_1_1_2_invite_client_transport_error_informs_tu() -> None:
    layer = make_layer()
    txn = layer.send_request(make_request(), PEER_UDP, 0.0)
    other = layer.send_request(make_request(branch="z9hG4bK-2", call_id="other"), OTHER_UDP, 0.0)
    events = layer.transport_error(PEER_UDP, 0.1)
    assert events == [TransactionTimeout(txn, "transport"), TransactionTerminated(txn)]
    assert other.state is TransactionState.CALLING
    assert layer.counts["client_invite"] == 1
    assert layer.transport_error(Address("udp", "203.0.113.1", 5060), 0.2) == []


def test_invite_client_abandon_is_silent_and_stops_retransmissions() -> None:
    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.take_outgoing()
    txn.tu_data = "leg-b"
    layer.abandon(txn)
    assert txn.state is TransactionState.TERMINATED and layer.counts == ZERO
    assert layer.next_deadline() is None
    assert layer.handle_timers(100.0) == [] and layer.take_outgoing() == []
    # a late non-2xx for it is dropped; abandoning twice is harmless
    assert layer.receive(reply(invite, 486), PEER_UDP, 1.0) == []
    layer.abandon(txn)
    assert layer.counts == ZERO


def test_17_1_3_response_to_unknown_transaction_dropped() -> None:
    layer = make_layer()
    invite = make_request()
    assert layer.receive(reply(invite, 180), PEER_UDP, 0.0) == []
    assert layer.receive(reply(make_request("OPTIONS"), 200), PEER_UDP, 0.0) == []
    assert layer.take_outgoing() == []


def test_17_1_3_responses_matched_by_branch_and_cseq_method() -> None:
    from proxy.sip.transaction import build_cancel

    layer = make_layer()
    invite = make_request()
    inv_txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.receive(reply(invite, 180), PEER_UDP, 0.1)
    cancel = build_cancel(invite)
    cancel_txn = layer.send_request(cancel, PEER_UDP, 1.0)
    assert cancel_txn.branch == inv_txn.branch and not cancel_txn.is_invite
    ok_cancel = reply(cancel, 200)
    terminated = reply(invite, 487)
    assert layer.receive(ok_cancel, PEER_UDP, 1.1) == [ResponseReceived(ok_cancel, cancel_txn)]
    assert layer.receive(terminated, PEER_UDP, 1.2) == [ResponseReceived(terminated, inv_txn)]
    assert inv_txn.state is TransactionState.COMPLETED and cancel_txn.state is TransactionState.COMPLETED
    run_until(layer, 100.0)
    assert layer.counts == ZERO


def test_17_1_send_request_refuses_ack_and_reused_branch() -> None:
    layer = make_layer()
    with pytest.raises(ValueError):
        layer.send_request(make_request("ACK"), PEER_UDP, 0.0)
    layer.send_request(make_request(), PEER_UDP, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(make_request(), PEER_UDP, 0.0)


# ------------------------------------------------------------------------ non-INVITE client (§17.1.2)


def test_17_1_2_2_non_invite_client_timer_e_doubles_capped_at_t2_then_timer_f() -> None:
    layer = make_layer()
    txn = layer.send_request(make_request("OPTIONS"), PEER_UDP, 0.0)
    assert txn.state is TransactionState.TRYING
    layer.take_outgoing()
    log = run_until(layer, 100.0)
    assert _sent_times(log, "OPTIONS") == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-1] == (32.0, [], [TransactionTimeout(txn, "F"), TransactionTerminated(txn)])
    assert layer.counts == ZERO


def test_17_1_2_2_non_invite_client_respects_configured_t2() -> None:
    layer = make_layer(t1=0.5, t2=1.0)
    layer.send_request(make_request("BYE", to_tag="b1"), PEER_UDP, 0.0)
    layer.take_outgoing()
    log = run_until(layer, 6.0)
    assert _sent_times(log, "BYE") == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


def test_17_1_2_2_non_invite_client_proceeding_retransmits_every_t2() -> None:
    layer = make_layer()
    bye = make_request("BYE", to_tag="b1")
    txn = layer.send_request(bye, PEER_UDP, 0.0)
    layer.take_outgoing()
    log = run_until(layer, 0.5)  # first Timer E at 0.5, next due at 1.5
    trying = reply(bye, 100)
    assert layer.receive(trying, PEER_UDP, 0.6) == [ResponseReceived(trying, txn)]
    assert txn.state is TransactionState.PROCEEDING
    log = run_until(layer, 20.0)
    assert _sent_times(log, "BYE") == [1.5, 5.5, 9.5, 13.5, 17.5]
    # Timer F still applies in Proceeding
    log = run_until(layer, 40.0)
    assert log[-1] == (32.0, [], [TransactionTimeout(txn, "F"), TransactionTerminated(txn)])
    assert layer.counts == ZERO


@pytest.mark.parametrize("status", [200, 481, 503])
def test_17_1_2_2_non_invite_client_completed_absorbs_and_timer_k_is_t4(status: int) -> None:
    layer = make_layer(t4=2.5)
    bye = make_request("BYE", to_tag="b1")
    txn = layer.send_request(bye, PEER_UDP, 0.0)
    layer.take_outgoing()
    final = reply(bye, status)
    assert layer.receive(final, PEER_UDP, 0.2) == [ResponseReceived(final, txn)]
    assert txn.state is TransactionState.COMPLETED
    assert layer.receive(reply(bye, status), PEER_UDP, 0.3) == []  # absorbed
    assert layer.next_deadline() == pytest.approx(2.7)  # Timer K = T4, E and F disarmed
    assert layer.handle_timers(2.7) == [TransactionTerminated(txn)]
    assert layer.take_outgoing() == [] and layer.counts == ZERO


def test_17_1_2_2_non_invite_client_reliable_no_timer_e_and_k_zero() -> None:
    layer = make_layer()
    bye = make_request("BYE", transport="TLS", to_tag="b1")
    dest = Address("tls", "192.0.2.10", 5061)
    txn = layer.send_request(bye, dest, 0.0)
    layer.take_outgoing()
    assert layer.next_deadline() == 32.0  # only Timer F
    layer.receive(reply(bye, 200), dest, 1.0)
    assert layer.handle_timers(1.0) == [TransactionTerminated(txn)]
    assert layer.counts == ZERO


def test_17_1_2_2_non_invite_client_transport_error() -> None:
    layer = make_layer()
    txn = layer.send_request(make_request("OPTIONS"), PEER_TCP, 0.0)
    assert layer.transport_error(PEER_TCP, 0.0) == [TransactionTimeout(txn, "transport"), TransactionTerminated(txn)]
    assert layer.counts == ZERO


def test_17_1_malformed_response_rejected_not_raised() -> None:
    from proxy.sip.parser import parse_message
    from proxy.sip.transaction import MessageRejected

    layer = make_layer()
    raw = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
        b"Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    response = parse_message(raw)
    assert isinstance(response, Response)
    events = layer.receive(response, PEER_UDP, 0.0)
    assert len(events) == 1 and isinstance(events[0], MessageRejected)
    assert "Via" in events[0].reason
    assert layer.take_outgoing() == []


def test_timer_heap_compacts_disarmed_entries() -> None:
    layer = make_layer()
    txns = []
    for i in range(3000):
        invite = make_request(branch=f"z9hG4bK-h{i}", call_id=f"h{i}")
        txns.append(layer.send_request(invite, PEER_UDP, 0.0))
        layer.receive(reply(invite, 200), PEER_UDP, 0.1)
    layer.take_outgoing()
    # each answered INVITE disarmed Timer A and B; only Timer M entries need to stay
    assert layer._size < 6000
    assert layer.next_deadline() == pytest.approx(32.1)
    events = layer.handle_timers(40.0)
    assert len(events) == 3000 and layer.counts == ZERO and layer.next_deadline() is None


# ------------------------------------------------------------------------ matching fast path


@pytest.mark.parametrize("change, matched, fast", [
    (lambda via: via, True, True),  # the Via exactly as we sent it
    (lambda via: via + ";received=192.0.2.99", True, True),  # parameters the peer added after ours
    (lambda via: via.replace("SIP/2.0/UDP", "SIP/2.0/UDP "), True, False),  # other spelling
    (lambda via: via + "X", False, False),  # another branch: no transaction (§17.1.3)
])
def test_17_1_3_response_with_our_own_via_is_matched_without_parsing_it(change, matched, fast) -> None:  # type: ignore[no-untyped-def]
    """A response whose top Via is ours up to the branch matches its transaction without the
    Via being parsed; anything else goes through the general §17.1.3 path, as before."""
    layer = make_layer()
    invite = make_request()
    txn = layer.send_request(invite, PEER_UDP, 0.0)
    layer.take_outgoing()
    own = invite.headers.get("via") or ""
    raw = reply(invite, 180).serialise().decode().replace(f"Via: {own}", f"Via: {change(own)}", 1)
    response = wire_response(raw)
    events = layer.receive(response, PEER_UDP, 0.1)
    assert ("top_via" not in response.headers.views) is fast
    if matched:
        assert [type(e) for e in events] == [ResponseReceived] and events[0].transaction is txn
        assert txn.state is TransactionState.PROCEEDING
    else:
        assert events == [] and txn.state is TransactionState.CALLING


def wire_response(text: str) -> Response:
    from proxy.sip.parser import parse_message

    msg = parse_message(text.encode())
    assert isinstance(msg, Response)
    return msg
