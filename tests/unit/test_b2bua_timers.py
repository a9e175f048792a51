"""The B2BUA's timer heap: order, cancellation, compaction, nothing pinned once cancelled."""

from __future__ import annotations

import gc
import weakref

from proxy.b2bua.timers import COMPACT_AFTER, TimerHeap


class _Call:
    def __init__(self) -> None:
        self.fired: list[float] = []


def test_callbacks_fire_in_deadline_order_once() -> None:
    heap = TimerHeap()
    fired: list[str] = []
    heap.schedule(5.0, lambda t: fired.append("b"))
    heap.schedule(1.0, lambda t: fired.append("a"))
    heap.schedule(5.0, lambda t: fired.append("c"))
    assert heap.next_deadline() == 1.0 and len(heap) == 3
    assert heap.fire(4.0) == 1 and fired == ["a"]
    assert heap.fire(5.0) == 2 and fired == ["a", "b", "c"]
    assert heap.next_deadline() is None and len(heap) == 0 and heap.fire(10.0) == 0


def test_cancelled_timers_do_not_fire() -> None:
    heap = TimerHeap()
    fired: list[float] = []
    first = heap.schedule(1.0, fired.append)
    heap.schedule(2.0, fired.append)
    first.cancel()
    first.cancel()
    assert len(heap) == 1 and heap.next_deadline() == 2.0
    assert heap.fire(3.0) == 1 and fired == [3.0]


def test_a_cancelled_timer_releases_its_callback() -> None:
    heap = TimerHeap()
    call = _Call()
    handle = heap.schedule(14400.0, lambda t, c=call: c.fired.append(t))
    ref = weakref.ref(call)
    del call
    handle.cancel()
    gc.collect()
    assert ref() is None


def test_cancelled_entries_are_compacted_when_they_dominate() -> None:
    heap = TimerHeap()
    fired: list[float] = []
    heap.schedule(20000.0, fired.append)
    for n in range(COMPACT_AFTER + 2):
        heap.schedule(14400.0 + n, fired.append).cancel()
    assert len(heap._heap) < COMPACT_AFTER and len(heap) == 1
    assert heap.fire(30000.0) == 1 and fired == [30000.0]


def test_cancelling_a_fired_timer_is_harmless() -> None:
    heap = TimerHeap()
    handle = heap.schedule(1.0, lambda t: None)
    assert heap.fire(1.0) == 1
    handle.cancel()
    assert len(heap) == 0 and heap._dead == 0


def test_a_timer_with_an_argument_calls_back_with_it_and_lets_go_of_it() -> None:
    heap = TimerHeap()
    fired: list[tuple[_Call, float]] = []

    def on_timer(call: _Call, now: float) -> None:
        fired.append((call, now))

    call = _Call()
    heap.schedule(2.0, on_timer, call)
    held = _Call()
    cancelled = heap.schedule(1.0, on_timer, held)
    ref_held = weakref.ref(held)
    del held
    cancelled.cancel()
    gc.collect()
    assert ref_held() is None  # a cancelled timer drops its argument at once
    assert heap.fire(3.0) == 1 and fired == [(call, 3.0)]
    ref = weakref.ref(call)
    del call, fired[:]
    gc.collect()
    assert ref() is None  # nor does a fired one keep it
