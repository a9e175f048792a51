"""The store contract for a session's call policy, on a real SQLite file and a real
redis-server (as tests/unit/test_store_contract.py): kept as given on create and allocation,
read back equal everywhere a session is read, changed by `update_session` (a change on the
feed), and the default for sessions written before policies existed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from proxy.pairing import NumberVault, Participant, SqliteStore
from proxy.pairing.policy import DEFAULT_POLICY, SessionPolicy, parse_policy
from proxy.pairing.records import KEEP, SessionFilter
from proxy.pairing.stores import ApiStore
from proxy.pairing.stores.redis import RedisStore
from proxy.pairing.stores.sqlite import MIGRATIONS, SCHEMA_VERSION

SECRET = bytes(range(64))
T0 = 1_700_000_000.0
ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"
POLICY = parse_policy({
    "calling_windows": [{"days": "mon-fri", "from": "08:00", "to": "20:00", "tz": "Asia/Singapore"},
                        {"days": "sat", "from": "10:00", "to": "14:00", "tz": "Europe/Paris"}],
    "max_call_s": 900, "ring_timeout_s": 25, "direction": "a_to_b", "single_use": True,
})


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiStore]:
    vault = NumberVault.from_secret(SECRET)
    opened: ApiStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "sipmask.db", vault)
    else:
        request.getfixturevalue("redis_client")  # flushed for this test
        opened = RedisStore.from_url(request.getfixturevalue("redis_url"), vault)
    yield opened
    opened.close()


def _read_everywhere(store: ApiStore, session_id: str) -> list[SessionPolicy]:
    """The session's policy as each way of reading sessions gives it."""
    got = [store.get_session(session_id).policy]
    got += [s.policy for s in store.load_active(T0)[0] if s.id == session_id]
    got += [s.policy for s in store.changes_since(0)[0] if s.id == session_id]
    got += [s.policy for s in store.list_sessions() if s.id == session_id]
    got += [s.policy for s in store.find_sessions(SessionFilter(), now=T0).items
            if s.id == session_id]
    return got


def test_a_created_policy_reads_back_equal_everywhere(store: ApiStore) -> None:
    session = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=T0,
                                   policy=POLICY)
    assert session.policy == POLICY
    assert _read_everywhere(store, session.id) == [POLICY] * 5


def test_a_session_without_policy_has_the_default(store: ApiStore) -> None:
    session = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=T0)
    assert _read_everywhere(store, session.id) == [DEFAULT_POLICY] * 5


def test_allocation_keeps_the_policy(store: ApiStore) -> None:
    store.add_pool_number(V1, T0)
    session = store.allocate_session(ALICE, BOB, now=T0, policy=POLICY)
    assert session.a.virtual == V1
    assert store.get_session(session.id).policy == POLICY


def test_update_changes_the_policy_as_a_change_and_keep_leaves_it(store: ApiStore) -> None:
    session = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=T0,
                                   ttl_s=60)
    seq = store.current_seq()
    updated = store.update_session(session.id, policy=POLICY, now=T0 + 1)
    assert updated.policy == POLICY and updated.ttl_s == 60
    changed, _ = store.changes_since(seq)
    assert [(s.id, s.policy) for s in changed] == [(session.id, POLICY)]
    kept = store.update_session(session.id, ttl_s=120, now=T0 + 2)
    assert kept.policy == POLICY and kept.ttl_s == 120
    assert store.update_session(session.id, policy=DEFAULT_POLICY, ttl_s=KEEP,
                                now=T0 + 3).policy == DEFAULT_POLICY
    assert store.get_session(session.id).policy == DEFAULT_POLICY


def test_closing_keeps_the_policy(store: ApiStore) -> None:
    session = store.create_session(Participant(ALICE, V1), Participant(CAROL, V2), now=T0,
                                   policy=POLICY)
    closed = store.close_session(session.id, T0 + 5)
    assert closed.status == "closed" and closed.policy == POLICY


def test_a_sqlite_file_from_before_policies_is_migrated(tmp_path: Path) -> None:
    vault = NumberVault.from_secret(SECRET)
    path = tmp_path / "old.db"
    store = SqliteStore(path, vault)
    session = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=T0)
    store.close()
    step = next(i for i, statements in enumerate(MIGRATIONS)
                if any("ADD COLUMN policy" in statement for statement in statements))
    assert step == SCHEMA_VERSION - 1  # the newest step: undone alone below
    conn = sqlite3.connect(path)  # back to the schema before policies: no policy column
    conn.execute("ALTER TABLE sessions DROP COLUMN policy")
    conn.execute(f"PRAGMA user_version = {step}")
    conn.commit()
    conn.close()
    store = SqliteStore(path, vault)
    assert store.schema_version == SCHEMA_VERSION
    assert store.get_session(session.id).policy == DEFAULT_POLICY
    assert store.update_session(session.id, policy=POLICY, now=T0 + 1).policy == POLICY
    store.close()


def test_a_redis_session_from_before_policies_reads_the_default(
        redis_client: redis.Redis, redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, NumberVault.from_secret(SECRET))
    session = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=T0,
                                   policy=POLICY)
    assert redis_client.hdel(f"sipmask:s:{session.id}", "policy") == 1
    assert store.get_session(session.id).policy == DEFAULT_POLICY
    store.close()
