"""The B2BUA's own timers (ring timeout, failover, session expiry, max duration)."""

from __future__ import annotations

import gc
import weakref

from proxy.b2bua.timers import TimerHeap


class _Owner:
    """Stands for a call that a timer's closure holds."""


def test_due_callbacks_fire_in_deadline_order_and_cancelled_ones_never() -> None:
    heap = TimerHeap()
    fired: list[str] = []
    heap.schedule(3.0, lambda now: fired.append("c"))
    heap.schedule(1.0, lambda now: fired.append("a"))
    dropped = heap.schedule(2.0, lambda now: fired.append("x"))
    heap.schedule(2.5, lambda now: fired.append("b"))
    dropped.cancel()
    assert heap.next_deadline() == 1.0
    assert heap.fire(2.9) == 2
    assert fired == ["a", "b"]
    assert heap.next_deadline() == 3.0
    assert len(heap) == 1


def test_cancel_lets_go_of_what_the_callback_holds() -> None:
    heap = TimerHeap()
    owner = _Owner()
    ref = weakref.ref(owner)
    handle = heap.schedule(14_400.0, lambda now, o=owner: None)  # a max-duration timer: hours
    del owner
    handle.cancel()
    gc.collect()
    assert ref() is None


def test_cancelled_entries_do_not_pile_up() -> None:
    """Every answered call cancels its ring timer; every ended call its max-duration timer."""
    heap = TimerHeap()
    for i in range(100_000):
        heap.schedule(14_400.0 + i, lambda now: None).cancel()
    assert len(heap._heap) < 20_000
    keep = heap.schedule(1.0, lambda now: None)
    assert heap.next_deadline() == 1.0 and not keep.cancelled
