"""Per-source request rate limits, as Kamailio's ``pike`` module keeps them: a flood from one
address cannot take capacity from the others.

Every source IP address has a token bucket of ``burst`` tokens refilled at ``rate`` a second.
The transaction layer asks :meth:`SourceLimits.check` about each *new* request only (it calls
the hook after matching, ``TransactionLayer.source_limit``): retransmissions of a transaction in
progress are absorbed by the transaction and never charged nor refused, and ACKs are never
asked about (an ACK is no transaction; refusing one would keep a call's answer retransmitting).
A source out of tokens has its new INVITEs answered ``503`` + Retry-After statelessly (one
answer per INVITE, never more: not amplified) and its other new requests dropped, as pike drops
them. A 503 rather than a drop for INVITEs: a dropped INVITE is retransmitted by an honest peer
(Timer A, seven copies in 32 s) that would charge the bucket again; a 503 stops it at once and
lets a carrier fail over to another server.

Sources in ``trusted`` (the carrier's trunk addresses, a dispatcher in front) are never
limited. Memory is fixed: at most ``max_sources`` buckets, the least recently used forgotten
first (a forgotten source comes back with a full bucket; a flood spread over more addresses
than that is not one per-source limits can stop). Sans-IO: fed a ``now``, no clock of its own.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

from ..observability.logging import get_logger

__all__ = ["SourceLimits"]

_log = get_logger(__name__)

#: how often the worst source of the last interval is logged (one line, only when some were limited)
REPORT_INTERVAL_S = 60.0
_MAX_CLASSIFIED = 65_536

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceLimits:
    """Token buckets per source address; see the module docstring."""

    __slots__ = (
        "rate", "burst", "trusted", "max_sources", "_buckets", "_trusted_hosts",
        "refused_invites", "dropped", "_window", "_window_start",
    )

    def __init__(self, rate: float, burst: float, trusted: Iterable[Network] = (),
                 max_sources: int = 65_536) -> None:
        """``rate``: new requests a second per source (above 0); ``burst``: the bucket's size
        (at least 1); ``trusted``: networks never limited."""
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_sources >= 1")
        self.rate = rate
        self.burst = burst
        self.trusted = tuple(trusted)
        self.max_sources = max_sources
        #: host -> (tokens, when last charged); insertion order is recency (LRU)
        self._buckets: dict[str, tuple[float, float]] = {}
        #: host -> whether it is trusted (parsed once per address)
        self._trusted_hosts: dict[str, bool] = {}
        #: new INVITEs refused with 503 because their source was over its rate
        self.refused_invites = 0
        #: other new requests dropped because their source was over its rate
        self.dropped = 0
        #: refusals per source since the last report
        self._window: dict[str, int] = {}
        self._window_start: float | None = None

    def check(self, host: str, now: float, invite: bool) -> int:
        """0 to let a new request from ``host`` in; else the Retry-After (whole seconds) of
        the 503 a new INVITE (``invite``: one without To tag) gets; another request is
        dropped. Counts the refusal."""
        trusted = self._trusted_hosts.get(host)
        if trusted is None:
            trusted = self._classify(host)
        if trusted:
            return 0
        buckets = self._buckets
        entry = buckets.pop(host, None)
        if entry is None:
            tokens = self.burst
            if len(buckets) >= self.max_sources:
                del buckets[next(iter(buckets))]  # the least recently used
        else:
            tokens = min(self.burst, entry[0] + (now - entry[1]) * self.rate)
        if tokens >= 1.0:
            buckets[host] = (tokens - 1.0, now)
            return 0
        buckets[host] = (tokens, now)
        return self._refuse(host, tokens, now, invite)

    def _refuse(self, host: str, tokens: float, now: float, invite: bool) -> int:
        if invite:
            self.refused_invites += 1
        else:
            self.dropped += 1
        window = self._window
        if len(window) < self.max_sources or host in window:
            window[host] = window.get(host, 0) + 1
        start = self._window_start
        if start is None:
            self._window_start = now  # the first refusal is told at once, then once an interval
            _log.warning("sip.source_limited", source=host, refused=1, sources=1, interval_s=0)
        elif now - start >= REPORT_INTERVAL_S:
            self._report(now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _report(self, now: float) -> None:
        """Log the source refused most since the last report (an IP address, not a number)."""
        window = self._window
        worst = max(window, key=window.__getitem__)
        _log.warning("sip.source_limited", source=worst, refused=window[worst],
                     sources=len(window), interval_s=round(now - (self._window_start or now)))
        self._window = {}
        self._window_start = now

    def _classify(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            trusted = False
        else:
            trusted = any(ip.version == net.version and ip in net for net in self.trusted)
        if len(self._trusted_hosts) >= _MAX_CLASSIFIED:
            self._trusted_hosts.clear()
        self._trusted_hosts[host] = trusted
        return trusted

    @property
    def sources(self) -> int:
        """Sources with a bucket now (at most ``max_sources``)."""
        return len(self._buckets)
