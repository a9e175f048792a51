"""API tokens, audit log, Idempotency-Keys: the `AdminStore` contract, on SQLite and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.pairing import ConflictError, NotFound, NumberVault, PairingError, SqliteStore
from proxy.pairing.records import AuditEntry, IdempotencyRecord
from proxy.pairing.stores import ApiStore
from proxy.pairing.stores.base import IDEMPOTENCY_TTL_S
from proxy.pairing.stores.redis import RedisStore

T0 = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiStore]:
    vault = NumberVault.from_secret(bytes(range(64)))
    s: object
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "sipmask.db", vault)
    else:
        request.getfixturevalue("redis_client")  # flushed for this test
        s = RedisStore.from_url(request.getfixturevalue("redis_url"), vault)
    assert isinstance(s, ApiStore)
    yield s
    s.close()


def test_tokens_are_found_by_hash_and_revoked_by_id_or_name(store: ApiStore) -> None:
    ops = store.create_token("ops", "operator", "h1", T0)
    viewer = store.create_token("viewer", "read-only", "h2", T0)
    assert store.find_token("h1") == ops
    assert store.find_token("nope") is None
    assert store.revoke_token("ops", T0 + 1).revoked_at == T0 + 1
    assert store.find_token("h1") is None
    assert store.revoke_token(viewer.id, T0 + 2).revoked_at == T0 + 2
    assert store.revoke_token(viewer.id, T0 + 3).revoked_at == T0 + 2  # idempotent
    assert [t.name for t in store.list_tokens()] == ["ops", "viewer"]
    with pytest.raises(NotFound):
        store.revoke_token("ghost", T0)


def test_tokens_keep_their_expiry_and_are_found_until_revoked_even_when_expired(
        store: ApiStore) -> None:
    forever = store.create_token("ops", "operator", "h1", T0)
    month = store.create_token("ci", "read-only", "h2", T0, expires_at=T0 + 30 * 86400)
    assert forever.expires_at is None and month.expires_at == T0 + 30 * 86400
    assert store.find_token("h2") == month  # found: the API tells "expired" from "unknown"
    assert month.expired(T0 + 30 * 86400) and not month.expired(T0 + 30 * 86400 - 1)
    assert not forever.expired(T0 + 1e9)
    assert [t.expires_at for t in store.list_tokens()] == [None, T0 + 30 * 86400]
    assert store.revoke_token("ci", T0 + 1).expires_at == T0 + 30 * 86400
    assert store.find_token("h2") is None


def test_a_token_cannot_be_created_already_expired(store: ApiStore) -> None:
    for bad in (T0, T0 - 1, float("nan")):
        with pytest.raises(PairingError, match="expiry"):
            store.create_token("late", "admin", "h1", T0, expires_at=bad)
    assert store.list_tokens() == []


def test_token_names_roles_and_reuse(store: ApiStore) -> None:
    store.create_token("ops", "admin", "h1", T0)
    with pytest.raises(ConflictError):
        store.create_token("ops", "admin", "h2", T0)
    store.revoke_token("ops", T0)
    assert store.create_token("ops", "admin", "h3", T0).name == "ops"  # name free again
    with pytest.raises(PairingError, match="role"):
        store.create_token("x", "root", "h4", T0)
    with pytest.raises(PairingError, match="name"):
        store.create_token("bad name", "admin", "h5", T0)


def test_audit_is_listed_newest_first_with_filters(store: ApiStore) -> None:
    for i, action in enumerate(("pool.add", "session.create", "session.close")):
        store.record_audit(AuditEntry(T0 + i, "tok_1:ops" if i else "cli:root", action,
                                      f"ps_{i % 2}", {"n": i}))
    entries = store.list_audit()
    assert [e.action for e in entries] == ["session.close", "session.create", "pool.add"]
    assert entries[0].details == {"n": 2} and entries[0].id > entries[1].id
    assert [e.action for e in store.list_audit(target="ps_0")] == ["session.close", "pool.add"]
    assert [e.action for e in store.list_audit(actor="cli:root")] == ["pool.add"]
    assert [e.action for e in store.list_audit(before=entries[0].id, limit=1)] == [
        "session.create"]


def test_idempotency_records_are_unique_and_age_out(store: ApiStore) -> None:
    record = IdempotencyRecord("tok_1", "k1", "hash", "ps_1", T0)
    store.put_idempotency(record)
    assert store.get_idempotency("tok_1", "k1") == record
    assert store.get_idempotency("tok_2", "k1") is None
    with pytest.raises(ConflictError):
        store.put_idempotency(record)
    store.put_idempotency(IdempotencyRecord("tok_1", "k2", "h", "ps_2", T0 + IDEMPOTENCY_TTL_S + 1))
    assert store.get_idempotency("tok_1", "k1") is None


def test_a_schema_4_file_gains_token_expiry_and_keeps_its_tokens(tmp_path: Path) -> None:
    import sqlite3

    vault = NumberVault.from_secret(bytes(range(64)))
    path = tmp_path / "old.db"
    first = SqliteStore(path, vault)
    first.create_token("ops", "admin", "h1", T0)
    first.close()
    conn = sqlite3.connect(path)  # back to schema 4, as a release before expiry wrote it
    conn.execute("ALTER TABLE api_tokens DROP COLUMN expires_at")
    conn.execute("ALTER TABLE sessions DROP COLUMN policy")  # step 6, after expiry's 5
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    second = SqliteStore(path, vault)
    try:
        found = second.find_token("h1")
        assert found is not None and found.name == "ops" and found.expires_at is None
        assert second.create_token("ci", "read-only", "h2", T0, T0 + 60).expires_at == T0 + 60
    finally:
        second.close()
