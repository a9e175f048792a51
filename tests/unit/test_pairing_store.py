"""What is SQLite's own: schema, WAL, migrations, the key check, the file's contents, two
processes on one file. Behaviour both stores share is in test_store_contract.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.pairing import (
    Cdr,
    NumberVault,
    PairingError,
    Participant,
    Session,
    SqliteStore,
    StoreError,
)
from proxy.pairing.stores.sqlite import MIGRATIONS, SCHEMA_VERSION

SECRET = bytes(range(64))
T0 = 1_700_000_000.0

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"


@pytest.fixture
def vault() -> NumberVault:
    return NumberVault.from_secret(SECRET)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sipmask.db"


@pytest.fixture
def store(db_path: Path, vault: NumberVault) -> Iterator[SqliteStore]:
    s = SqliteStore(db_path, vault)
    yield s
    s.close()


def pair(store: SqliteStore, a: str = ALICE, b: str = BOB, va: str = V1, vb: str = V2,
         now: float = T0, **kw: Any) -> Session:
    """Create a session: `a` dials `va` to reach `b`, who dials `vb` back."""
    return store.create_session(Participant(a, va), Participant(b, vb), now=now, **kw)


# -- schema ------------------------------------------------------------------------------------

def test_new_file_is_migrated_to_latest_in_wal_mode(store: SqliteStore, db_path: Path) -> None:
    assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "cdrs", "counters", "meta"} <= tables
    conn.close()


def test_reopening_does_not_migrate_again(db_path: Path, vault: NumberVault) -> None:
    first = SqliteStore(db_path, vault)
    session = pair(first)
    first.close()
    second = SqliteStore(db_path, vault)
    assert second.get_session(session.id) == session
    second.close()


def test_newer_schema_is_refused(db_path: Path, vault: NumberVault) -> None:
    SqliteStore(db_path, vault).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(db_path, vault)


def test_a_different_key_is_refused(db_path: Path, vault: NumberVault) -> None:
    SqliteStore(db_path, vault).close()
    with pytest.raises(StoreError, match="key"):
        SqliteStore(db_path, NumberVault.from_secret(bytes(64)))


# -- sessions ----------------------------------------------------------------------------------

def test_invalid_sessions_are_refused(store: SqliteStore) -> None:
    with pytest.raises(PairingError):
        pair(store, b=ALICE)
    with pytest.raises(PairingError):
        pair(store, mode="fax")
    with pytest.raises(PairingError):
        pair(store, expires_at=T0 - 1)
    with pytest.raises(PairingError):
        pair(store, ttl_s=0)


def test_numbers_are_stored_encrypted_with_hmac_index(store: SqliteStore, db_path: Path,
                                                      vault: NumberVault) -> None:
    pair(store)
    conn = sqlite3.connect(db_path)
    row = conn.execute("SELECT number_a, index_a, virtual_a, number_b, index_b FROM sessions").fetchone()
    conn.close()
    assert isinstance(row[0], bytes) and vault.decrypt(row[0]) == ALICE
    assert row[1] == vault.index(ALICE) and row[4] == vault.index(BOB)
    assert row[2] == V1


# -- expiry ------------------------------------------------------------------------------------

def test_expire_due_marks_absolute_and_inactivity_expiry(store: SqliteStore) -> None:
    hard = pair(store, ALICE, BOB, V1, V2, expires_at=T0 + 100)
    idle = pair(store, CAROL, BOB, V1, V1, ttl_s=30)
    forever = pair(store, "+15551230004", BOB, V1, "+15559990003")
    assert store.expire_due(T0 + 29) == []
    assert store.expire_due(T0 + 30) == [idle.id]
    assert store.expire_due(T0 + 100) == [hard.id]
    assert store.get_session(hard.id).status == "expired"
    assert store.get_session(forever.id).status == "open"
    assert store.expire_due(T0 + 10_000) == []


# -- change feed -------------------------------------------------------------------------------

def test_changes_since_between_two_processes(db_path: Path, vault: NumberVault) -> None:
    proxy = SqliteStore(db_path, vault)   # the running proxy
    cli = SqliteStore(db_path, vault)     # the admin CLI, another connection on the same file
    active, seq = proxy.load_active()
    assert active == [] and seq == 0

    created = pair(cli, ttl_s=60)
    changed, seq = proxy.changes_since(seq)
    assert changed == [created]

    assert proxy.changes_since(seq) == ([], seq)

    cli.close_session(created.id, T0 + 1)
    second = pair(cli, CAROL, BOB, V1, V1, now=T0 + 2, expires_at=T0 + 100)
    changed, seq2 = proxy.changes_since(seq)
    assert [(s.id, s.status) for s in changed] == [(created.id, "closed"), (second.id, "open")]
    assert seq2 > seq

    assert cli.expire_due(T0 + 100) == [second.id]
    changed, seq3 = proxy.changes_since(seq2)
    assert [(s.id, s.status) for s in changed] == [(second.id, "expired")]
    assert seq3 > seq2
    proxy.close()
    cli.close()


# -- CDRs and retention ------------------------------------------------------------------------

def make_cdr(vault: NumberVault, session_id: str | None, ended_at: float, n: int = 0) -> Cdr:
    return Cdr(
        call_id_token=vault.token(f"call-{n}@host"), session_id=session_id,
        caller_token=vault.token(ALICE), callee_token=vault.token(BOB),
        started_at=ended_at - 60, answered_at=ended_at - 50, ended_at=ended_at,
        outcome="answered", sip_code=200, cause="caller hung up", duration_s=50.0,
    )


def test_no_real_number_reaches_the_database_file(store: SqliteStore, db_path: Path,
                                                  vault: NumberVault) -> None:
    session = pair(store, ttl_s=60, metadata={"order": "A-1"})
    store.touch(session.id, T0 + 1)
    store.record_cdrs([make_cdr(vault, session.id, T0 + 100, i) for i in range(5)])
    store.close_session(session.id, T0 + 200)
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert b"9990001" in raw  # virtual numbers are stored in clear; the grep works
    for number in (ALICE, BOB):
        digits = number[2:].encode()
        assert digits not in raw
        assert digits.decode().encode("utf-16-le") not in raw


def test_purge_removes_old_closed_and_expired_sessions_and_cdrs(store: SqliteStore,
                                                                vault: NumberVault) -> None:
    old_closed = pair(store, ALICE, BOB, V1, V2)
    _old_expired = pair(store, CAROL, BOB, V1, V1, expires_at=T0 + 10)
    still_open = pair(store, "+15551230004", BOB, V1, "+15559990003")
    store.close_session(old_closed.id, T0 + 5)
    store.expire_due(T0 + 10)
    recent = pair(store, ALICE, BOB, V1, V2, now=T0 + 500)
    store.close_session(recent.id, T0 + 900)
    store.record_cdrs([make_cdr(vault, old_closed.id, T0 + 6), make_cdr(vault, recent.id, T0 + 800)])

    assert store.purge(older_than=T0 + 600) == (2, 1)
    remaining = {s.id for s in store.list_sessions()}
    assert remaining == {still_open.id, recent.id}
    assert [c.session_id for c in store.list_cdrs()] == [recent.id]


def test_the_database_file_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path, vault: NumberVault) -> None:
    import os
    import stat

    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "private.db", vault)
        pair(store, ALICE, BOB, V1, V2)
        for name in ("private.db", "private.db-wal"):
            mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
            assert mode == 0o600, (name, oct(mode))
        store.close()
    finally:
        os.umask(old)
