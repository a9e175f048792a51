"""A deadline heap for the B2BUA's own timers (ring timeout, failover, session expiry, max duration).

Sans-IO like the SIP core: callers pass ``now`` and ask for the next deadline; the asyncio
adapter arms one loop timer for whichever comes first.

Cancelled timers are deleted lazily (skipped when popped), but a cancelled handle drops its
callback at once, and the heap is rebuilt without them once they are the majority: the
maximum-duration timer of every answered call (hours) is cancelled when the call ends, and
must not keep the call alive until its deadline.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count

#: cancelled entries tolerated before a compaction is considered (they must also be half the heap)
COMPACT_AFTER = 4096


def _cancelled_callback(*args: object) -> None:
    pass


#: ``schedule`` without ``arg``: the callback is called with ``now`` alone
_NO_ARG = object()


class TimerHandle:
    """A scheduled callback; ``cancel()`` makes it a no-op (lazy deletion from the heap)."""

    __slots__ = ("deadline", "callback", "arg", "cancelled", "_heap")

    def __init__(self, deadline: float, callback: Callable[..., None], heap: TimerHeap | None = None,
                 arg: object = _NO_ARG) -> None:
        self.deadline = deadline
        self.callback = callback
        self.arg = arg
        self.cancelled = False
        #: the heap still holding this handle's entry
        self._heap = heap

    def cancel(self) -> None:
        """Stop the timer from firing."""
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = _cancelled_callback
        self.arg = None
        heap = self._heap
        if heap is not None:
            self._heap = None
            heap._forget_one()


class TimerHeap:
    """Deadlines ordered in a heap; cancelled entries are skipped when popped."""

    __slots__ = ("_heap", "_seq", "_dead")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = count()
        #: cancelled entries still in the heap
        self._dead = 0

    def schedule(self, deadline: float, callback: Callable[..., None], arg: object = _NO_ARG) -> TimerHandle:
        """Call ``callback(now)`` once ``now >= deadline``; with ``arg``, ``callback(arg, now)``.
        A bound method made once and an ``arg`` cost no allocation per timer, where a closure
        (function, cell, defaults) costs ~250 bytes for as long as the timer is armed: the
        maximum-duration timer of every established call."""
        handle = TimerHandle(deadline, callback, self, arg)
        heapq.heappush(self._heap, (deadline, next(self._seq), handle))
        return handle

    def next_deadline(self) -> float | None:
        """Earliest live deadline."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._dead -= 1
        return heap[0][0] if heap else None

    def fire(self, now: float, on_error: Callable[[object, Exception, float], None] | None = None) -> int:
        """Run every callback that is due; returns how many ran. A callback that raises is
        handed to ``on_error(arg, exc, now)`` (the B2BUA ends its call) and the others still
        run; without ``on_error`` the exception propagates."""
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            _, _, handle = heapq.heappop(heap)
            if handle.cancelled:
                self._dead -= 1
                continue
            handle.cancelled = True
            handle._heap = None
            arg = handle.arg
            try:
                if arg is _NO_ARG:
                    handle.callback(now)
                else:
                    handle.arg = None
                    handle.callback(arg, now)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(arg, exc, now)
            fired += 1
        return fired

    def __len__(self) -> int:
        return len(self._heap) - self._dead

    def _forget_one(self) -> None:
        """A handle still in the heap was cancelled."""
        self._dead = dead = self._dead + 1
        if dead > COMPACT_AFTER and 2 * dead > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._dead = 0
