"""A deadline heap for the B2BUA's own timers (ring timeout, failover, session expiry, max duration).

Sans-IO like the SIP core: callers pass ``now`` and ask for the next deadline; the asyncio
adapter arms one loop timer for whichever comes first.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count


class TimerHandle:
    """A scheduled callback; ``cancel()`` makes it a no-op (lazy deletion from the heap)."""

    __slots__ = ("deadline", "callback", "cancelled")

    def __init__(self, deadline: float, callback: Callable[[float], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the timer from firing. The callback (and the call its closure holds) is let
        go now, not when the heap entry reaches its deadline (a max-duration timer is hours)."""
        self.cancelled = True
        self.callback = _nothing


def _nothing(now: float) -> None:
    """The callback of a cancelled timer."""


#: compact once this many cancelled entries make up more than half of the heap
_COMPACT_AFTER = 4096


class TimerHeap:
    """Deadlines ordered in a heap; cancelled entries are skipped when popped, and dropped in
    one pass when they outnumber the live ones (every answered call cancels its ring timer,
    every ended call its max-duration timer: without compaction the heap would hold hours of
    cancelled entries)."""

    __slots__ = ("_heap", "_seq", "_scheduled")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = count()
        self._scheduled = 0  # entries pushed since the last compaction

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> TimerHandle:
        """Call ``callback(now)`` once ``now >= deadline``."""
        handle = TimerHandle(deadline, callback)
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._seq), handle))
        self._scheduled += 1
        if self._scheduled > _COMPACT_AFTER and len(heap) > 2 * _COMPACT_AFTER:
            self._scheduled = 0
            live = [entry for entry in heap if not entry[2].cancelled]
            if 2 * len(live) < len(heap):
                heapq.heapify(live)
                self._heap = live
        return handle

    def next_deadline(self) -> float | None:
        """Earliest live deadline."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire(self, now: float) -> int:
        """Run every callback that is due; returns how many ran."""
        heap = self._heap
        fired = 0
        while heap and heap[0][0] <= now:
            _, _, handle = heapq.heappop(heap)
            if handle.cancelled:
                continue
            handle.cancelled = True
            handle.callback(now)
            fired += 1
        return fired

    def __len__(self) -> int:
        return sum(1 for _, _, h in self._heap if not h.cancelled)
