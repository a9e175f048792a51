"""The armed timers of the transaction layer, in one FIFO queue per delay.

Every timer a machine arms has a delay from a small set (T1 doubled up to T2 or 64*T1, T4,
64*T1, 0 on reliable transports), and the layer's clock does not go back, so the timers armed
with one delay are armed in deadline order: each queue stays sorted with O(1) appends and
pops, and the earliest deadline is the smallest head (cached between changes). A clock that
does go back is tolerated: the entry is inserted in order (a slow path).

An entry is a list ``[deadline, seq, transaction, timer]`` (cheaper to build than an object;
``seq`` orders equal deadlines by arming). Disarming leaves a tombstone: the entry's
transaction becomes None (the transaction is freed at once) and the entry stays queued until it
reaches the head of its queue, or until tombstones dominate and every queue is compacted.
"""

from __future__ import annotations

from collections import deque
from math import inf
from typing import TYPE_CHECKING, Any

from .model import Input

if TYPE_CHECKING:
    from .model import ClientTransaction, ServerTransaction

    AnyTransaction = ClientTransaction | ServerTransaction

#: tombstones tolerated before a compaction is considered (they must also be half the entries)
COMPACT_AFTER = 4096

#: ``[deadline, seq, transaction or None, timer]``
ArmedTimer = list[Any]


class TimerQueues:
    """Armed transaction timers, bucketed by delay; see the module docstring. The
    :class:`~.layer.TransactionLayer` is one: ``arm``/``disarm`` are the machines' timer
    effects."""

    __slots__ = ("_by_delay", "_queues", "_seq", "_size", "_dead", "_next", "_stale")

    def __init__(self) -> None:
        self._by_delay: dict[float, deque[ArmedTimer]] = {}
        self._queues: list[deque[ArmedTimer]] = []
        self._seq = 0
        #: entries queued, tombstones included
        self._size = 0
        self._dead = 0
        #: the earliest live deadline (inf: none) unless ``_stale``
        self._next = inf
        self._stale = False

    @property
    def armed_timers(self) -> int:
        """Live armed timers."""
        return self._size - self._dead

    def arm(self, txn: AnyTransaction, timer: Input, delay: float, now: float) -> None:
        """Arm (or re-arm) ``timer`` of ``txn`` to fire at ``now + delay``."""
        deadline = now + delay
        self._seq = seq = self._seq + 1
        entry = [deadline, seq, txn, timer]
        old = txn.armed.get(timer)
        if old is not None:
            self._bury(old)
        txn.armed[timer] = entry
        queue = self._by_delay.get(delay)
        if queue is None:
            queue = self._by_delay[delay] = deque()
            self._queues.append(queue)
        if queue and queue[-1][0] > deadline:
            _insert_sorted(queue, entry)
        else:
            queue.append(entry)
        self._size += 1
        if deadline < self._next:
            self._next = deadline

    def disarm(self, txn: AnyTransaction, *timers: Input) -> None:
        """Disarm those of ``timers`` that are armed for ``txn``."""
        armed = txn.armed
        for timer in timers:
            entry = armed.pop(timer, None)
            if entry is not None:
                self._bury(entry)
        if self._dead > COMPACT_AFTER and 2 * self._dead > self._size:
            self._compact()

    def disarm_all(self, txn: AnyTransaction) -> None:
        """Disarm every timer of ``txn``."""
        if txn.armed:
            self.disarm(txn, *txn.armed)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a live timer (when the layer's ``handle_timers`` must next
        be called), or None."""
        if self._stale:
            self._scan(-inf)
        return None if self._next == inf else self._next

    def pop_due(self, now: float) -> tuple[AnyTransaction, Input] | None:
        """Remove and return the earliest live timer due at ``now`` (ties: arming order), or
        None when none is due."""
        if not self._stale and self._next > now:
            return None
        queue = self._scan(now)
        if queue is None:
            return None
        _, _, txn, timer = queue.popleft()
        self._size -= 1
        del txn.armed[timer]
        self._stale = True
        return txn, timer

    def _bury(self, entry: ArmedTimer) -> None:
        entry[2] = None
        self._dead += 1
        if entry[0] <= self._next:
            self._stale = True

    def _scan(self, now: float) -> deque[ArmedTimer] | None:
        """Drop the tombstones at the heads, refresh the earliest deadline and return the queue
        whose head is the first timer due at ``now`` (None if none is)."""
        earliest = inf
        best: ArmedTimer | None = None
        best_queue: deque[ArmedTimer] | None = None
        for queue in self._queues:
            while queue and queue[0][2] is None:
                queue.popleft()
                self._size -= 1
                self._dead -= 1
            if not queue:
                continue
            head = queue[0]
            deadline = head[0]
            if deadline < earliest:
                earliest = deadline
            if deadline <= now and (best is None or head[:2] < best[:2]):
                best = head
                best_queue = queue
        self._next = earliest
        self._stale = False
        return best_queue

    def _compact(self) -> None:
        for queue in self._queues:
            live = [entry for entry in queue if entry[2] is not None]
            queue.clear()
            queue.extend(live)
        self._size -= self._dead
        self._dead = 0


def _insert_sorted(queue: deque[ArmedTimer], entry: ArmedTimer) -> None:
    index = len(queue)
    while index and queue[index - 1][0] > entry[0]:
        index -= 1
    queue.insert(index, entry)
