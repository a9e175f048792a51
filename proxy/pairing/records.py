"""Records of the administration side of the pairing domain: pool numbers, API tokens, audit
entries, pages of sessions and remembered idempotency keys.

Plain values like those of `model.py`; nothing here touches storage, clocks or crypto.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Generic, Literal, TypeVar

__all__ = [
    "ACTIONS",
    "AuditEntry",
    "IdempotencyRecord",
    "KEEP",
    "Keep",
    "POOL_STATUSES",
    "Page",
    "PoolNumber",
    "PoolStatus",
    "ROLES",
    "Role",
    "SessionFilter",
    "ApiToken",
]

PoolStatus = Literal["active", "draining"]
POOL_STATUSES: Final[tuple[str, ...]] = ("active", "draining")

Role = Literal["admin", "operator", "read-only"]
ROLES: Final[tuple[str, ...]] = ("admin", "operator", "read-only")

ACTIONS: Final[tuple[str, ...]] = (
    "session.create", "session.update", "session.close",
    "pool.add", "pool.drain", "pool.activate", "pool.remove",
    "token.create", "token.revoke",
    "access.denied", "access.expired",
)
"""Every action an audit entry can name."""

T = TypeVar("T")


class Keep:
    """Type of `KEEP`: an update argument left as it is (None means "clear it")."""

    _instance: Keep | None = None

    def __new__(cls) -> Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()
"""Pass for an `update_session` argument that must not change."""


@dataclass(frozen=True, slots=True)
class PoolNumber:
    """A virtual number of the pool. `open_sessions` counts the open sessions that use it
    on either side (a session using it on both sides counts twice)."""

    number: str
    status: PoolStatus
    added_at: float
    open_sessions: int = 0


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API bearer token as stored: the secret itself is never kept, only its SHA-256."""

    id: str
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None
    expires_at: float | None = None
    """When the token stops working (epoch seconds); None: never."""

    @property
    def active(self) -> bool:
        """Not revoked (it may still have expired: see `expired`)."""
        return self.revoked_at is None

    def expired(self, now: float) -> bool:
        """Whether the token is past its `expires_at` at `now`."""
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrative change: who (`actor`, a token id and name or ``cli:USER``), what
    (`action`, one of ACTIONS, on `target`, an id or a virtual number), when, and details that
    never carry a real number (participants appear as keyed tokens)."""

    at: float
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    id: int = 0


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Which sessions `list_sessions` returns. `status` is the *effective* status (an open
    session past its deadline is listed as expired); `participant` is a real E.164 number,
    matched through the keyed HMAC index on either side (never compared in clear); `metadata`
    matches string values of top-level metadata keys; the created bounds are epoch seconds,
    `created_from` inclusive, `created_to` exclusive."""

    status: str | None = None
    participant: str | None = None
    virtual: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    created_from: float | None = None
    created_to: float | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass `next_cursor` back to get the next (None: last page)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A create request remembered under its Idempotency-Key: the keyed hash of its body and
    the session it created (the response is rebuilt from the session, so no real number is
    stored outside the encrypted columns)."""

    scope: str
    key: str
    body_hash: str
    session_id: str
    created_at: float
