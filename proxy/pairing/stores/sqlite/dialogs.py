"""Established calls' records and the workers' leases for `SqliteStore` (see
``DialogStore`` in ``stores.base``). Records are opaque bytes (encrypted by the caller); the
schema is `DIALOG_SCHEMA`, one migration step of `SqliteStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Final

__all__ = ["DIALOG_SCHEMA", "SqliteDialogMixin"]

DIALOG_SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE dialogs (
        call_key   TEXT PRIMARY KEY,
        worker     TEXT NOT NULL,
        record     BLOB NOT NULL
    )""",
    "CREATE INDEX dialogs_worker ON dialogs (worker)",
    """CREATE TABLE workers (
        worker     TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    )""",
)


class SqliteDialogMixin:
    """Dialog records and leases for `SqliteStore`."""

    # Provided by SqliteStore.
    _conn: sqlite3.Connection
    _lock: Any
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _read: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def heartbeat(self, worker: str, expires_at: float) -> None:
        """`worker` is alive until `expires_at` (wall clock)."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO workers (worker, expires_at) VALUES (?, ?) "
                "ON CONFLICT (worker) DO UPDATE SET expires_at = excluded.expires_at",
                (worker, expires_at),
            )

    def release_worker(self, worker: str) -> None:
        """`worker` stopped: its lease ends now (its records, if any, may be claimed at once)."""
        with self._write() as conn:
            conn.execute("UPDATE workers SET expires_at = 0 WHERE worker = ?", (worker,))

    def worker_leases(self) -> dict[str, float]:
        """Every worker with a lease or with records: its lease's end (0.0 when it has none)."""
        with self._read() as conn:
            leases = {w: float(e) for w, e in conn.execute("SELECT worker, expires_at FROM workers")}
            for (worker,) in conn.execute("SELECT DISTINCT worker FROM dialogs"):
                leases.setdefault(worker, 0.0)
        return leases

    def put_dialogs(self, worker: str, records: Mapping[str, bytes], deleted: Iterable[str]) -> None:
        """Write `records` (call key -> record) as `worker`'s and delete the `deleted` keys."""
        gone = [(key,) for key in deleted]
        rows = [(key, worker, record) for key, record in records.items()]
        if not gone and not rows:
            return
        with self._write() as conn:
            if gone:
                conn.executemany("DELETE FROM dialogs WHERE call_key = ?", gone)
            if rows:
                conn.executemany(
                    "INSERT INTO dialogs (call_key, worker, record) VALUES (?, ?, ?) "
                    "ON CONFLICT (call_key) DO UPDATE SET worker = excluded.worker, "
                    "record = excluded.record",
                    rows,
                )

    def dialogs_of(self, worker: str) -> dict[str, bytes]:
        """`worker`'s records by call key."""
        with self._read() as conn:
            return {key: bytes(record) for key, record in conn.execute(
                "SELECT call_key, record FROM dialogs WHERE worker = ?", (worker,))}

    def claim_dialogs(self, dead: str, worker: str, now: float) -> dict[str, bytes]:
        """Move `dead`'s records to `worker`, only if `dead`'s lease ended before `now` (or it
        never had one), in one transaction: two siblings claiming at once get them once."""
        with self._write() as conn:
            row = conn.execute("SELECT expires_at FROM workers WHERE worker = ?", (dead,)).fetchone()
            if row is not None and float(row[0]) >= now:
                return {}
            claimed = {key: bytes(record) for key, record in conn.execute(
                "SELECT call_key, record FROM dialogs WHERE worker = ?", (dead,))}
            conn.execute("UPDATE dialogs SET worker = ? WHERE worker = ?", (worker, dead))
            conn.execute("DELETE FROM workers WHERE worker = ?", (dead,))
        return claimed
