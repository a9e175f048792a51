"""The store contract: what `PairingService`, the CLI and the API need from a pairing store,
and what every backend shares.

Two backends implement it: `SqliteStore` (`stores/sqlite/`, embedded default, one file) and
`RedisStore` (`stores/redis/`, several sipmask workers sharing one table). Both pass one
contract test suite (tests/unit/test_store_contract.py), which is the executable form of the
docstrings below. A backend imports this module, never a sibling backend: what two of them
need (`StoreError`, the key-check label, the pool's "exhausted" message, the idempotency
window, token-name and update checks, cursors) lives here.

Conventions shared by every backend:

- Real numbers reach the backend only as AES-GCM blobs plus a keyed HMAC index
  (`NumberVault`); CDRs carry tokens only. No real number appears in a key name, a log line
  or an exception message.
- Every change to a session (create, close, expire) takes the next value of one counter;
  `changes_since(seq)` returns each changed session once, in its latest state, oldest change
  first. Touches (inactivity bookkeeping) are not changes.
- Methods are synchronous. The running proxy calls them off the event loop (app.py runs
  housekeeping in a worker thread); the per-call lookup never reaches a store.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from ..crypto import NumberVault
from ..model import Cdr, PairingError, Participant, Session
from ..policy import DEFAULT_POLICY, SessionPolicy
from ..records import (
    ROLES,
    ApiToken,
    AuditEntry,
    IdempotencyRecord,
    Keep,
    Page,
    PoolNumber,
    SessionFilter,
)

__all__ = [
    "DialogStore",
    "EXHAUSTED",
    "IDEMPOTENCY_TTL_S",
    "KEY_CHECK_LABEL",
    "AdminStore",
    "ApiStore",
    "PairingStore",
    "PoolStore",
    "SessionAdminStore",
    "StoreError",
    "check_new_token",
    "check_export_range",
    "check_update",
    "decode_cdr_cursor",
    "decode_cursor",
    "encode_cdr_cursor",
    "encode_cursor",
    "valid_token_name",
]


class StoreError(PairingError):
    """The store cannot be used (newer schema, a key that does not match, unreachable, ...)."""


KEY_CHECK_LABEL: Final = "sipmask:key-check"
"""What a store keeps the keyed HMAC of, to refuse a key other than the one it was written
with (the same label in every backend)."""

EXHAUSTED: Final = "pool exhausted for this participant"
"""How `allocate_session`'s `ConflictError` starts when no pool number is eligible."""

IDEMPOTENCY_TTL_S: Final = 86_400.0
"""How long an Idempotency-Key is remembered."""

_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def valid_token_name(name: str) -> bool:
    """1 to 64 characters: letters, digits and ``_ . @ -``, starting with a letter or digit."""
    return bool(_TOKEN_NAME.fullmatch(name))


def check_new_token(name: str, role: str, now: float = 0.0,
                    expires_at: float | None = None) -> None:
    """Raise `PairingError` unless `create_token` may store a token of `name` and `role`
    expiring at `expires_at` (None, or after `now`)."""
    if not valid_token_name(name):
        raise PairingError(
            "token name must be 1-64 letters, digits or _.@- starting with a letter or digit"
        )
    if role not in ROLES:
        raise PairingError(f"role must be one of {', '.join(ROLES)}")
    if expires_at is not None and not expires_at > now:  # NaN too
        raise PairingError("token expiry must be in the future")


def check_update(expires_at: float | None | Keep, ttl_s: float | None | Keep, now: float) -> None:
    """Raise `PairingError` for the values `update_session` refuses before reading the store."""
    if not isinstance(expires_at, Keep) and expires_at is not None and expires_at <= now:
        raise PairingError("expiry must be in the future")
    if not isinstance(ttl_s, Keep) and ttl_s is not None and ttl_s <= 0:
        raise PairingError("ttl must be positive")


def encode_cursor(prefix: str, position: int) -> str:
    """An opaque page cursor: `prefix` (one per backend, so neither takes the other's) and
    the backend's position of the last item returned."""
    return base64.urlsafe_b64encode(f"{prefix}{position}".encode()).decode().rstrip("=")


def decode_cursor(prefix: str, cursor: str) -> int:
    """The position in a cursor made by `encode_cursor` with `prefix`; `PairingError` for
    any other text."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        text = ""
    head, _, position = text.partition(":")
    if f"{head}:" != prefix or not position.isdigit():
        raise PairingError("cursor is not valid (pass next_cursor of a previous page)")
    return int(position)


def check_export_range(start: float, end: float) -> None:
    """Raise `PairingError` unless `export_cdrs` may read [start, end): finite times."""
    if not (math.isfinite(start) and math.isfinite(end)):
        raise PairingError("the export range needs finite start and end times")


def encode_cdr_cursor(prefix: str, ended_at: float, cdr_id: int) -> str:
    """An opaque CDR export cursor: the (ended_at, id) key of the last CDR of a page."""
    return encode_cursor(prefix, cdr_id) + "." + base64.urlsafe_b64encode(
        repr(float(ended_at)).encode()).decode().rstrip("=")


def decode_cdr_cursor(prefix: str, cursor: str) -> tuple[float, int]:
    """The (ended_at, id) in a cursor made by `encode_cdr_cursor` with `prefix`;
    `PairingError` for any other text."""
    head, _, tail = cursor.partition(".")
    cdr_id = decode_cursor(prefix, head)
    try:
        ended_at = float(base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        ended_at = math.nan
    if not math.isfinite(ended_at):
        raise PairingError("cursor is not valid (pass next_cursor of a previous page)")
    return ended_at, cdr_id


@runtime_checkable
class PairingStore(Protocol):
    """Durable sessions and CDRs, shared between processes. See the module docstring."""

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections. The store must not be used afterwards."""
        ...

    # -- sessions ----------------------------------------------------------------------------

    def create_session(
        self,
        a: Participant,
        b: Participant,
        *,
        expires_at: float | None = None,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "voice",
        now: float,
        policy: SessionPolicy = DEFAULT_POLICY,
    ) -> Session:
        """Insert an open session; `ConflictError` when a participant already has an active
        session on the virtual number it would dial (open sessions past their deadline do not
        count and are marked expired on the way); `PairingError` for invalid input. `policy`
        is kept as given and read back equal (`get_session`, the change feed)."""
        ...

    def get_session(self, session_id: str) -> Session:
        """The session as stored; `NotFound` for an unknown id."""
        ...

    def list_sessions(
        self, status: str | None = None, limit: int = 100, after: str | None = None
    ) -> list[Session]:
        """Sessions in creation order, optionally of one `status`, starting after id `after`
        (`NotFound` if `after` is unknown)."""
        ...

    def load_active(self, now: float | None = None) -> tuple[list[Session], int]:
        """Every open session (active as of `now` if given) and a change sequence such that
        `changes_since` of it misses nothing that happened after the read."""
        ...

    def close_session(self, session_id: str, now: float) -> Session:
        """Close an open session and return it; closed/expired ones come back unchanged;
        `NotFound` for an unknown id."""
        ...

    def touch(self, session_id: str, now: float) -> None:
        """Record activity on an open session (moves its inactivity deadline)."""
        ...

    def touch_many(self, activity: Mapping[str, float]) -> None:
        """Record activity for several sessions ({session_id: now}); never moves backwards."""
        ...

    def expire_due(self, now: float) -> list[str]:
        """Mark open sessions past their expiry or inactivity deadline expired; return ids."""
        ...

    # -- change feed -------------------------------------------------------------------------

    def current_seq(self) -> int:
        """The latest change sequence number."""
        ...

    def changes_since(self, seq: int, limit: int = 10_000) -> tuple[list[Session], int]:
        """Sessions changed after `seq` (oldest first, at most `limit`) and the sequence to
        pass next time. Fewer than `limit` results means the caller is up to date."""
        ...

    def epoch(self) -> str:
        """An identity of this table's history, the same for as long as its change sequence
        only grows. It changes when the data is lost or replaced (a Redis restarted empty, a
        flushed database, a restored older file): sequence numbers seen before mean nothing
        then, and a reader must load the table again instead of following the feed."""
        ...

    # -- CDRs --------------------------------------------------------------------------------

    def record_cdrs(self, cdrs: Iterable[Cdr]) -> int:
        """Append CDRs; return how many were written."""
        ...

    def list_cdrs(self, session_id: str | None = None, limit: int = 100) -> list[Cdr]:
        """The newest CDRs first, optionally only those of one session."""
        ...

    def export_cdrs(
        self, start: float, end: float, *, session_id: str | None = None, limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Cdr]:
        """CDRs that ended in [`start`, `end`), optionally only those of one session, in
        ended_at order (ties in a stable order of the backend's), at most `limit`, after the
        opaque `cursor` of a previous page (`Page.next_cursor`; None on the last page).

        Keyset paging on (ended_at, id), never an offset: a page costs the same wherever it
        starts, and CDRs recorded or purged between two pages neither repeat nor shift the
        others. `PairingError` for a cursor this store did not make."""
        ...

    # -- retention and keys ------------------------------------------------------------------

    def purge(self, older_than: float) -> tuple[int, int]:
        """Delete closed/expired sessions that ended before `older_than` and CDRs that ended
        before it; return (sessions deleted, CDRs deleted)."""
        ...

    def rotate_key(self, new_vault: NumberVault) -> int:
        """Re-encrypt every stored number and recompute the HMAC index under `new_vault`;
        afterwards the store opens only with the new key. Return how many sessions were
        rewritten. An interrupted rotation is finished by calling it again (see
        docs/stores.md)."""
        ...


# ---------------------------------------------------------------------------------------------
# Administration (HTTP API and admin CLI). A backend used with the API implements `ApiStore`:
# `PairingStore` plus the three protocols below. Same conventions as above; in addition no
# exception message names a real number, and the pool's open-session counts move with every
# session insert, close, expiry and deletion.
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class SessionAdminStore(Protocol):
    """Allocation from the pool, searching and updating sessions, a health probe."""

    def ping(self) -> None:
        """Raise if the backend cannot be reached (``/readyz``)."""
        ...

    def allocate_session(
        self,
        number_a: str,
        number_b: str,
        *,
        virtual_a: str | None = None,
        virtual_b: str | None = None,
        expires_at: float | None = None,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "voice",
        now: float,
        policy: SessionPolicy = DEFAULT_POLICY,
    ) -> Session:
        """Create a session, picking from the pool each virtual number not given.

        For a participant, eligible numbers are the pool's *active* (not draining) numbers on
        which it has no active session; the one with the fewest open sessions is taken, ties
        broken at random. A and B are picked independently (they may get the same number).
        A virtual number that is given is used as is and need not be in the pool.
        `ConflictError` whose message starts "pool exhausted for this participant" (naming
        A or B, never the number) when no number is eligible; otherwise `create_session`'s
        errors. Picking and inserting are atomic."""
        ...

    def find_sessions(
        self, where: SessionFilter, *, now: float, limit: int = 100, cursor: str | None = None
    ) -> Page[Session]:
        """Sessions matching `where` in creation order, at most `limit`, after the opaque
        `cursor` of a previous page (`Page.next_cursor`; None on the last page).
        `PairingError` for an unknown status or a cursor this store did not make."""
        ...

    def update_session(
        self,
        session_id: str,
        *,
        expires_at: float | None | Keep = ...,
        ttl_s: float | None | Keep = ...,
        now: float,
        policy: SessionPolicy | Keep = ...,
    ) -> Session:
        """Change the absolute expiry, the inactivity TTL and/or the policy of an active
        session (`KEEP` leaves one alone, None removes expiry or TTL) and return it; a change
        (new seq). `NotFound` for
        an unknown id, `ConflictError` for a session that is no longer active, `PairingError`
        for an expiry not after `now` or a non-positive ttl."""
        ...


@runtime_checkable
class PoolStore(Protocol):
    """The virtual-number pool (numbers are the operator's own, stored in clear)."""

    def add_pool_number(self, number: str, now: float) -> PoolNumber:
        """Add an E.164 number, active; `ConflictError` if already in the pool. Its
        open-session count starts at the open sessions already using it."""
        ...

    def get_pool_number(self, number: str) -> PoolNumber:
        """One pool number; `NotFound` if not in the pool."""
        ...

    def list_pool_numbers(self, status: str | None = None) -> list[PoolNumber]:
        """The pool in number order, optionally only `active` or `draining` numbers."""
        ...

    def set_pool_status(self, number: str, status: str) -> PoolNumber:
        """Drain (``draining``: no new sessions, existing ones go on) or re-activate
        (``active``) a number; `NotFound` if not in the pool, `PairingError` otherwise bad."""
        ...

    def remove_pool_number(self, number: str, now: float) -> PoolNumber:
        """Take a number out of the pool, returning it as it was. `ConflictError` while an
        active session uses it: drain it, then close its sessions or let them expire."""
        ...


@runtime_checkable
class AdminStore(Protocol):
    """API tokens (hashed), the audit log and remembered Idempotency-Keys."""

    def create_token(self, name: str, role: str, secret_hash: str, now: float,
                     expires_at: float | None = None) -> ApiToken:
        """Store a token by the SHA-256 (hex) of its secret, working until `expires_at` (None:
        until revoked). `ConflictError` when an active (not revoked) token has this name;
        `PairingError` for an unknown role, a bad name or an `expires_at` not after `now`."""
        ...

    def find_token(self, secret_hash: str) -> ApiToken | None:
        """The active (not revoked) token whose secret hashes to `secret_hash`, if any, expired
        or not: the caller tells an expired token from an unknown one (`ApiToken.expired`)."""
        ...

    def list_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones included, oldest first."""
        ...

    def revoke_token(self, token: str, now: float) -> ApiToken:
        """Revoke by id, or by name of an active token (revoking twice is harmless);
        `NotFound` if there is none."""
        ...

    def record_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an entry; return it with its id (increasing)."""
        ...

    def list_audit(
        self,
        limit: int = 100,
        before: int | None = None,
        target: str | None = None,
        actor: str | None = None,
    ) -> list[AuditEntry]:
        """Entries newest first, only those with id below `before` if given, optionally of
        one `target` or one `actor`."""
        ...

    def get_idempotency(self, scope: str, key: str) -> IdempotencyRecord | None:
        """The create remembered under (`scope`, `key`), if any."""
        ...

    def put_idempotency(self, record: IdempotencyRecord) -> None:
        """Remember a create (for at least 24 h: older records may be dropped from then on);
        `ConflictError` if (scope, key) is already taken."""
        ...


@runtime_checkable
class DialogStore(Protocol):
    """Established calls' records and the workers' leases: what lets calls outlive the worker
    that bridged them (``proxy.cluster``). A record is opaque bytes (encrypted by the caller);
    a lease is a wall-clock deadline a live worker keeps pushing forward."""

    def heartbeat(self, worker: str, expires_at: float) -> None:
        """`worker` is alive until `expires_at`."""
        ...

    def release_worker(self, worker: str) -> None:
        """`worker` stopped: its lease ends now."""
        ...

    def worker_leases(self) -> dict[str, float]:
        """Every worker with a lease or with records: its lease's end (0.0 when none)."""
        ...

    def put_dialogs(self, worker: str, records: Mapping[str, bytes], deleted: Iterable[str]) -> None:
        """Write `records` (call key -> record) as `worker`'s; delete the `deleted` keys."""
        ...

    def dialogs_of(self, worker: str) -> dict[str, bytes]:
        """`worker`'s records by call key."""
        ...

    def claim_dialogs(self, dead: str, worker: str, now: float) -> dict[str, bytes]:
        """Move `dead`'s records to `worker` if `dead`'s lease ended before `now`; atomic,
        so siblings claiming at once get each record once. Returns what was moved."""
        ...


@runtime_checkable
class ApiStore(PairingStore, SessionAdminStore, PoolStore, AdminStore, Protocol):
    """Everything the HTTP API and the admin CLI use."""
