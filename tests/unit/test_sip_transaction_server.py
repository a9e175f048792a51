"""RFC 3261 §17.2 server transactions (INVITE with RFC 6026 Accepted, and non-INVITE)."""

from __future__ import annotations

import pytest

from proxy.sip.message import Response, build_response
from proxy.sip.transaction import (
    Event,
    RequestReceived,
    Send,
    ServerTransaction,
    TransactionLayer,
    TransactionState,
    TransactionTerminated,
    TransactionTimeout,
)

from .test_sip_transaction_support import PEER_TCP, PEER_UDP, make_layer, make_request, run_until

ZERO = {"client_invite": 0, "client_non_invite": 0, "server_invite": 0, "server_non_invite": 0}


def _new_invite(layer: TransactionLayer, transport: str = "UDP", **kw: object) -> ServerTransaction:
    source = PEER_UDP if transport == "UDP" else PEER_TCP
    invite = make_request(transport=transport, **kw)  # type: ignore[arg-type]
    (event,) = layer.receive(invite, source, 0.0)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    assert event.request is invite and event.source == source and event.cancelled is None
    return event.transaction


def _statuses(layer: TransactionLayer) -> list[int]:
    return [s.message.status for s in layer.take_outgoing() if isinstance(s.message, Response)]


def _response_times(log: list[tuple[float, list[Send], list[Event]]]) -> list[float]:
    return [t for t, sends, _ in log for _s in sends]


# ------------------------------------------------------------------------ INVITE server (§17.2.1)


def test_17_2_1_invite_server_proceeding_sends_100_trying_with_timestamp() -> None:
    layer = make_layer()
    txn = _new_invite(layer, extra=("Timestamp: 54.2",))
    assert txn.state is TransactionState.PROCEEDING and txn.method == "INVITE"
    assert txn.source == PEER_UDP and txn.branch == "z9hG4bK-1"
    (trying,) = layer.take_outgoing()
    assert isinstance(trying.message, Response) and trying.message.status == 100
    assert trying.dest == PEER_UDP
    assert trying.message.headers.get("timestamp") == "54.2"  # §8.2.6.1
    assert trying.message.to_tag is None
    assert layer.counts["server_invite"] == 1 and txn.last_response is trying.message


def test_17_2_1_invite_server_without_auto_trying_sends_nothing() -> None:
    layer = make_layer(auto_trying=False)
    _new_invite(layer)
    assert layer.take_outgoing() == []
    # a retransmission has no provisional to re-send
    assert layer.receive(make_request(), PEER_UDP, 0.5) == []
    assert layer.take_outgoing() == []


def test_17_2_1_invite_server_absorbs_retransmission_and_resends_last_provisional() -> None:
    layer = make_layer()
    txn = _new_invite(layer)
    layer.take_outgoing()
    assert layer.receive(make_request(), PEER_UDP, 0.5) == []
    assert _statuses(layer) == [100]
    ringing = build_response(txn.request, 180, to_tag="u1")
    layer.send_response(txn, ringing, 0.6)
    assert [s.message for s in layer.take_outgoing()] == [ringing]
    assert layer.receive(make_request(), PEER_UDP, 1.5) == []
    assert [s.message for s in layer.take_outgoing()] == [ringing]
    assert txn.state is TransactionState.PROCEEDING


def test_17_2_1_invite_server_completed_timer_g_doubles_capped_then_timer_h() -> None:
    layer = make_layer()
    txn = _new_invite(layer)
    layer.take_outgoing()
    busy = build_response(txn.request, 486, to_tag="u1")
    layer.send_response(txn, busy, 0.0)
    assert txn.state is TransactionState.COMPLETED
    assert [s.message for s in layer.take_outgoing()] == [busy]
    log = run_until(layer, 100.0)
    assert _response_times(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(s.message is busy for _, sends, _e in log for s in sends)
    assert log[-1] == (32.0, [], [TransactionTimeout(txn, "H"), TransactionTerminated(txn)])
    assert layer.counts == ZERO


def test_17_2_1_final_answered_at_once_takes_back_the_100_and_arms_no_timer_g() -> None:
    # the TU answers in the batch that brought the INVITE: the 100 Trying has not left, so the
    # UAC is still in Calling and retransmits itself; one answer per copy, no Timer G
    layer = make_layer()
    txn = _new_invite(layer)
    refusal = build_response(txn.request, 404, to_tag="u1")
    layer.send_response(txn, refusal, 0.0)
    assert [s.message for s in layer.take_outgoing()] == [refusal]
    assert layer.next_deadline() == 32.0  # Timer H only
    # a copy of the INVITE (the 404 was lost) is answered again, once
    assert layer.receive(make_request(), PEER_UDP, 0.5) == []
    assert [s.message for s in layer.take_outgoing()] == [refusal]
    log = run_until(layer, 100.0)
    assert _response_times(log) == []
    assert log[-1] == (32.0, [], [TransactionTimeout(txn, "H"), TransactionTerminated(txn)])
    # the ACK still ends it early
    layer2 = make_layer()
    txn2 = _new_invite(layer2)
    layer2.send_response(txn2, build_response(txn2.request, 404, to_tag="u1"), 0.0)
    layer2.receive(make_request("ACK", to_tag="u1", cseq_method="ACK"), PEER_UDP, 0.1)
    assert txn2.state is TransactionState.CONFIRMED


def test_17_2_1_final_after_a_provisional_left_keeps_timer_g() -> None:
    layer = make_layer()
    txn = _new_invite(layer)
    ringing = build_response(txn.request, 180, to_tag="u1")
    layer.send_response(txn, ringing, 0.0)  # a provisional other than the 100: it goes out
    busy = build_response(txn.request, 486, to_tag="u1")
    layer.send_response(txn, busy, 0.0)
    assert [s.message.status for s in layer.take_outgoing()] == [100, 180, 486]  # type: ignore[union-attr]
    assert _response_times(run_until(layer, 100.0))[:2] == [0.5, 1.5]


def test_17_2_1_final_answered_at_once_over_tcp_is_unchanged() -> None:
    layer = make_layer()
    txn = _new_invite(layer, "TCP")
    layer.send_response(txn, build_response(txn.request, 404, to_tag="u1"), 0.0)
    assert [s.message.status for s in layer.take_outgoing()] == [100, 404]  # type: ignore[union-attr]


def test_17_2_1_invite_server_completed_resends_final_on_retransmission() -> None:
    layer = make_layer()
    txn = _new_invite(layer)
    layer.take_outgoing()
    layer.send_response(txn, build_response(txn.request, 404, to_tag="u1"), 0.0)
    layer.take_outgoing()
    assert layer.receive(make_request(), PEER_UDP, 0.2) == []
    assert _statuses(layer) == [404]


def test_17_2_1_invite_server_ack_confirms_and_timer_i_is_t4() -> None:
    layer = make_layer(t4=3.0)
    txn = _new_invite(layer)
    layer.send_response(txn, build_response(txn.request, 486, to_tag="u1"), 0.0)
    layer.take_outgoing()
    ack = make_request("ACK", to_tag="u1", cseq_method="ACK")  # same branch: §17.1.1.3
    assert layer.receive(ack, PEER_UDP, 0.7) == []  # absorbed by the transaction
    assert txn.state is TransactionState.CONFIRMED
    assert layer.receive(make_request("ACK", to_tag="u1"), PEER_UDP, 0.8) == []  # absorbed again
    assert layer.receive(make_request(), PEER_UDP, 0.9) == []  # INVITE absorbed in Confirmed
    log = run_until(layer, 100.0)  # Timer G and H were stopped by the ACK
    assert log == [(pytest.approx(3.7), [], [TransactionTerminated(txn)])]  # type: ignore[comparison-overlap]
    assert layer.counts == ZERO


def test_17_2_1_invite_server_reliable_no_timer_g_and_timer_i_zero() -> None:
    layer = make_layer()
    txn = _new_invite(layer, "TCP")
    layer.send_response(txn, build_response(txn.request, 603, to_tag="u1"), 0.0)
    assert [s.dest for s in layer.take_outgoing()] == [PEER_TCP, PEER_TCP]
    assert layer.next_deadline() == 32.0  # only Timer H
    layer.receive(make_request("ACK", transport="TCP", to_tag="u1"), PEER_TCP, 1.0)
    assert txn.state is TransactionState.CONFIRMED
    assert layer.handle_timers(1.0) == [TransactionTerminated(txn)]
    assert layer.counts == ZERO


def test_17_2_1_invite_server_timer_h_respects_t1() -> None:
    layer = make_layer(t1=0.2, t2=0.5)
    txn = _new_invite(layer)
    layer.take_outgoing()  # the 100 Trying left: the UAC is in Proceeding, Timer G is armed
    layer.send_response(txn, build_response(txn.request, 480, to_tag="u1"), 0.0)
    layer.take_outgoing()
    log = run_until(layer, 100.0)
    assert _response_times(log)[:5] == pytest.approx([0.2, 0.6, 1.1, 1.6, 2.1])
    assert log[-1][0] == pytest.approx(12.8)
    assert log[-1][2][0] == TransactionTimeout(txn, "H")


def test_rfc6026_invite_server_accepted_retransmits_2xx_until_ack() -> None:
    layer = make_layer()
    txn = _new_invite(layer)
    layer.take_outgoing()
    ok = build_response(txn.request, 200, to_tag="u1")
    layer.send_response(txn, ok, 0.0)
    assert txn.state is TransactionState.ACCEPTED
    assert [s.message for s in layer.take_outgoing()] == [ok]
    # §13.3.1.4: re-sent at T1, 2T1, 4T1 ... capped at T2
    log = run_until(layer, 8.0)
    assert _response_times(log) == [0.5, 1.5, 3.5, 7.5]
    # RFC 6026 §7.1: a retransmitted INVITE is absorbed in Accepted
    assert layer.receive(make_request(), PEER_UDP, 8.1) == []
    assert layer.take_outgoing() == []
    # the ACK has its own branch; it goes to the TU and stops the retransmissions
    ack = make_request("ACK", branch="z9hG4bK-ack2xx", to_tag="u1", uri="sip:uas@203.0.113.5")
    assert layer.receive(ack, PEER_UDP, 9.0) == [RequestReceived(ack, PEER_UDP, None)]
    assert txn.acked
    # duplicates go to the TU too (it ignores them)
    ack2 = make_request("ACK", branch="z9hG4bK-ack2xx", to_tag="u1", uri="sip:uas@203.0.113.5")
    assert layer.receive(ack2, PEER_UDP, 9.5) == [RequestReceived(ack2, PEER_UDP, None)]
    log = run_until(layer, 100.0)
    assert log == [(32.0, [], [TransactionTerminated(txn)])]  # Timer L, no timeout
    assert layer.counts == ZERO
    # an ACK after the transaction is gone still reaches the TU
    ack3 = make_request("ACK", branch="z9hG4bK-ack2xx", to_tag="u1")
    assert layer.receive(ack3, PEER_UDP, 40.0) == [RequestReceived(ack3, PEER_UDP, None)]


def test_rfc6026_invite_server_timer_l_without_ack_times_out() -> None:
    layer = make_layer()
    txn = _new_invite(layer, "TCP")
    layer.take_outgoing()
    layer.send_response(txn, build_response(txn.request, 200, to_tag="u1"), 0.0)
    layer.take_outgoing()
    log = run_until(layer, 100.0)
    # §13.3.1.4: 2xx retransmitted end to end whatever the transport
    assert _response_times(log)[:3] == [0.5, 1.5, 3.5]
    assert log[-1] == (32.0, [], [TransactionTimeout(txn, "L"), TransactionTerminated(txn)])
    assert layer.counts == ZERO


def test_rfc6026_invite_server_accepted_sends_further_2xx() -> None:
    layer = make_layer()
    txn = _new_invite(layer)
    layer.take_outgoing()
    layer.send_response(txn, build_response(txn.request, 200, to_tag="u1"), 0.0)
    again = build_response(txn.request, 200, to_tag="u1")
    layer.send_response(txn, again, 0.1)
    assert [s.message for s in layer.take_outgoing()][-1] is again
    # the non-2xx from a confused TU is discarded in Accepted
    layer.send_response(txn, build_response(txn.request, 500, to_tag="u1"), 0.2)
    assert layer.take_outgoing() == []


# ------------------------------------------------------------------------ non-INVITE server (§17.2.2)


def test_17_2_2_non_invite_server_trying_proceeding_completed_timer_j() -> None:
    layer = make_layer()
    bye = make_request("BYE", to_tag="u1")
    (event,) = layer.receive(bye, PEER_UDP, 0.0)
    assert isinstance(event, RequestReceived)
    txn = event.transaction
    assert txn is not None and txn.state is TransactionState.TRYING
    assert layer.take_outgoing() == []  # no automatic 100 for non-INVITE
    # §17.2.2: retransmission in Trying absorbed, nothing to re-send
    assert layer.receive(make_request("BYE", to_tag="u1"), PEER_UDP, 0.5) == []
    assert layer.take_outgoing() == []
    layer.send_response(txn, build_response(bye, 100), 0.6)
    assert txn.state is TransactionState.PROCEEDING  # type: ignore[comparison-overlap]
    assert _statuses(layer) == [100]
    assert layer.receive(make_request("BYE", to_tag="u1"), PEER_UDP, 0.7) == []
    assert _statuses(layer) == [100]
    layer.send_response(txn, build_response(bye, 200), 1.0)
    assert txn.state is TransactionState.COMPLETED
    assert _statuses(layer) == [200]
    assert layer.receive(make_request("BYE", to_tag="u1"), PEER_UDP, 2.0) == []
    assert _statuses(layer) == [200]
    # further final responses from the TU are discarded
    layer.send_response(txn, build_response(bye, 500), 2.1)
    assert layer.take_outgoing() == []
    assert layer.next_deadline() == 33.0  # Timer J = 64*T1
    assert layer.handle_timers(33.0) == [TransactionTerminated(txn)]
    assert layer.counts == ZERO


def test_17_2_2_non_invite_server_reliable_timer_j_zero() -> None:
    layer = make_layer()
    options = make_request("OPTIONS", transport="TCP")
    (event,) = layer.receive(options, PEER_TCP, 0.0)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    layer.send_response(event.transaction, build_response(options, 200, to_tag="u1"), 0.5)
    assert [s.dest for s in layer.take_outgoing()] == [PEER_TCP]
    assert layer.handle_timers(0.5) == [TransactionTerminated(event.transaction)]
    assert layer.counts == ZERO


def test_17_2_2_non_invite_server_timer_j_respects_t1() -> None:
    layer = make_layer(t1=0.1)
    options = make_request("OPTIONS")
    (event,) = layer.receive(options, PEER_UDP, 0.0)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    layer.send_response(event.transaction, build_response(options, 200, to_tag="u1"), 1.0)
    assert layer.next_deadline() == pytest.approx(7.4)


def test_17_2_send_response_on_terminated_transaction_is_discarded() -> None:
    layer = make_layer()
    options = make_request("OPTIONS", transport="TCP")
    (event,) = layer.receive(options, PEER_TCP, 0.0)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    layer.send_response(event.transaction, build_response(options, 200, to_tag="u1"), 0.0)
    layer.handle_timers(0.0)
    layer.take_outgoing()
    layer.send_response(event.transaction, build_response(options, 200, to_tag="u1"), 1.0)
    assert layer.take_outgoing() == [] and layer.counts == ZERO


# ------------------------------------------------------------------------ stateless refusals (§8.2.7)


def test_8_2_7_screen_refuses_a_new_invite_statelessly_and_absorbs_its_ack() -> None:
    layer = make_layer()
    seen: list[str] = []

    def screen(request, source, now, delay):  # type: ignore[no-untyped-def]
        seen.append(request.call_id)
        return 503, [("Retry-After", "5")]

    layer.screen = screen
    invite = make_request(via_params=";rport", sent_by="10.9.9.9:5062")
    assert layer.receive(invite, PEER_UDP, 0.0) == [], "the TU never sees a refused INVITE"
    (send,) = layer.take_outgoing()  # no 100 Trying: the 503 alone
    refusal = send.message
    assert isinstance(refusal, Response) and refusal.status == 503
    assert refusal.headers.get("retry-after") == "5"
    assert refusal.to_tag == layer.stateless_tag
    # §18.2.2 / RFC 3581: routed by the stamped Via like any response
    assert send.dest == PEER_UDP
    assert "received=192.0.2.10" in (refusal.headers.get("via") or "")
    assert layer.counts == ZERO and layer.next_deadline() is None, "no transaction, no timer"
    # §8.2.7: a retransmission (the 503 was lost) is screened again and answered the same way
    layer.receive(make_request(via_params=";rport", sent_by="10.9.9.9:5062"), PEER_UDP, 0.5)
    (again,) = layer.take_outgoing()
    assert isinstance(again.message, Response) and again.message.to_tag == refusal.to_tag
    assert seen == [invite.call_id, invite.call_id] and layer.refused_statelessly == 2
    assert layer.request_retransmissions == 0
    # the caller's hop-by-hop ACK for the 503 (same branch) is absorbed: no event, nothing sent
    ack = make_request("ACK", to_tag=layer.stateless_tag, via_params=";rport", sent_by="10.9.9.9:5062")
    assert layer.receive(ack, PEER_UDP, 0.6) == [] and layer.take_outgoing() == []
    assert layer.stateless_acks == 1


def test_8_2_7_screen_lets_in_what_it_returns_none_for_and_is_not_asked_about_the_rest() -> None:
    layer = make_layer()
    asked: list[str] = []

    def screen(request, source, now, delay):  # type: ignore[no-untyped-def]
        asked.append(request.method)
        return None

    layer.screen = screen
    txn = _new_invite(layer)
    assert txn.state is TransactionState.PROCEEDING and _statuses(layer) == [100]
    # a retransmission of a live INVITE is absorbed by its transaction, not screened again
    assert layer.receive(make_request(), PEER_UDP, 0.1) == []
    assert layer.request_retransmissions == 1
    # neither are re-INVITEs (To tag) nor other methods
    layer.receive(make_request(branch="z9hG4bK-2", to_tag="t9", cseq=2), PEER_UDP, 0.2)
    layer.receive(make_request("OPTIONS", branch="z9hG4bK-3", call_id="o1"), PEER_UDP, 0.3)
    assert asked == ["INVITE"]
