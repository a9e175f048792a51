"""Admission control for new calls: shed load early and cheaply instead of collapsing.

A B2BUA that accepts every INVITE past its capacity spends its CPU on calls that time out
anyway (retransmissions pile up, every call fails: congestion collapse). sipmask refuses the
excess at the door with ``503 Service Unavailable`` + ``Retry-After`` (RFC 3261 §21.5.4), which
costs a fraction of a bridged call, so goodput stays near the peak under overload.

Four independent gates, all sans-IO (fed a ``now``, no clocks of their own):

- queue delay (on by default): how long each new INVITE waited in the socket's receive queue
  (the UDP transport reads each datagram's kernel receive time, ``SO_TIMESTAMPNS``). Once a
  whole 1 s window of INVITEs queued longer than the target (``calls.overload_queue_delay_ms``,
  200 ms; the window's shortest wait above it: a standing queue, as in CoDel), every new INVITE
  that waited longer than the target is refused, until a window in which none did. While
  refusing, the queue, and with it the latency every admitted call sees, stays near the target,
  below the peers' T1 (500 ms): no retransmissions pile up, and the CPU goes to the calls
  already admitted; refusals are stateless and cost a fraction of a call. A stall (a full GC
  pass, a hiccup of the VM) makes a queue that drains within the window: its INVITEs are
  late but admitted, and nothing is shed.
- ``max_cps``: a token bucket (burst of one second's worth) capping new calls per second.
- retransmissions (on by default): the share of INVITEs retransmitted because sipmask was late
  (§17.2: the copy was already waiting in the socket when sipmask handled the original, so the
  peer's T1 fired before sipmask could answer; ``TransactionLayer.late_retransmissions``) per
  window of new INVITEs, above the
  target in two 500 ms windows in a row (a single stall, such as a full GC pass, is not
  overload). Below
  saturation, or saturated in a closed loop (a benchmark with N calls in flight), it stays near
  0; once requests queue for more than T1 (500 ms) it rises at once. It measures what the
  peers suffer, where CPU load alone cannot tell a busy-but-keeping-up process from one that
  is falling behind. Retransmissions that answer a loss (the copy arrived after sipmask had
  answered) or a source replaying one request say nothing about sipmask's load and are not
  counted: at 20% packet loss, counting them refused 2-3% of calls with sipmask at 20% CPU.
- ``busy`` (off by default): the fraction of wall time the event loop spent handling SIP
  messages over the last window (the asyncio adapter reports it through
  :meth:`Admission.record_busy`).

When a gate reports pressure, the admitted fraction of new calls shrinks multiplicatively;
without pressure it grows back additively (AIMD, as TCP does), so admission settles where the
process keeps up instead of oscillating between "accept all" and "refuse all". Which calls are
admitted is decided by a deterministic accumulator, so tests are reproducible and no
randomness is used.

In-dialog requests, ACKs, CANCELs and responses are never refused: finishing admitted calls
is the point.
"""

from __future__ import annotations

__all__ = ["Admission"]

_WINDOW_S = 0.2
_RETRANS_WINDOW_S = 0.5
_DELAY_WINDOW_S = 1.0
_RETRANS_STREAK = 2  # windows in a row: one stall (a full GC pass) must not shed calls
_DECREASE = 0.9  # multiplicative decrease per window under pressure
_INCREASE = 0.1  # additive increase per window without pressure
_FLOOR = 0.02  # always let a trickle through, so recovery is seen


class Admission:
    """Decides whether a new call is admitted; see the module docstring."""

    __slots__ = (
        "max_cps", "busy_target", "_tokens", "_last_refill", "_busy_s", "_window_start",
        "fraction", "_accumulator", "busy_ratio", "refused", "retrans_target",
        "_arrivals", "_retrans_seen", "_retrans_window_start", "retrans_ratio", "_streak",
        "delay_target", "stale", "delay_shedding", "_dwin_start", "_dwin_min", "_dwin_max",
    )

    def __init__(self, max_cps: float = 0.0, busy_target: float = 0.0,
                 retrans_target: float = 0.2, delay_target: float = 0.0) -> None:
        """``max_cps`` 0 disables the rate gate; ``busy_target`` 0 the CPU gate;
        ``retrans_target`` 0 the retransmission gate; ``delay_target`` (seconds) 0 the
        queue-delay gate."""
        self.max_cps = max_cps
        self.delay_target = delay_target
        #: new calls refused by the queue-delay gate
        self.stale = 0
        #: a standing queue was seen: INVITEs that waited past the target are refused
        self.delay_shedding = False
        self._dwin_start: float | None = None
        self._dwin_min = 0.0
        self._dwin_max = 0.0
        self.busy_target = busy_target
        self.retrans_target = retrans_target
        self._arrivals = 0
        self._retrans_seen: int | None = None
        self._retrans_window_start: float | None = None
        self.retrans_ratio = 0.0
        self._streak = 0
        self._tokens = max_cps
        self._last_refill: float | None = None
        self._busy_s = 0.0
        self._window_start: float | None = None
        self.fraction = 1.0
        self._accumulator = 0.0
        self.busy_ratio = 0.0
        self.refused = 0

    def record_busy(self, seconds: float, now: float) -> None:
        """The loop spent ``seconds`` handling messages; closes a window every 200 ms."""
        self._busy_s += seconds
        start = self._window_start
        if start is None:
            self._window_start = now
            return
        elapsed = now - start
        if elapsed < _WINDOW_S:
            return
        self.busy_ratio = min(1.0, self._busy_s / elapsed)
        self._busy_s = 0.0
        self._window_start = now
        if self.busy_target:
            self._pressure(self.busy_ratio > self.busy_target)

    def _pressure(self, high: bool) -> None:
        if high:
            self.fraction = max(_FLOOR, self.fraction * _DECREASE)
        elif self.fraction < 1.0:
            self.fraction = min(1.0, self.fraction + _INCREASE)

    def _observe_retransmissions(self, now: float, retransmissions: int) -> None:
        """One window per 500 ms: retransmitted requests / new INVITEs that arrived in it;
        pressure once two windows in a row are above the target."""
        self._arrivals += 1
        start = self._retrans_window_start
        if start is None or self._retrans_seen is None:
            self._retrans_window_start = now
            self._retrans_seen = retransmissions
            self._arrivals = 0
            return
        if now - start < _RETRANS_WINDOW_S:
            return
        delta = retransmissions - self._retrans_seen
        self.retrans_ratio = delta / max(self._arrivals, 1)
        self._retrans_seen = retransmissions
        self._retrans_window_start = now
        self._arrivals = 0
        self._streak = self._streak + 1 if self.retrans_ratio > self.retrans_target else 0
        self._pressure(self._streak >= _RETRANS_STREAK)

    def _observe_delay(self, now: float, delay: float) -> None:
        """Windows of 1 s of new INVITEs: shedding starts after one whose shortest wait was
        above the target, and stops after one whose longest was not."""
        start = self._dwin_start
        if start is not None and now - start < _DELAY_WINDOW_S:
            if delay < self._dwin_min:
                self._dwin_min = delay
            elif delay > self._dwin_max:
                self._dwin_max = delay
            return
        if start is not None:
            if self._dwin_min > self.delay_target:
                self.delay_shedding = True
            elif self._dwin_max <= self.delay_target:
                self.delay_shedding = False
        self._dwin_start = now
        self._dwin_min = self._dwin_max = delay

    def admit(self, now: float, retransmissions: int | None = None, delay: float = 0.0) -> bool:
        """True to take the new call; False to answer it 503 + Retry-After.

        ``retransmissions``: the transaction layer's running count of INVITEs retransmitted
        because sipmask was late (``TransactionLayer.late_retransmissions``); ``delay``: how long this
        INVITE waited in the receive queue (seconds; 0 when the transport cannot tell)."""
        if self.retrans_target and retransmissions is not None:
            self._observe_retransmissions(now, retransmissions)
        if self.delay_target:
            self._observe_delay(now, delay)
            if self.delay_shedding and delay > self.delay_target:
                self.stale += 1
                self.refused += 1
                return False
        if self.max_cps:
            last = self._last_refill
            if last is not None:
                self._tokens = min(self.max_cps, self._tokens + (now - last) * self.max_cps)
            self._last_refill = now
            if self._tokens < 1.0:
                self.refused += 1
                return False
        if self.fraction < 1.0:
            self._accumulator += self.fraction
            if self._accumulator < 1.0:
                self.refused += 1
                return False
            self._accumulator -= 1.0
        if self.max_cps:
            self._tokens -= 1.0
        return True
