"""SqliteStore, administration side (1/2): the virtual-number pool, allocation from it,
searching sessions with filters and cursors, and updating a session's expiry or TTL.

A mixin of `SqliteStore` (it uses the store's connection, lock and session helpers), kept in
its own module so each stays readable. The schema it needs is `POOL_SCHEMA`, one migration
step of `store.MIGRATIONS`.

Allocation must not scan the sessions table: each pool row carries `open_sessions`, kept
exact by triggers on every insert, status change and deletion of a session, and an index on
``(status, open_sessions)`` hands out the least used numbers first. A participant's own busy
numbers come from the per-participant index that the conflict check already uses.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final

from ...crypto import NumberVault
from ...model import (
    STATUSES,
    ConflictError,
    NotFound,
    PairingError,
    Participant,
    Session,
    new_session,
)
from ...policy import DEFAULT_POLICY, SessionPolicy, store_text
from ...records import KEEP, POOL_STATUSES, Keep, Page, PoolNumber, SessionFilter
from ..base import EXHAUSTED, check_update, decode_cursor, encode_cursor

__all__ = ["POOL_INDEX_TRIM", "POOL_SCHEMA", "SqlitePoolMixin"]

POOL_SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE pool (
        number        TEXT PRIMARY KEY,
        status        TEXT NOT NULL CHECK (status IN ('active', 'draining')),
        added_at      REAL NOT NULL,
        open_sessions INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX pool_pick ON pool (status, open_sessions)",
    # Counts of open sessions per pool number, exact whatever writes the sessions table.
    """CREATE TRIGGER pool_count_insert AFTER INSERT ON sessions WHEN NEW.status = 'open'
    BEGIN
        UPDATE pool SET open_sessions = open_sessions + 1 WHERE number = NEW.virtual_a;
        UPDATE pool SET open_sessions = open_sessions + 1 WHERE number = NEW.virtual_b;
    END""",
    """CREATE TRIGGER pool_count_end AFTER UPDATE OF status ON sessions
    WHEN OLD.status = 'open' AND NEW.status != 'open'
    BEGIN
        UPDATE pool SET open_sessions = open_sessions - 1 WHERE number = OLD.virtual_a;
        UPDATE pool SET open_sessions = open_sessions - 1 WHERE number = OLD.virtual_b;
    END""",
    """CREATE TRIGGER pool_count_delete AFTER DELETE ON sessions WHEN OLD.status = 'open'
    BEGIN
        UPDATE pool SET open_sessions = open_sessions - 1 WHERE number = OLD.virtual_a;
        UPDATE pool SET open_sessions = open_sessions - 1 WHERE number = OLD.virtual_b;
    END""",
    "CREATE INDEX sessions_virtual_a ON sessions (virtual_a) WHERE status = 'open'",
    "CREATE INDEX sessions_virtual_b ON sessions (virtual_b) WHERE status = 'open'",
    # Searching by participant covers closed and expired sessions too.
    "CREATE INDEX sessions_index_a_all ON sessions (index_a)",
    "CREATE INDEX sessions_index_b_all ON sessions (index_b)",
    "CREATE INDEX sessions_created ON sessions (created_at)",
)

# Migration 3: each index costs every session insert a page write, and these three served
# only rare admin reads (pool add/remove counts, created and virtual filters, which scan in
# rowid order and stop at a page). Measured: allocate_session 699 -> 537 us CPU per session
# with 5,000 sessions (SQLite WAL, 2-vCPU VM).
POOL_INDEX_TRIM: Final[tuple[str, ...]] = (
    "DROP INDEX IF EXISTS sessions_virtual_a",
    "DROP INDEX IF EXISTS sessions_virtual_b",
    "DROP INDEX IF EXISTS sessions_created",
)

# Open and before both deadlines, as of :now (same rule as store._ACTIVE_SQL).
_ACTIVE = (
    "(status = 'open' AND (expires_at IS NULL OR expires_at > :now) "
    "AND (ttl_s IS NULL OR last_activity + ttl_s > :now))"
)
_STATUS_SQL: Final = {
    "open": _ACTIVE,
    "expired": f"(status = 'expired' OR (status = 'open' AND NOT {_ACTIVE}))",
    "closed": "status = 'closed'",
}
_MAX_TIES: Final = 16
_CURSOR_PREFIX: Final = "s1:"


class SqlitePoolMixin:
    """Pool, allocation, search and update for `SqliteStore` (see the module docstring)."""

    # Provided by SqliteStore.
    _conn: sqlite3.Connection
    _lock: Any
    _vault: NumberVault
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _read: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _new_session: Callable[..., Session]
    _insert_session: Callable[[sqlite3.Connection, Session], None]
    _to_session: Callable[[Sequence[Any]], Session]

    alloc_random: random.Random | None = None
    """Source of the tie-breaking choice (tests set a seeded one); None: one is made on first
    use (seeding a Random per call cost 5% of an API create)."""

    def ping(self) -> None:
        """Raise `sqlite3.Error` if the file cannot be read."""
        with self._lock:
            self._conn.execute("SELECT 1 FROM counters LIMIT 1").fetchone()

    # -- pool ----------------------------------------------------------------------------------

    def add_pool_number(self, number: str, now: float) -> PoolNumber:
        """Add `number` (E.164) to the pool, active."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM pool WHERE number = ?", (number,)).fetchone():
                raise ConflictError(f"virtual number {number} is already in the pool")
            in_use = conn.execute(
                "SELECT (SELECT COUNT(*) FROM sessions WHERE status = 'open' AND virtual_a = :n)"
                " + (SELECT COUNT(*) FROM sessions WHERE status = 'open' AND virtual_b = :n)",
                {"n": number},
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO pool (number, status, added_at, open_sessions) "
                "VALUES (?, 'active', ?, ?)",
                (number, now, in_use),
            )
        return PoolNumber(number, "active", now, int(in_use))

    def get_pool_number(self, number: str) -> PoolNumber:
        """One pool number; `NotFound` if it is not in the pool."""
        with self._lock:
            row = self._conn.execute(
                "SELECT number, status, added_at, open_sessions FROM pool WHERE number = ?",
                (number,),
            ).fetchone()
        if row is None:
            raise NotFound(f"virtual number {number} is not in the pool")
        return PoolNumber(*row)

    def list_pool_numbers(self, status: str | None = None) -> list[PoolNumber]:
        """The pool in number order, optionally of one status."""
        if status is not None and status not in POOL_STATUSES:
            raise PairingError(f"status must be one of {', '.join(POOL_STATUSES)}")
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        with self._lock:
            rows = self._conn.execute(
                f"SELECT number, status, added_at, open_sessions FROM pool {where} "
                "ORDER BY number", params,
            ).fetchall()
        return [PoolNumber(*row) for row in rows]

    def set_pool_status(self, number: str, status: str) -> PoolNumber:
        """Drain or re-activate a pool number."""
        if status not in POOL_STATUSES:
            raise PairingError(f"status must be one of {', '.join(POOL_STATUSES)}")
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE pool SET status = ? WHERE number = ?", (status, number)
            ).rowcount
        if not updated:
            raise NotFound(f"virtual number {number} is not in the pool")
        return self.get_pool_number(number)

    def remove_pool_number(self, number: str, now: float) -> PoolNumber:
        """Remove a pool number no active session uses."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT number, status, added_at, open_sessions FROM pool WHERE number = ?",
                (number,),
            ).fetchone()
            if row is None:
                raise NotFound(f"virtual number {number} is not in the pool")
            active = conn.execute(
                f"SELECT COUNT(*) FROM sessions WHERE virtual_a = :n AND {_ACTIVE}",
                {"n": number, "now": now},
            ).fetchone()[0] + conn.execute(
                f"SELECT COUNT(*) FROM sessions WHERE virtual_b = :n AND {_ACTIVE}",
                {"n": number, "now": now},
            ).fetchone()[0]
            if active:
                raise ConflictError(
                    f"virtual number {number} is still used by {active} active session(s); "
                    "drain it and close them or wait for them to end"
                )
            conn.execute("DELETE FROM pool WHERE number = ?", (number,))
        return PoolNumber(*row)

    # -- allocation ----------------------------------------------------------------------------

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
        """Create a session, picking missing virtual numbers from the pool (see `ApiStore`)."""
        session = new_session(
            Participant(number_a, virtual_a or ""), Participant(number_b, virtual_b or ""),
            expires_at=expires_at, ttl_s=ttl_s, metadata=metadata, mode=mode, now=now,
            policy=policy,
        )
        rng = self.alloc_random
        if rng is None:
            rng = self.alloc_random = random.Random()
        with self._write() as conn:
            picked: list[str] = []
            pending: dict[str, int] = {}
            for label, number, given in (("A", number_a, virtual_a), ("B", number_b, virtual_b)):
                if given is None:
                    picked.append(self._pick_virtual(conn, label, number, now, rng, pending))
                else:
                    self._check_not_draining(conn, given)
                    picked.append(given)
                pending[picked[-1]] = pending.get(picked[-1], 0) + 1
            session = dataclasses.replace(
                session, a=Participant(number_a, picked[0]), b=Participant(number_b, picked[1])
            )
            self._insert_session(conn, session)
        return session

    def _pick_virtual(
        self, conn: sqlite3.Connection, label: str, number: str, now: float,
        rng: random.Random, pending: dict[str, int],
    ) -> str:
        """The least used active pool number on which `number` has no active session."""
        index = self._vault.index(number)
        busy = {
            row[0]
            for row in conn.execute(
                f"SELECT virtual_a FROM sessions WHERE index_a = :i AND {_ACTIVE} "
                f"UNION SELECT virtual_b FROM sessions WHERE index_b = :i AND {_ACTIVE}",
                {"i": index, "now": now},
            )
        }
        ties: list[str] = []
        best: int | None = None
        # Walks the pool_pick index from the least used number and stops as soon as no later
        # row can tie; `pending` holds picks of this same request, not yet inserted.
        for candidate, used in conn.execute(
            "SELECT number, open_sessions FROM pool WHERE status = 'active' "
            "ORDER BY open_sessions, number"
        ):
            if candidate in busy:
                continue
            if best is not None and (used > best or (used == best and len(ties) >= _MAX_TIES)):
                break
            load = used + pending.get(candidate, 0)
            if best is None or load < best:
                best, ties = load, [candidate]
            elif load == best and len(ties) < _MAX_TIES:
                ties.append(candidate)
        if not ties:
            raise ConflictError(f"{EXHAUSTED} ({label}): no active pool number is free for it")
        return rng.choice(ties)

    @staticmethod
    def _check_not_draining(conn: sqlite3.Connection, virtual: str) -> None:
        row = conn.execute("SELECT status FROM pool WHERE number = ?", (virtual,)).fetchone()
        if row is not None and row[0] == "draining":
            raise ConflictError(f"virtual number {virtual} is draining and takes no new sessions")

    # -- search --------------------------------------------------------------------------------

    def find_sessions(
        self, where: SessionFilter, *, now: float, limit: int = 100, cursor: str | None = None
    ) -> Page[Session]:
        """Sessions matching `where`, in creation order, one page at a time."""
        clauses, params = self._filter_sql(where, now)
        if cursor is not None:
            clauses.append("rowid > :after")
            params["after"] = decode_cursor(_CURSOR_PREFIX, cursor)
        params["limit"] = limit + 1
        sql_where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                "SELECT rowid, id, status, mode, number_a, virtual_a, number_b, virtual_b, "
                "created_at, expires_at, ttl_s, last_activity, metadata, policy FROM sessions "
                f"{sql_where} ORDER BY rowid LIMIT :limit",
                params,
            ).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [self._to_session(row[1:]) for row in rows]
        return Page(items, encode_cursor(_CURSOR_PREFIX, rows[-1][0]) if more else None)

    def _filter_sql(self, where: SessionFilter, now: float) -> tuple[list[str], dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {"now": now}
        if where.status is not None:
            if where.status not in STATUSES:
                raise PairingError(f"status must be one of {', '.join(STATUSES)}")
            clauses.append(_STATUS_SQL[where.status])
        if where.participant is not None:
            clauses.append("(index_a = :index OR index_b = :index)")
            params["index"] = self._vault.index(where.participant)
        if where.virtual is not None:
            clauses.append("(virtual_a = :virtual OR virtual_b = :virtual)")
            params["virtual"] = where.virtual
        for i, (key, value) in enumerate(where.metadata):
            if '"' in key or "\\" in key:
                raise PairingError("metadata keys cannot contain quotes or backslashes")
            clauses.append(f"json_extract(metadata, :path{i}) = :value{i}")
            params[f"path{i}"] = f'$."{key}"'
            params[f"value{i}"] = value
        if where.created_from is not None:
            clauses.append("created_at >= :created_from")
            params["created_from"] = where.created_from
        if where.created_to is not None:
            clauses.append("created_at < :created_to")
            params["created_to"] = where.created_to
        return clauses, params

    # -- update --------------------------------------------------------------------------------

    def update_session(
        self,
        session_id: str,
        *,
        expires_at: float | None | Keep = KEEP,
        ttl_s: float | None | Keep = KEEP,
        now: float,
        policy: SessionPolicy | Keep = KEEP,
    ) -> Session:
        """Change the expiry, TTL and/or policy of an active session (a change: new seq)."""
        check_update(expires_at, ttl_s, now)
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_ACTIVE}, expires_at, ttl_s, policy FROM sessions WHERE id = :id",
                {"id": session_id, "now": now},
            ).fetchone()
            if row is None:
                raise NotFound(f"no session with id {session_id}")
            if not row[0]:
                raise ConflictError(f"session {session_id} is not active")
            new_expires = row[1] if isinstance(expires_at, Keep) else expires_at
            new_ttl = row[2] if isinstance(ttl_s, Keep) else ttl_s
            new_policy = row[3] if isinstance(policy, Keep) else store_text(policy)
            seq = conn.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'session_seq' RETURNING value"
            ).fetchone()[0]
            conn.execute(
                "UPDATE sessions SET expires_at = ?, ttl_s = ?, policy = ?, seq = ? WHERE id = ?",
                (new_expires, new_ttl, new_policy, seq, session_id),
            )
        return self._get(session_id)

    def _get(self, session_id: str) -> Session:
        getter: Callable[[str], Session] = getattr(self, "get_session")  # noqa: B009 - provided by the store class
        return getter(session_id)

