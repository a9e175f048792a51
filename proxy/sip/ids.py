"""Identifiers the SIP core mints: Via branches, From/To tags and Call-IDs (RFC 3261 §8.1.1).

The core never draws randomness itself (sans-IO): an :class:`IdGenerator` is injected. Tests
use :class:`SequentialIds`; the application passes ``SecretIds(os.urandom)``.
"""

from __future__ import annotations

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

    Entropy is drawn ``_CHUNK`` bytes at a time and sliced (one syscall per ~400 ids instead of
    one per id) and rendered as lower-case hex, which ``bytes.hex`` does in C: base32 through
    ``base64.b32encode`` is pure Python on 3.11 and cost ~3% of a call's CPU (py-spy, sipbench).
    Sizes: branch 80 bits, tag 64 bits, Call-ID 128 bits, all token-safe.
    """

    __slots__ = ("_source", "_buf", "_pos")
    _CHUNK = 4096

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._source = source
        self._buf = b""
        self._pos = 0

    def _take(self, n: int) -> str:
        pos = self._pos
        end = pos + n
        if end > len(self._buf):
            self._buf = self._source(self._CHUNK)
            pos, end = 0, n
        self._pos = end
        return self._buf[pos:end].hex()

    def branch(self) -> str:
        return MAGIC_COOKIE + self._take(10)

    def tag(self) -> str:
        return self._take(8)

    def call_id(self) -> str:
        return self._take(16)
