"""Value types of the pairing domain: participants, sessions, matches, CDRs, errors.

A *session* (a pairing) joins two participants A and B. Each participant has a real number
(E.164) and a *virtual* number: the number that participant dials to reach the other, which is
also the caller ID it sees when the other calls. The B2BUA's lookup contract is::

    (caller=A.number, dialed=A.virtual) -> Match(session_id, callee=B.number, present=B.virtual)
    (caller=B.number, dialed=B.virtual) -> Match(session_id, callee=A.number, present=A.virtual)

These are plain values: nothing here touches storage, clocks or crypto.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .policy import DEFAULT_POLICY, CallPolicy, SessionPolicy

SessionStatus = Literal["open", "closed", "expired"]
SessionMode = Literal["voice", "message"]

OPEN: Final = "open"
CLOSED: Final = "closed"
EXPIRED: Final = "expired"
STATUSES: Final[tuple[str, ...]] = (OPEN, CLOSED, EXPIRED)
MODES: Final[tuple[str, ...]] = ("voice", "message")


class PairingError(Exception):
    """Base class of every error raised by the pairing domain."""


class ConflictError(PairingError):
    """A new session would make calls unroutable (a participant already has an open session
    on the same virtual number). The message never contains a real number."""


class NotFound(PairingError):
    """No session (or other record) with the given id."""


@dataclass(frozen=True, slots=True)
class Participant:
    """One side of a session: its real E.164 `number` and the `virtual` number it dials."""

    number: str
    virtual: str


@dataclass(frozen=True, slots=True)
class Session:
    """A pairing between participants `a` and `b`.

    `expires_at` is an absolute deadline (epoch seconds); `ttl_s` an inactivity timeout counted
    from `last_activity`, which every call moves forward (see `touch`). Either may be None.
    """

    id: str
    a: Participant
    b: Participant
    status: SessionStatus
    created_at: float
    expires_at: float | None
    ttl_s: float | None
    last_activity: float
    metadata: dict[str, Any] = field(default_factory=dict)
    mode: SessionMode = "voice"
    policy: SessionPolicy = DEFAULT_POLICY

    def deadline(self) -> float:
        """The moment this session stops being active if nothing touches it (inf: never)."""
        hard = math.inf if self.expires_at is None else self.expires_at
        idle = math.inf if self.ttl_s is None else self.last_activity + self.ttl_s
        return min(hard, idle)

    def is_active(self, now: float) -> bool:
        """True when the session is open and neither its expiry nor its inactivity TTL passed."""
        return self.status == OPEN and now < self.deadline()

    def effective_status(self, now: float) -> SessionStatus:
        """The status as of `now`: an open session whose deadline passed reads as expired."""
        if self.status == OPEN and not now < self.deadline():
            return "expired"
        return self.status


@dataclass(frozen=True, slots=True)
class Match:
    """Result of a successful lookup: bridge the call to `callee`, presenting `present`.

    `mode` is the session's: "voice" sessions carry calls and SIP MESSAGEs, "message"
    sessions MESSAGEs only (an INVITE gets the uniform rejection). `policy` is what the
    session's policy asks of this direction's calls (None: nothing, the config's defaults)."""

    session_id: str
    callee: str
    present: str
    mode: str = "voice"
    policy: CallPolicy | None = None


@dataclass(frozen=True, slots=True)
class Cdr:
    """Call detail record. Numbers and Call-IDs appear only as keyed tokens, never in clear.

    `outcome` is a short word ("answered", "busy", "no_answer", "failed", "cancelled", ...),
    `sip_code` the final SIP status (0 if none), `cause` a free-text reason (Reason header,
    BYE side, ...), `duration_s` the answered duration (0.0 when never answered).
    """

    call_id_token: str
    session_id: str | None
    caller_token: str
    callee_token: str
    started_at: float
    answered_at: float | None
    ended_at: float
    outcome: str
    sip_code: int
    cause: str
    duration_s: float


def cdr_payload(cdr: Cdr) -> dict[str, Any]:
    """The ``call.ended`` payload of a CDR (tokens only, as the CDR holds them)."""
    return {
        "session_id": cdr.session_id,
        "call_id_token": cdr.call_id_token,
        "caller_token": cdr.caller_token,
        "callee_token": cdr.callee_token,
        "started_at": cdr.started_at,
        "answered_at": cdr.answered_at,
        "ended_at": cdr.ended_at,
        "outcome": cdr.outcome,
        "sip_code": cdr.sip_code,
        "cause": cdr.cause,
        "duration_s": cdr.duration_s,
    }


def new_session_id() -> str:
    """A random session id: ``ps_`` + 16 hex chars (never starts with '-', safe on a CLI)."""
    return "ps_" + secrets.token_hex(8)


def new_session(
    a: Participant, b: Participant, *, expires_at: float | None, ttl_s: float | None,
    metadata: Mapping[str, Any] | None, mode: str, now: float,
    policy: SessionPolicy = DEFAULT_POLICY,
) -> Session:
    """An open session between `a` and `b`, its arguments checked (not yet stored); the
    input rules every store applies (the contract suite holds them all to them)."""
    if a.number == b.number:
        raise PairingError("a session needs two different participants")
    if mode not in MODES:
        raise PairingError(f"mode must be one of {', '.join(MODES)}")
    if ttl_s is not None and ttl_s <= 0:
        raise PairingError("ttl must be positive")
    if expires_at is not None and expires_at <= now:
        raise PairingError("expiry must be in the future")
    return Session(
        id=new_session_id(), a=a, b=b, status="open", created_at=now,
        expires_at=expires_at, ttl_s=ttl_s, last_activity=now, metadata=dict(metadata or {}),
        mode=mode,  # type: ignore[arg-type]  # checked against MODES above
        policy=policy,
    )
