"""HMAC-SHA256 signatures on the HTTP requests sipmask sends (lookup hook, event webhooks).

The signed text is the ``X-Sipmask-Timestamp`` value (Unix seconds), a dot, and the exact body
bytes, so a receiver can refuse replays older than a few minutes; the header carries
``sha256=`` and the lower-case hex digest, as GitHub and Stripe webhooks do::

    X-Sipmask-Timestamp: 1700000000
    X-Sipmask-Signature: sha256=5d1c...
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

SIGNATURE_HEADER: Final = "X-Sipmask-Signature"
TIMESTAMP_HEADER: Final = "X-Sipmask-Timestamp"
_PREFIX: Final = "sha256="


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Sipmask-Signature`` value for *body* sent at *timestamp*."""
    mac = hmac.new(_key(secret), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return _PREFIX + mac.hexdigest()


def verify(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """Whether *signature* matches, and (when *now* is given) *timestamp* is within
    *tolerance_s* of it. Compares in constant time."""
    if now is not None:
        try:
            if abs(now - int(timestamp)) > tolerance_s:
                return False
        except ValueError:
            return False
    try:
        expected = sign(secret, timestamp, body)
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, signature.strip())
