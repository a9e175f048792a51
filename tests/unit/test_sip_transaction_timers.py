"""The transaction layer's timer queues: one FIFO per delay, tombstones, compaction."""

from __future__ import annotations

import sys

from proxy.sip.transaction import ClientTransaction, Input, TransactionState
from proxy.sip.transaction.timers import COMPACT_AFTER, TimerQueues

from .test_sip_transaction_support import PEER_UDP, make_request


def _txn(n: int = 0) -> ClientTransaction:
    request = make_request(branch=f"z9hG4bK-t{n}", call_id=f"t{n}")
    return ClientTransaction(request, request.branch or "", PEER_UDP, TransactionState.CALLING)


def _drain(queues: TimerQueues, now: float) -> list[tuple[ClientTransaction | object, Input]]:
    fired = []
    while (due := queues.pop_due(now)) is not None:
        fired.append(due)
    return fired


def test_timers_fire_in_deadline_order_across_delays() -> None:
    queues = TimerQueues()
    a, b, c = _txn(1), _txn(2), _txn(3)
    queues.arm(a, Input.TIMER_B, 32.0, 0.0)
    queues.arm(b, Input.TIMER_A, 0.5, 0.0)
    queues.arm(c, Input.TIMER_K, 5.0, 1.0)
    queues.arm(b, Input.TIMER_B, 32.0, 0.1)
    assert queues.next_deadline() == 0.5 and queues.armed_timers == 4
    assert queues.pop_due(0.4) is None
    assert _drain(queues, 100.0) == [(b, Input.TIMER_A), (c, Input.TIMER_K), (a, Input.TIMER_B), (b, Input.TIMER_B)]
    assert queues.next_deadline() is None and queues.armed_timers == 0
    assert a.armed == {} and b.armed == {}


def test_equal_deadlines_fire_in_arming_order() -> None:
    queues = TimerQueues()
    a, b = _txn(1), _txn(2)
    queues.arm(a, Input.TIMER_L, 2.0, 0.0)
    queues.arm(b, Input.TIMER_A, 1.0, 1.0)
    queues.arm(b, Input.TIMER_K, 0.0, 2.0)
    assert _drain(queues, 2.0) == [(a, Input.TIMER_L), (b, Input.TIMER_A), (b, Input.TIMER_K)]


def test_disarm_and_rearm() -> None:
    queues = TimerQueues()
    a = _txn()
    queues.arm(a, Input.TIMER_A, 0.5, 0.0)
    queues.arm(a, Input.TIMER_B, 32.0, 0.0)
    queues.disarm(a, Input.TIMER_A, Input.TIMER_D)
    assert queues.next_deadline() == 32.0 and queues.armed_timers == 1
    queues.arm(a, Input.TIMER_B, 32.0, 1.0)  # re-arming replaces the earlier deadline
    assert queues.next_deadline() == 33.0
    assert queues.pop_due(32.5) is None
    queues.disarm_all(a)
    assert queues.next_deadline() is None and _drain(queues, 100.0) == []


def test_a_clock_going_back_keeps_each_queue_sorted() -> None:
    queues = TimerQueues()
    a, b, c = _txn(1), _txn(2), _txn(3)
    queues.arm(a, Input.TIMER_E, 0.5, 10.0)
    queues.arm(b, Input.TIMER_E, 0.5, 5.0)
    queues.arm(c, Input.TIMER_E, 0.5, 7.0)
    assert queues.next_deadline() == 5.5
    assert _drain(queues, 20.0) == [(b, Input.TIMER_E), (c, Input.TIMER_E), (a, Input.TIMER_E)]


def test_a_disarmed_timer_does_not_pin_its_transaction() -> None:
    queues = TimerQueues()
    txn = _txn()
    unarmed = sys.getrefcount(txn)
    queues.arm(txn, Input.TIMER_B, 32.0, 0.0)
    assert sys.getrefcount(txn) > unarmed
    queues.disarm(txn, Input.TIMER_B)
    assert sys.getrefcount(txn) == unarmed and queues.armed_timers == 0


def test_tombstones_are_compacted_when_they_dominate() -> None:
    queues = TimerQueues()
    live = _txn(0)
    queues.arm(live, Input.TIMER_M, 32.0, 0.0)
    for _ in range(COMPACT_AFTER + 2):
        txn = _txn(1)
        queues.arm(txn, Input.TIMER_B, 32.0, 1.0)
        queues.disarm(txn, Input.TIMER_B)
    assert queues._size < COMPACT_AFTER and queues.armed_timers == 1
    assert _drain(queues, 100.0) == [(live, Input.TIMER_M)]
