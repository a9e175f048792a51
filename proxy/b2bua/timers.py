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
        """Stop the timer from firing."""
        self.cancelled = True


class TimerHeap:
    """Deadlines ordered in a heap; cancelled entries are skipped when popped."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = count()

    def schedule(self, deadline: float, callback: Callable[[float], None]) -> TimerHandle:
        """Call ``callback(now)`` once ``now >= deadline``."""
        handle = TimerHandle(deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._seq), handle))
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
