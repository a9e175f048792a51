"""Admission control for new calls: shed load early and cheaply instead of collapsing.

A B2BUA that accepts every INVITE past its capacity spends its CPU on calls that time out
anyway (retransmissions pile up, every call fails: congestion collapse). sipmask refuses the
excess at the door with ``503 Service Unavailable`` + ``Retry-After`` (RFC 3261 §21.5.4), which
costs a fraction of a bridged call, so goodput stays near the peak under overload.

Two independent gates, both sans-IO (fed a ``now``, no clocks of their own):

- ``max_cps``: a token bucket (burst of one second's worth) capping new calls per second.
- ``busy``: the fraction of wall time the event loop spent handling SIP messages over the
  last window (the asyncio adapter reports it through :meth:`Admission.record_busy`). Above the
  target, the admitted fraction of new calls shrinks multiplicatively; below it, it grows back
  additively (AIMD, as TCP does), so admission settles where the process is just saturated
  instead of oscillating between "accept all" and "refuse all". Which calls are admitted is
  decided by a deterministic accumulator, so tests are reproducible and no randomness is used.

In-dialog requests, ACKs, CANCELs and responses are never refused: finishing admitted calls
is the point.
"""

from __future__ import annotations

__all__ = ["Admission"]

_WINDOW_S = 0.2
_DECREASE = 0.8  # multiplicative decrease per saturated window
_INCREASE = 0.05  # additive increase per unsaturated window
_FLOOR = 0.02  # always let a trickle through, so recovery is seen


class Admission:
    """Decides whether a new call is admitted; see the module docstring."""

    __slots__ = (
        "max_cps", "busy_target", "_tokens", "_last_refill", "_busy_s", "_window_start",
        "fraction", "_accumulator", "busy_ratio", "refused",
    )

    def __init__(self, max_cps: float = 0.0, busy_target: float = 0.9) -> None:
        """``max_cps`` 0 disables the rate gate; ``busy_target`` 0 disables the CPU gate."""
        self.max_cps = max_cps
        self.busy_target = busy_target
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
        if not self.busy_target:
            return
        if self.busy_ratio > self.busy_target:
            self.fraction = max(_FLOOR, self.fraction * _DECREASE)
        elif self.fraction < 1.0:
            self.fraction = min(1.0, self.fraction + _INCREASE)

    def admit(self, now: float) -> bool:
        """True to take the new call; False to answer it 503 + Retry-After."""
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
