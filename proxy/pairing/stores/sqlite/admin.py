"""SqliteStore, administration side (2/2): API tokens, the audit log, Idempotency-Keys.

A mixin of `SqliteStore`; its schema is `ADMIN_SCHEMA`, one migration step of
`store.MIGRATIONS`. Tokens are kept as the SHA-256 of their secret (a 256-bit random
value, so an unsalted fast hash is enough: there is nothing to brute-force). Audit details and
idempotency records hold no real number: callers put keyed tokens in details, and a request
body is remembered only by its keyed HMAC.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final

from ...model import ConflictError, NotFound
from ...records import ApiToken, AuditEntry, IdempotencyRecord
from ..base import IDEMPOTENCY_TTL_S, check_new_token

__all__ = ["ADMIN_SCHEMA", "TOKEN_EXPIRY", "SqliteAdminMixin"]

ADMIN_SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE api_tokens (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'read-only')),
        secret_hash TEXT NOT NULL UNIQUE,
        created_at  REAL NOT NULL,
        revoked_at  REAL
    )""",
    "CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL",
    """CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX audit_target ON audit (target, id)",
    "CREATE INDEX audit_actor ON audit (actor, id)",
    """CREATE TABLE idempotency (
        scope      TEXT NOT NULL,
        key        TEXT NOT NULL,
        body_hash  TEXT NOT NULL,
        session_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (scope, key)
    )""",
    "CREATE INDEX idempotency_created ON idempotency (created_at)",
)

TOKEN_EXPIRY: Final[tuple[str, ...]] = (
    "ALTER TABLE api_tokens ADD COLUMN expires_at REAL",
)
"""Migration step: tokens may expire (NULL: never)."""

_TOKEN_COLUMNS: Final = "id, name, role, created_at, revoked_at, expires_at"


class SqliteAdminMixin:
    """Tokens, audit and idempotency for `SqliteStore` (see the module docstring)."""

    _conn: sqlite3.Connection
    _lock: Any
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    # -- tokens --------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, secret_hash: str, now: float,
                     expires_at: float | None = None) -> ApiToken:
        """Store a new token by the hash of its secret."""
        check_new_token(name, role, now, expires_at)
        token = ApiToken("tok_" + secrets.token_hex(6), name, role,  # type: ignore[arg-type]
                         now, None, expires_at)
        with self._write() as conn:
            taken = conn.execute(
                "SELECT 1 FROM api_tokens WHERE name = ? AND revoked_at IS NULL", (name,)
            ).fetchone()
            if taken:
                raise ConflictError(f"an active token is already named {name}")
            conn.execute(
                "INSERT INTO api_tokens (id, name, role, secret_hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token.id, name, role, secret_hash, now, expires_at),
            )
        return token

    def find_token(self, secret_hash: str) -> ApiToken | None:
        """The active token with this secret hash, if any."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM api_tokens "
                "WHERE secret_hash = ? AND revoked_at IS NULL",
                (secret_hash,),
            ).fetchone()
        return None if row is None else ApiToken(*row)

    def list_tokens(self) -> list[ApiToken]:
        """Every token, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY rowid"
            ).fetchall()
        return [ApiToken(*row) for row in rows]

    def revoke_token(self, token: str, now: float) -> ApiToken:
        """Revoke by id, or by the name of an active token."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT id FROM api_tokens WHERE id = ? "
                "UNION ALL SELECT id FROM api_tokens WHERE name = ? AND revoked_at IS NULL",
                (token, token),
            ).fetchone()
            if row is None:
                raise NotFound(f"no token with id or name {token}")
            conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, row[0]),
            )
            found = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE id = ?",
                (row[0],),
            ).fetchone()
        return ApiToken(*found)

    # -- audit ---------------------------------------------------------------------------------

    def record_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an audit entry; return it with its id."""
        details = json.dumps(entry.details, sort_keys=True, separators=(",", ":"))
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO audit (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (entry.at, entry.actor, entry.action, entry.target, details),
            ).fetchone()
        return AuditEntry(entry.at, entry.actor, entry.action, entry.target,
                          dict(entry.details), int(row[0]))

    def list_audit(
        self,
        limit: int = 100,
        before: int | None = None,
        target: str | None = None,
        actor: str | None = None,
    ) -> list[AuditEntry]:
        """Audit entries newest first."""
        clauses, params = [], []
        for column, value in (("id <", before), ("target =", target), ("actor =", actor)):
            if value is not None:
                clauses.append(f"{column} ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT at, actor, action, target, details, id FROM audit {where} "
                "ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [AuditEntry(at, actor, action, target, json.loads(details), id_)
                for at, actor, action, target, details, id_ in rows]

    # -- idempotency ---------------------------------------------------------------------------

    def get_idempotency(self, scope: str, key: str) -> IdempotencyRecord | None:
        """The create remembered under (scope, key), if any."""
        with self._lock:
            row = self._conn.execute(
                "SELECT scope, key, body_hash, session_id, created_at FROM idempotency "
                "WHERE scope = ? AND key = ?",
                (scope, key),
            ).fetchone()
        if row is None:
            return None
        return IdempotencyRecord(*row)

    def put_idempotency(self, record: IdempotencyRecord) -> None:
        """Remember a create; drops records older than `IDEMPOTENCY_TTL_S` on the way."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?",
                (record.created_at - IDEMPOTENCY_TTL_S,),
            )
            try:
                conn.execute(
                    "INSERT INTO idempotency (scope, key, body_hash, session_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (record.scope, record.key, record.body_hash, record.session_id,
                     record.created_at),
                )
            except sqlite3.IntegrityError:
                raise ConflictError("this Idempotency-Key is already in use") from None
