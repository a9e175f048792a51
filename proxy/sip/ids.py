"""Identifiers the SIP core mints: Via branches, From/To tags and Call-IDs (RFC 3261 §8.1.1).

The core never draws randomness itself (sans-IO): an :class:`IdGenerator` is injected. Tests
use :class:`SequentialIds`; the application passes ``SecretIds(os.urandom)``.
"""

from __future__ import annotations

from base64 import b32encode
from collections.abc import Callable
from typing import Protocol

#: RFC 3261 §8.1.1.7: every branch minted by a 3261-compliant element starts with this.
MAGIC_COOKIE = "z9hG4bK"


class IdGenerator(Protocol):
    """Source of fresh identifiers."""

    def branch(self) -> str:
        """A Via branch, unique in space and time, starting with :data:`MAGIC_COOKIE`."""
        ...

    def tag(self) -> str:
        """A From/To tag with at least 32 bits of randomness (§19.3)."""
        ...

    def call_id(self) -> str:
        """A globally unique Call-ID (§8.1.1.4)."""
        ...


class SequentialIds:
    """Deterministic ids for tests: ``z9hG4bKt1``, ``t2``, ``t3-call``..."""

    __slots__ = ("prefix", "_n")

    def __init__(self, prefix: str = "t") -> None:
        self.prefix = prefix
        self._n = 0

    def branch(self) -> str:
        self._n += 1
        return f"{MAGIC_COOKIE}{self.prefix}{self._n}"

    def tag(self) -> str:
        self._n += 1
        return f"{self.prefix}{self._n}"

    def call_id(self) -> str:
        self._n += 1
        return f"{self.prefix}{self._n}-call"


class SecretIds:
    """Unpredictable ids from an injected entropy source (``os.urandom`` in the application).

    One call to ``source`` per id; base32 (lower-case, no padding: byte counts are multiples
    of 5) keeps them compact and token-safe: branch 80 bits, tag 80 bits, Call-ID 120 bits.
    """

    __slots__ = ("_source",)

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source = source

    def branch(self) -> str:
        return MAGIC_COOKIE + b32encode(self._source(10)).decode("ascii").lower()

    def tag(self) -> str:
        return b32encode(self._source(10)).decode("ascii").lower()

    def call_id(self) -> str:
        return b32encode(self._source(15)).decode("ascii").lower()
