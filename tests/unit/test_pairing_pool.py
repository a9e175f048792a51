"""Virtual-number pool, allocation, session search and update: the `ApiStore` contract.

Runs against a real SQLite file and a real redis-server. Times are passed explicitly (a
fake clock)."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.pairing import ConflictError, NotFound, NumberVault, PairingError, SqliteStore
from proxy.pairing.records import KEEP, SessionFilter
from proxy.pairing.stores import ApiStore
from proxy.pairing.stores.redis import RedisStore

SECRET = bytes(range(64))
T0 = 1_700_000_000.0
ALICE, BOB, CAROL, DAVE = "+15551230001", "+15551230002", "+15551230003", "+15551230004"
V1, V2, V3 = "+15559990001", "+15559990002", "+15559990003"


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiStore]:
    vault = NumberVault.from_secret(SECRET)
    s: object
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "sipmask.db", vault)
    else:
        request.getfixturevalue("redis_client")  # flushed for this test
        s = RedisStore.from_url(request.getfixturevalue("redis_url"), vault)
    if hasattr(s, "alloc_random"):
        s.alloc_random = random.Random(7)
    assert isinstance(s, ApiStore)
    yield s
    s.close()


def fill(store: ApiStore, *numbers: str) -> None:
    for n in numbers:
        store.add_pool_number(n, T0)


def test_sqlite_store_implements_the_api_store_protocol(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "x.db", NumberVault.from_secret(SECRET))
    assert isinstance(s, ApiStore)
    s.close()


# -- pool ---------------------------------------------------------------------------------------

def test_add_list_drain_activate(store: ApiStore) -> None:
    fill(store, V2, V1)
    assert [p.number for p in store.list_pool_numbers()] == [V1, V2]
    assert store.set_pool_status(V1, "draining").status == "draining"
    assert [p.number for p in store.list_pool_numbers("draining")] == [V1]
    assert [p.number for p in store.list_pool_numbers("active")] == [V2]
    assert store.set_pool_status(V1, "active").status == "active"


def test_adding_twice_conflicts_and_unknown_numbers_are_not_found(store: ApiStore) -> None:
    fill(store, V1)
    with pytest.raises(ConflictError):
        store.add_pool_number(V1, T0)
    with pytest.raises(NotFound):
        store.set_pool_status(V2, "draining")
    with pytest.raises(NotFound):
        store.remove_pool_number(V2, T0)
    with pytest.raises(PairingError):
        store.set_pool_status(V1, "gone")


def test_open_session_counts_follow_create_close_expire_and_purge(store: ApiStore) -> None:
    fill(store, V1)
    s1 = store.allocate_session(ALICE, BOB, now=T0)  # V1 on both sides
    assert store.get_pool_number(V1).open_sessions == 2
    s2 = store.allocate_session(CAROL, DAVE, ttl_s=10, now=T0)
    assert store.get_pool_number(V1).open_sessions == 4
    store.close_session(s1.id, T0 + 1)
    assert store.get_pool_number(V1).open_sessions == 2
    assert store.expire_due(T0 + 20) == [s2.id]
    assert store.get_pool_number(V1).open_sessions == 0
    store.purge(older_than=T0 + 100)
    assert store.get_pool_number(V1).open_sessions == 0


def test_a_number_added_late_counts_the_sessions_already_on_it(store: ApiStore) -> None:
    store.allocate_session(ALICE, BOB, virtual_a=V1, virtual_b=V2, now=T0)
    assert store.add_pool_number(V1, T0).open_sessions == 1


def test_remove_is_refused_while_an_active_session_uses_the_number(store: ApiStore) -> None:
    fill(store, V1)
    session = store.allocate_session(ALICE, BOB, ttl_s=60, now=T0)
    with pytest.raises(ConflictError, match="still used by 2 active"):
        store.remove_pool_number(V1, T0 + 1)
    # past its inactivity deadline the session no longer holds the number
    assert store.remove_pool_number(V1, T0 + 61).number == V1
    assert store.list_pool_numbers() == []
    assert store.get_session(session.id).a.virtual == V1  # the session itself is untouched


# -- allocation -----------------------------------------------------------------------------

def test_allocation_never_gives_a_participant_two_active_sessions_on_one_number(
    store: ApiStore,
) -> None:
    fill(store, V1, V2, V3)
    partners = [f"+1555888{i:04d}" for i in range(3)]
    sessions = [store.allocate_session(ALICE, p, now=T0) for p in partners]
    assert sorted(s.a.virtual for s in sessions) == [V1, V2, V3]
    with pytest.raises(ConflictError) as info:
        store.allocate_session(ALICE, "+15558889999", now=T0)
    message = str(info.value)
    assert message.startswith("pool exhausted for this participant (A)")
    assert ALICE not in message and ALICE[1:] not in message
    # others are not limited by Alice's sessions
    assert store.allocate_session(BOB, CAROL, now=T0).a.virtual in (V1, V2, V3)


def test_exhaustion_names_b_when_b_is_the_busy_one(store: ApiStore) -> None:
    fill(store, V1)
    store.allocate_session(ALICE, BOB, now=T0)
    with pytest.raises(ConflictError, match=r"exhausted for this participant \(B\)"):
        store.allocate_session(CAROL, BOB, now=T0)


def test_closing_or_expiry_frees_the_number_for_the_participant(store: ApiStore) -> None:
    fill(store, V1)
    first = store.allocate_session(ALICE, BOB, ttl_s=30, now=T0)
    with pytest.raises(ConflictError):
        store.allocate_session(ALICE, CAROL, now=T0 + 1)
    # a session past its deadline does not count, even before expire_due marks it
    second = store.allocate_session(ALICE, CAROL, now=T0 + 31)
    assert second.a.virtual == V1
    assert store.get_session(first.id).status == "expired"
    store.close_session(second.id, T0 + 32)
    assert store.allocate_session(ALICE, DAVE, now=T0 + 33).a.virtual == V1


def test_draining_numbers_take_no_new_sessions(store: ApiStore) -> None:
    fill(store, V1, V2)
    store.set_pool_status(V1, "draining")
    for i in range(5):
        session = store.allocate_session(f"+1555777{i:04d}", f"+1555666{i:04d}", now=T0)
        assert session.a.virtual == session.b.virtual == V2
    with pytest.raises(ConflictError, match="draining"):
        store.allocate_session(ALICE, BOB, virtual_a=V1, now=T0)
    store.set_pool_status(V2, "draining")
    with pytest.raises(ConflictError, match="pool exhausted"):
        store.allocate_session(ALICE, BOB, now=T0)


def test_allocation_spreads_load_least_used_first(store: ApiStore) -> None:
    pool = [f"+1555444{i:04d}" for i in range(10)]
    fill(store, *pool)
    for i in range(100):
        store.allocate_session(f"+1555777{i:04d}", f"+1555666{i:04d}", now=T0)
    counts = {p.number: p.open_sessions for p in store.list_pool_numbers()}
    # 200 participant slots over 10 numbers, always least used first: exactly even
    assert set(counts.values()) == {20}


def test_ties_are_broken_at_random(tmp_path: Path) -> None:
    firsts = Counter()
    for seed in range(12):
        s = SqliteStore(tmp_path / f"{seed}.db", NumberVault.from_secret(SECRET))
        s.alloc_random = random.Random(seed)  # SQLite: the seedable source of ties
        fill(s, V1, V2, V3)
        firsts[s.allocate_session(ALICE, BOB, now=T0).a.virtual] += 1
        s.close()
    assert len(firsts) > 1


def test_explicit_virtual_numbers_still_work_and_need_not_be_in_the_pool(
    store: ApiStore,
) -> None:
    fill(store, V1)
    session = store.allocate_session(ALICE, BOB, virtual_a=V3, now=T0)
    assert session.a.virtual == V3 and session.b.virtual == V1
    with pytest.raises(ConflictError):
        store.allocate_session(ALICE, CAROL, virtual_a=V3, virtual_b=V2, now=T0)


def test_allocation_validates_like_create(store: ApiStore) -> None:
    fill(store, V1)
    with pytest.raises(PairingError, match="two different"):
        store.allocate_session(ALICE, ALICE, now=T0)
    with pytest.raises(PairingError, match="future"):
        store.allocate_session(ALICE, BOB, expires_at=T0, now=T0)
    assert store.list_sessions() == []


def test_allocated_sessions_reach_the_change_feed(store: ApiStore) -> None:
    fill(store, V1)
    seq = store.current_seq()
    session = store.allocate_session(ALICE, BOB, now=T0)
    changed, _ = store.changes_since(seq)
    assert [s.id for s in changed] == [session.id]


# -- update -----------------------------------------------------------------------------------

def test_update_expiry_and_ttl_is_a_change(store: ApiStore) -> None:
    fill(store, V1)
    session = store.allocate_session(ALICE, BOB, ttl_s=60, now=T0)
    seq = store.current_seq()
    updated = store.update_session(session.id, expires_at=T0 + 500, now=T0 + 1)
    assert (updated.expires_at, updated.ttl_s) == (T0 + 500, 60)
    updated = store.update_session(session.id, ttl_s=None, now=T0 + 2)
    assert (updated.expires_at, updated.ttl_s) == (T0 + 500, None)
    updated = store.update_session(session.id, expires_at=None, ttl_s=KEEP, now=T0 + 3)
    assert updated.deadline() == float("inf")
    changed, _ = store.changes_since(seq)
    assert [s.id for s in changed] == [session.id]


def test_update_refuses_inactive_unknown_and_bad_values(store: ApiStore) -> None:
    fill(store, V1)
    session = store.allocate_session(ALICE, BOB, ttl_s=60, now=T0)
    with pytest.raises(PairingError, match="future"):
        store.update_session(session.id, expires_at=T0, now=T0 + 1)
    with pytest.raises(PairingError, match="positive"):
        store.update_session(session.id, ttl_s=0, now=T0 + 1)
    with pytest.raises(NotFound):
        store.update_session("ps_missing", ttl_s=5, now=T0)
    with pytest.raises(ConflictError, match="not active"):
        store.update_session(session.id, ttl_s=500, now=T0 + 61)  # already past its TTL


# -- search -----------------------------------------------------------------------------------

def test_find_by_effective_status_participant_metadata_and_created(store: ApiStore) -> None:
    fill(store, V1, V2)
    s1 = store.allocate_session(ALICE, BOB, metadata={"order": "o-1"}, now=T0)
    s2 = store.allocate_session(ALICE, CAROL, ttl_s=10, metadata={"order": "o-2"}, now=T0 + 5)
    s3 = store.allocate_session(CAROL, DAVE, now=T0 + 10)
    store.close_session(s3.id, T0 + 11)
    now = T0 + 20  # s2 is past its TTL but not yet marked expired

    def ids(**kw: object) -> list[str]:
        return [s.id for s in store.find_sessions(SessionFilter(**kw), now=now).items]

    assert ids() == [s1.id, s2.id, s3.id]
    assert ids(status="open") == [s1.id]
    assert ids(status="expired") == [s2.id]
    assert ids(status="closed") == [s3.id]
    assert ids(participant=CAROL) == [s2.id, s3.id]
    assert ids(participant=ALICE, status="open") == [s1.id]
    assert ids(metadata=(("order", "o-2"),)) == [s2.id]
    assert ids(created_from=T0 + 5) == [s2.id, s3.id]
    assert ids(created_to=T0 + 5) == [s1.id]
    on_v2 = [s.id for s in (s1, s2, s3)
             if V2 in (store.get_session(s.id).a.virtual, store.get_session(s.id).b.virtual)]
    assert ids(virtual=V2) == on_v2
    with pytest.raises(PairingError):
        ids(status="bogus")


def test_cursor_pagination_visits_every_session_once(store: ApiStore) -> None:
    fill(store, V1, V2, V3)
    created = [store.allocate_session(f"+1555777{i:04d}", f"+1555666{i:04d}", now=T0).id
               for i in range(7)]
    seen, cursor = [], None
    while True:
        page = store.find_sessions(SessionFilter(), now=T0, limit=3, cursor=cursor)
        seen += [s.id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == created
    with pytest.raises(PairingError, match="cursor"):
        store.find_sessions(SessionFilter(), now=T0, cursor="not-a-cursor")


def test_schema_has_the_pool_tables(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "x.db", NumberVault.from_secret(SECRET))
    s.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"pool", "api_tokens", "audit", "idempotency"} <= tables
    conn.close()
