"""The store contract: what `PairingService`, the CLI and the API need from a pairing store.

Two backends implement it: `SqliteStore` (embedded default, one file) and `RedisStore`
(several sipmask workers sharing one table). Both pass one contract test suite
(tests/unit/test_store_contract.py), which is the executable form of the docstrings below.

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

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from .crypto import NumberVault
from .model import Cdr, Participant, Session

__all__ = ["PairingStore"]


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
    ) -> Session:
        """Insert an open session; `ConflictError` when a participant already has an active
        session on the virtual number it would dial (open sessions past their deadline do not
        count and are marked expired on the way); `PairingError` for invalid input."""
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

    # -- CDRs --------------------------------------------------------------------------------

    def record_cdrs(self, cdrs: Iterable[Cdr]) -> int:
        """Append CDRs; return how many were written."""
        ...

    def list_cdrs(self, session_id: str | None = None, limit: int = 100) -> list[Cdr]:
        """The newest CDRs first, optionally only those of one session."""
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
