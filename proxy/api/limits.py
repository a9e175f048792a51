"""Request rate limits of the API: token buckets per key (a token's id, a source address).

Two limits guard the API: every authenticated token may make ``per_token_rate`` requests a
second (bursts of ``per_token_burst``), and a source address may fail authentication only
``auth_failures_burst`` times (refilled at ``auth_failures_rate`` a second) before its requests
get 429 without even a token lookup, so guessing tokens, or flooding the store with lookups of
bad ones, goes nowhere. Refusals are logged, at most one line per key and interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Limits", "TokenBuckets"]

#: keys remembered per bucket set; past it the fullest (least used) are forgotten
_MAX_KEYS = 10_000


@dataclass(slots=True)
class TokenBuckets:
    """A token bucket per key: ``take(key, now)`` is False when the key is out of tokens."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def _level(self, key: str, now: float) -> float:
        """Tokens the key has now (a key not seen yet has a full bucket)."""
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def take(self, key: str, now: float) -> bool:
        tokens = self._level(key, now)
        ok = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > _MAX_KEYS:
            self._forget_full(now)
        return ok

    def peek(self, key: str, now: float) -> bool:
        """Whether ``take`` would succeed now, without taking."""
        return self._level(key, now) >= 1.0

    def retry_after(self, key: str, now: float) -> int:
        """Whole seconds until the key has a token again (0: it has one)."""
        tokens = self._level(key, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate)) if tokens < 1.0 else 0

    def _forget_full(self, now: float) -> None:
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]


@dataclass(slots=True)
class Limits:
    """The API's two limits (defaults: 50 requests/s per token, bursts of 100; 10 failed
    authentications per source, one more every 6 s)."""

    per_token_rate: float = 50.0
    per_token_burst: float = 100.0
    auth_failures_rate: float = 1 / 6
    auth_failures_burst: float = 10.0
    tokens: TokenBuckets = field(init=False)
    failures: TokenBuckets = field(init=False)
    #: key -> when a refusal of it was last logged
    logged: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # per_token_rate 0: no per-token limit (the buckets are then never asked)
        self.tokens = TokenBuckets(self.per_token_rate or 1.0, self.per_token_burst)
        self.failures = TokenBuckets(self.auth_failures_rate, self.auth_failures_burst)

    def should_log(self, key: str, now: float, interval: float = 10.0) -> bool:
        """True at most once per ``interval`` for ``key``."""
        last = self.logged.get(key)
        if last is not None and now - last < interval:
            return False
        if len(self.logged) > _MAX_KEYS:
            self.logged.clear()
        self.logged[key] = now
        return True
