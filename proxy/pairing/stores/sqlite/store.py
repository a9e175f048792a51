"""SQLite store for sessions and CDRs: the embedded default, one file in WAL mode.

Real numbers never reach the file in clear: each is stored as an AES-GCM blob (`number_a`)
plus a keyed HMAC (`index_a`) that SQL can compare and index. Virtual numbers are the
operator's own pool and are stored in clear. CDRs carry tokens only.

Every change to a session (create, close, expire) takes the next value of a counter and writes
it to the row's `seq`, so another process (the running proxy, while the CLI adds a pairing)
can ask for `changes_since(seq)` and stay current without rereading the table. Inactivity
touches are bookkeeping, not changes, and leave `seq` alone: the proxy that records them
already holds them in memory.

Methods are synchronous: they are local calls of tens of microseconds to a few milliseconds.
Writes that check-then-insert run in ``BEGIN IMMEDIATE`` so two processes cannot both pass
the conflict check.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ...crypto import NumberVault
from ...model import (
    CLOSED,
    EXPIRED,
    OPEN,
    STATUSES,
    Cdr,
    ConflictError,
    NotFound,
    PairingError,
    Participant,
    Session,
    new_session,
)
from ...policy import DEFAULT_POLICY, SessionPolicy, policy_from_json, store_text
from ..base import KEY_CHECK_LABEL, StoreError
from .admin import ADMIN_SCHEMA, TOKEN_EXPIRY, SqliteAdminMixin
from .cdrs import SqliteCdrExportMixin
from .dialogs import DIALOG_SCHEMA, SqliteDialogMixin
from .pool import POOL_INDEX_TRIM, POOL_SCHEMA, SqlitePoolMixin

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteStore"]


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (0600) if it does not exist yet:
    it holds encrypted numbers, HMAC indexes, token hashes and the audit log. SQLite gives its
    -wal and -shm files the database file's permissions."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


# Each step moves the schema from version i to i+1 (PRAGMA user_version). Append, never edit.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE counters (
            name  TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        )""",
        "INSERT INTO counters (name, value) VALUES ('session_seq', 0)",
        """CREATE TABLE sessions (
            id            TEXT PRIMARY KEY,
            seq           INTEGER NOT NULL,
            status        TEXT NOT NULL CHECK (status IN ('open', 'closed', 'expired')),
            mode          TEXT NOT NULL CHECK (mode IN ('voice', 'message')),
            number_a      BLOB NOT NULL,
            index_a       TEXT NOT NULL,
            virtual_a     TEXT NOT NULL,
            number_b      BLOB NOT NULL,
            index_b       TEXT NOT NULL,
            virtual_b     TEXT NOT NULL,
            created_at    REAL NOT NULL,
            expires_at    REAL,
            ttl_s         REAL,
            last_activity REAL NOT NULL,
            ended_at      REAL,
            metadata      TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE UNIQUE INDEX sessions_seq ON sessions (seq)",
        "CREATE INDEX sessions_a ON sessions (index_a, virtual_a) WHERE status = 'open'",
        "CREATE INDEX sessions_b ON sessions (index_b, virtual_b) WHERE status = 'open'",
        "CREATE INDEX sessions_status_ended ON sessions (status, ended_at)",
        """CREATE TABLE cdrs (
            id            INTEGER PRIMARY KEY,
            call_id_token TEXT NOT NULL,
            session_id    TEXT,
            caller_token  TEXT NOT NULL,
            callee_token  TEXT NOT NULL,
            started_at    REAL NOT NULL,
            answered_at   REAL,
            ended_at      REAL NOT NULL,
            outcome       TEXT NOT NULL,
            sip_code      INTEGER NOT NULL,
            cause         TEXT NOT NULL,
            duration_s    REAL NOT NULL
        )""",
        "CREATE INDEX cdrs_session ON cdrs (session_id, id)",
        "CREATE INDEX cdrs_ended ON cdrs (ended_at)",
    ),
    # 2: virtual-number pool (counts kept by triggers), API tokens, audit log, idempotency.
    POOL_SCHEMA + ADMIN_SCHEMA,
    # 3: drop indexes that cost every insert more than they save (see pool.py).
    POOL_INDEX_TRIM,
    # 4: established calls' records and the workers' leases (calls that outlive a worker).
    DIALOG_SCHEMA,
    # 5: API tokens may expire.
    TOKEN_EXPIRY,
    # 6: each session's call policy (calling windows, limits, direction, single use), JSON.
    ("ALTER TABLE sessions ADD COLUMN policy TEXT NOT NULL DEFAULT '{}'",),
]
SCHEMA_VERSION = len(MIGRATIONS)

_SESSION_COLUMNS = (
    "id, status, mode, number_a, virtual_a, number_b, virtual_b, created_at, expires_at, "
    "ttl_s, last_activity, metadata, policy"
)
_CDR_COLUMNS = (
    "call_id_token, session_id, caller_token, callee_token, started_at, answered_at, "
    "ended_at, outcome, sip_code, cause, duration_s"
)
# Open and not yet past either deadline, as of the bound :now.
_ACTIVE_SQL = (
    "status = 'open' AND (expires_at IS NULL OR expires_at > :now) "
    "AND (ttl_s IS NULL OR last_activity + ttl_s > :now)"
)


class SqliteStore(SqlitePoolMixin, SqliteAdminMixin, SqliteDialogMixin, SqliteCdrExportMixin):
    """Sessions and CDRs in one SQLite file (WAL, synchronous=NORMAL), numbers encrypted.

    Safe to share between threads (calls are serialised by a lock); several processes may
    open the same file at once (the proxy and the admin CLI do).
    """

    def __init__(
        self, path: str | os.PathLike[str], vault: NumberVault, *, busy_timeout_s: float = 5.0
    ) -> None:
        """Open (creating if needed) and migrate the database at `path`."""
        self._vault = vault
        self._lock = threading.RLock()
        _create_private(os.fspath(path))
        self._conn = sqlite3.connect(
            os.fspath(path), isolation_level=None, check_same_thread=False,
            timeout=busy_timeout_s,
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()
        self._check_key()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection. The store must not be used afterwards."""
        with self._lock:
            self._conn.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open file (PRAGMA user_version)."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the database write lock up front."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {version} is newer than this sipmask "
                    f"understands ({SCHEMA_VERSION}); upgrade sipmask"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")

    def _check_key(self) -> None:
        """Remember which key the file was written with, and refuse a different one."""
        check = self._vault.index(KEY_CHECK_LABEL)
        with self._write() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta (key, value) VALUES ('key_check', ?)", (check,))
            elif row[0] != check:
                raise StoreError("the key file does not match this database")

    # -- sessions ------------------------------------------------------------------------------

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
        """Insert an open session between `a` and `b` (numbers already E.164).

        Raises `ConflictError` when either participant already has an active session on the
        virtual number it would dial here; open sessions whose deadline has passed do not
        count and are marked expired on the way.
        """
        session = new_session(
            a, b, expires_at=expires_at, ttl_s=ttl_s, metadata=metadata, mode=mode, now=now,
            policy=policy,
        )
        with self._write() as conn:
            self._insert_session(conn, session)
        return session

    def _insert_session(self, conn: sqlite3.Connection, session: Session) -> None:
        """Check both participants are free on their virtual numbers, then insert `session`
        (inside the caller's write transaction)."""
        a, b = session.a, session.b
        # A process that opened the file before a key rotation must not write numbers that
        # the new key cannot open.
        row = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
        if row is None or row[0] != self._vault.index(KEY_CHECK_LABEL):
            raise StoreError(
                "the key does not match this database (rotated? restart with the new key)"
            )
        index_a, index_b = self._vault.index(a.number), self._vault.index(b.number)
        for label, index, virtual in (("a", index_a, a.virtual), ("b", index_b, b.virtual)):
            self._check_free(conn, label, index, virtual, session.created_at)
        conn.execute(
            "INSERT INTO sessions (id, seq, status, mode, number_a, index_a, virtual_a, "
            "number_b, index_b, virtual_b, created_at, expires_at, ttl_s, last_activity, "
            "metadata, policy) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session.id, self._next_seq(conn), session.mode,
                self._vault.encrypt(a.number), index_a, a.virtual,
                self._vault.encrypt(b.number), index_b, b.virtual,
                session.created_at, session.expires_at, session.ttl_s, session.last_activity,
                json.dumps(session.metadata, sort_keys=True, separators=(",", ":")),
                store_text(session.policy),
            ),
        )

    def _check_free(
        self, conn: sqlite3.Connection, label: str, index: str, virtual: str, now: float
    ) -> None:
        """Raise ConflictError if the participant (by index) is busy on `virtual`."""
        rows = conn.execute(
            "SELECT id, expires_at, ttl_s, last_activity FROM sessions "
            "WHERE status = 'open' AND index_a = :index AND virtual_a = :virtual "
            "UNION ALL SELECT id, expires_at, ttl_s, last_activity FROM sessions "
            "WHERE status = 'open' AND index_b = :index AND virtual_b = :virtual",
            {"index": index, "virtual": virtual},
        ).fetchall()
        for session_id, expires_at, ttl_s, last_activity in rows:
            due = (expires_at is not None and expires_at <= now) or (
                ttl_s is not None and last_activity + ttl_s <= now
            )
            if due:
                self._set_status(conn, session_id, EXPIRED, now)
            else:
                raise ConflictError(
                    f"participant {label.upper()} already has open session {session_id} "
                    f"on virtual number {virtual}"
                )

    def get_session(self, session_id: str) -> Session:
        """The session with `session_id` as stored; raise `NotFound` if there is none."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        if row is None:
            raise NotFound(f"no session with id {session_id}")
        return self._to_session(row)

    def list_sessions(
        self, status: str | None = None, limit: int = 100, after: str | None = None
    ) -> list[Session]:
        """Sessions in creation order, optionally of one `status`, starting after id `after`."""
        if status is not None and status not in STATUSES:
            raise PairingError(f"status must be one of {', '.join(STATUSES)}")
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        with self._lock:
            if after is not None:
                row = self._conn.execute(
                    "SELECT rowid FROM sessions WHERE id = ?", (after,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no session with id {after}")
                clauses.append("rowid > ?")
                params.append(row[0])
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            rows = self._conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions {where} ORDER BY rowid LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [self._to_session(row) for row in rows]

    def load_active(self, now: float | None = None) -> tuple[list[Session], int]:
        """Every open session (active as of `now` if given) and the change sequence they
        reflect, read in one snapshot: pass the sequence to `changes_since` afterwards."""
        with self._read() as conn:
            seq = self._current_seq(conn)
            if now is None:
                rows = conn.execute(
                    f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE status = 'open'"
                ).fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE {_ACTIVE_SQL}", {"now": now}
                ).fetchall()
        return [self._to_session(row) for row in rows], seq

    def close_session(self, session_id: str, now: float) -> Session:
        """Close an open session and return it; a session already closed or expired is
        returned unchanged. Raise `NotFound` for an unknown id."""
        with self._write() as conn:
            row = conn.execute("SELECT status FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise NotFound(f"no session with id {session_id}")
            if row[0] == OPEN:
                self._set_status(conn, session_id, CLOSED, now)
        return self.get_session(session_id)

    def touch(self, session_id: str, now: float) -> None:
        """Record activity on an open session (moves its inactivity deadline)."""
        self.touch_many({session_id: now})

    def touch_many(self, activity: Mapping[str, float]) -> None:
        """Record activity for several sessions in one transaction ({session_id: now})."""
        if not activity:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE sessions SET last_activity = MAX(last_activity, ?) "
                "WHERE id = ? AND status = 'open'",
                [(now, session_id) for session_id, now in activity.items()],
            )

    def expire_due(self, now: float) -> list[str]:
        """Mark open sessions whose expiry or inactivity TTL has passed as expired; return ids."""
        with self._write() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM sessions WHERE status = 'open' AND ("
                    "expires_at <= :now OR last_activity + ttl_s <= :now) ORDER BY rowid",
                    {"now": now},
                )
            ]
            for session_id in ids:
                self._set_status(conn, session_id, EXPIRED, now)
        return ids

    def _set_status(self, conn: sqlite3.Connection, session_id: str, status: str, now: float) -> None:
        conn.execute(
            "UPDATE sessions SET status = ?, ended_at = ?, seq = ? WHERE id = ?",
            (status, now, self._next_seq(conn), session_id),
        )

    # -- change feed ---------------------------------------------------------------------------

    def current_seq(self) -> int:
        """The latest change sequence number."""
        with self._lock:
            return self._current_seq(self._conn)

    def epoch(self) -> str:
        """The identity of this table's history; see `PairingStore.epoch` (a file replaced by
        another, e.g. restored from an older backup, has another)."""
        with self._lock, self._conn:
            self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)",
                               (secrets.token_hex(8),))
            return str(self._conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])

    def changes_since(self, seq: int, limit: int = 10_000) -> tuple[list[Session], int]:
        """Sessions changed after `seq` (oldest first, at most `limit`) and the sequence to
        pass next time. Fewer than `limit` results means the caller is up to date."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT seq, {_SESSION_COLUMNS} FROM sessions WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            ).fetchall()
        if not rows:
            return [], seq
        return [self._to_session(row[1:]) for row in rows], int(rows[-1][0])

    @staticmethod
    def _current_seq(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM counters WHERE name = 'session_seq'").fetchone()[0])

    @staticmethod
    def _next_seq(conn: sqlite3.Connection) -> int:
        # A counter rather than MAX(seq)+1: purging the newest rows must not reuse numbers
        # that a poller has already seen.
        row = conn.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'session_seq' RETURNING value"
        ).fetchone()
        return int(row[0])

    # -- CDRs ----------------------------------------------------------------------------------

    def record_cdrs(self, cdrs: Iterable[Cdr]) -> int:
        """Append CDRs in one transaction; return how many were written."""
        rows = [
            (
                c.call_id_token, c.session_id, c.caller_token, c.callee_token, c.started_at,
                c.answered_at, c.ended_at, c.outcome, c.sip_code, c.cause, c.duration_s,
            )
            for c in cdrs
        ]
        if not rows:
            return 0
        with self._write() as conn:
            conn.executemany(
                f"INSERT INTO cdrs ({_CDR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        return len(rows)

    def list_cdrs(self, session_id: str | None = None, limit: int = 100) -> list[Cdr]:
        """The newest CDRs first, optionally only those of one session."""
        where, params = ("WHERE session_id = ?", (session_id,)) if session_id else ("", ())
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_CDR_COLUMNS} FROM cdrs {where} ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [Cdr(*row) for row in rows]

    # -- retention -----------------------------------------------------------------------------

    def purge(self, older_than: float) -> tuple[int, int]:
        """Delete closed/expired sessions that ended before `older_than` and CDRs that ended
        before it. Return (sessions deleted, CDRs deleted)."""
        with self._write() as conn:
            sessions = conn.execute(
                "DELETE FROM sessions WHERE status IN ('closed', 'expired') AND ended_at < ?",
                (older_than,),
            ).rowcount
            cdrs = conn.execute("DELETE FROM cdrs WHERE ended_at < ?", (older_than,)).rowcount
        return sessions, cdrs

    def rotate_key(self, new_vault: NumberVault) -> int:
        """Re-encrypt every number and recompute the HMAC index under `new_vault`, in one
        transaction: an interruption rolls back and leaves the file under the old key.
        Return how many sessions were rewritten."""
        with self._write() as conn:
            rows = conn.execute("SELECT id, number_a, number_b FROM sessions").fetchall()
            updates = []
            for session_id, blob_a, blob_b in rows:
                number_a, number_b = self._vault.decrypt(blob_a), self._vault.decrypt(blob_b)
                updates.append((
                    new_vault.encrypt(number_a), new_vault.index(number_a),
                    new_vault.encrypt(number_b), new_vault.index(number_b), session_id,
                ))
            conn.executemany(
                "UPDATE sessions SET number_a = ?, index_a = ?, number_b = ?, index_b = ? "
                "WHERE id = ?",
                updates,
            )
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'key_check'",
                (new_vault.index(KEY_CHECK_LABEL),),
            )
        self._vault = new_vault
        return len(rows)

    # -- rows ----------------------------------------------------------------------------------

    def _to_session(self, row: Sequence[Any]) -> Session:
        (session_id, status, mode, number_a, virtual_a, number_b, virtual_b, created_at,
         expires_at, ttl_s, last_activity, metadata, policy) = row
        return Session(
            id=session_id,
            a=Participant(self._vault.decrypt(number_a), virtual_a),
            b=Participant(self._vault.decrypt(number_b), virtual_b),
            status=status,
            created_at=created_at,
            expires_at=expires_at,
            ttl_s=ttl_s,
            last_activity=last_activity,
            metadata=json.loads(metadata),
            mode=mode,
            policy=policy_from_json(policy),
        )
