"""One contract for every pairing store: each test runs against a real SQLite file and a real
redis-server (started by the `redis_url` fixture), through the `PairingStore` protocol only.

Backend-specific checks (what lies in the file or in Redis, key rotation's recovery path)
are at the end, each reading the raw data of its backend.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from proxy.pairing import (
    Cdr,
    ConflictError,
    NotFound,
    NumberVault,
    PairingError,
    Participant,
    Session,
    SqliteStore,
    StoreError,
)
from proxy.pairing.stores import PairingStore
from proxy.pairing.stores.base import encode_cdr_cursor, encode_cursor
from proxy.pairing.stores.redis import RedisStore

SECRET = bytes(range(64))
OTHER_SECRET = bytes(range(100, 164))
T0 = 1_700_000_000.0

ALICE, BOB, CAROL, DAVE = "+15551230001", "+15551230002", "+15551230003", "+15551230004"
V1, V2, V3 = "+15559990001", "+15559990002", "+15559990003"
REAL_NUMBERS = (ALICE, BOB, CAROL, DAVE)

Factory = Callable[..., PairingStore]


@pytest.fixture
def vault() -> NumberVault:
    return NumberVault.from_secret(SECRET)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Opens stores of the backend under test on one shared table (one file, one Redis DB)."""
    opened: list[PairingStore] = []

    def make(vault: NumberVault | None = None) -> PairingStore:
        vault = vault or NumberVault.from_secret(SECRET)
        store: PairingStore
        if backend == "sqlite":
            store = SqliteStore(tmp_path / "sipmask.db", vault)
        else:
            request.getfixturevalue("redis_client")  # flushed for this test
            store = RedisStore.from_url(request.getfixturevalue("redis_url"), vault)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Factory) -> PairingStore:
    return open_store()


def pair(store: PairingStore, a: str = ALICE, b: str = BOB, va: str = V1, vb: str = V2,
         now: float = T0, **kw: Any) -> Session:
    """Create a session: `a` dials `va` to reach `b`, who dials `vb` back."""
    return store.create_session(Participant(a, va), Participant(b, vb), now=now, **kw)


def make_cdr(vault: NumberVault, session_id: str | None, ended_at: float, n: int = 0) -> Cdr:
    return Cdr(
        call_id_token=vault.token(f"call-{n}@host"), session_id=session_id,
        caller_token=vault.token(ALICE), callee_token=vault.token(BOB),
        started_at=ended_at - 60, answered_at=ended_at - 50, ended_at=ended_at,
        outcome="answered", sip_code=200, cause="caller hung up", duration_s=50.0,
    )


# -- sessions ----------------------------------------------------------------------------------

def test_implements_the_protocol(store: PairingStore) -> None:
    assert isinstance(store, PairingStore)


def test_create_and_get(store: PairingStore) -> None:
    session = pair(store, ttl_s=600, expires_at=T0 + 3600.25, metadata={"order": "42", "n": 1})
    assert session.id.startswith("ps_")
    assert session.status == "open" and session.mode == "voice"
    assert session.a == Participant(ALICE, V1) and session.b == Participant(BOB, V2)
    assert session.created_at == session.last_activity == T0
    assert store.get_session(session.id) == session
    message = pair(store, CAROL, DAVE, V1, V2, mode="message", now=T0 + 0.123456)
    assert store.get_session(message.id) == message  # sub-microsecond timestamps survive


def test_get_unknown_raises_not_found(store: PairingStore) -> None:
    with pytest.raises(NotFound):
        store.get_session("ps_nope")


def test_invalid_sessions_are_refused(store: PairingStore) -> None:
    for bad in ({"b": ALICE}, {"mode": "fax"}, {"expires_at": T0 - 1}, {"expires_at": T0},
                {"ttl_s": 0}, {"ttl_s": -5}):
        with pytest.raises(PairingError):
            pair(store, **bad)
    assert store.list_sessions() == []


def test_one_virtual_number_serves_many_sessions(store: PairingStore) -> None:
    pair(store, ALICE, BOB, V1, V1)
    pair(store, CAROL, DAVE, V1, V1)
    assert len(store.list_sessions(status="open")) == 2


def test_participant_busy_on_a_virtual_number_conflicts(store: PairingStore) -> None:
    first = pair(store, ALICE, BOB, V1, V2)
    with pytest.raises(ConflictError) as info:
        pair(store, ALICE, CAROL, V1, V2)  # Alice would dial V1 for both Bob and Carol
    message = str(info.value)
    assert first.id in message and "participant A" in message
    assert not any(number in message for number in REAL_NUMBERS)
    with pytest.raises(ConflictError, match="participant B"):
        pair(store, CAROL, BOB, V3, V2)  # Bob, as B this time, on the number he already dials
    with pytest.raises(ConflictError):
        pair(store, BOB, CAROL, V2, V1)  # Bob as A on V2
    assert [s.id for s in store.list_sessions()] == [first.id]


def test_same_participant_on_another_virtual_number_is_fine(store: PairingStore) -> None:
    pair(store, ALICE, BOB, V1, V2)
    pair(store, ALICE, CAROL, V2, V1)  # Alice dials V2 for Carol, V1 for Bob


def test_closed_and_expired_sessions_free_the_virtual_number(store: PairingStore) -> None:
    first = pair(store)
    store.close_session(first.id, T0 + 1)
    second = pair(store, now=T0 + 2, expires_at=T0 + 10)
    # Past its expiry but not yet marked: it does not block, and gets marked on the way.
    third = pair(store, now=T0 + 10)
    assert store.get_session(second.id).status == "expired"
    assert store.get_session(third.id).status == "open"
    idle = pair(store, CAROL, DAVE, V3, V3, ttl_s=5, now=T0 + 20)
    fourth = pair(store, DAVE, ALICE, V3, V3, now=T0 + 25)  # Dave's idle session timed out
    assert store.get_session(idle.id).status == "expired"
    assert store.get_session(fourth.id).status == "open"


def test_a_failed_create_changes_nothing(store: PairingStore) -> None:
    due = pair(store, ALICE, BOB, V1, V2, expires_at=T0 + 5)
    pair(store, CAROL, DAVE, V3, V3)
    seq = store.current_seq()
    with pytest.raises(ConflictError):  # Alice's slot is free (due), Carol's is not
        pair(store, ALICE, CAROL, V1, V3, now=T0 + 6)
    assert store.current_seq() == seq
    assert store.get_session(due.id).status == "open"


def test_concurrent_conflicting_creates_admit_exactly_one(open_store: Factory) -> None:
    stores = [open_store() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def create(store: PairingStore, n: int) -> None:
        barrier.wait()
        try:
            pair(store, ALICE, f"+1555777{n:04d}", V1, V2)
            outcomes.append("created")
        except ConflictError:
            outcomes.append("conflict")
        except sqlite3.OperationalError:  # "database is locked" would be a test failure
            outcomes.append("locked")

    threads = [threading.Thread(target=create, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["created"]


def test_close_session(store: PairingStore) -> None:
    session = pair(store)
    closed = store.close_session(session.id, T0 + 5)
    assert closed.status == "closed" and not closed.is_active(T0 + 6)
    assert store.close_session(session.id, T0 + 9) == closed  # idempotent
    with pytest.raises(NotFound):
        store.close_session("ps_unknown", T0)


def test_list_sessions_filters_and_pages(store: PairingStore) -> None:
    ids = [pair(store, ALICE, f"+1555123{i:04d}", f"+1555999{i:04d}", V2).id for i in range(10, 15)]
    store.close_session(ids[1], T0 + 1)
    assert [s.id for s in store.list_sessions()] == ids
    assert [s.id for s in store.list_sessions(status="closed")] == [ids[1]]
    assert [s.id for s in store.list_sessions(status="open", limit=2)] == [ids[0], ids[2]]
    assert [s.id for s in store.list_sessions(after=ids[2])] == ids[3:]
    assert [s.id for s in store.list_sessions(status="open", after=ids[0], limit=2)] == ids[2:4]
    assert store.list_sessions(status="expired") == []
    with pytest.raises(PairingError):
        store.list_sessions(status="bogus")
    with pytest.raises(NotFound):
        store.list_sessions(after="ps_unknown")


# -- expiry and activity -----------------------------------------------------------------------

def test_expire_due_marks_absolute_and_inactivity_expiry(store: PairingStore) -> None:
    hard = pair(store, ALICE, BOB, V1, V2, expires_at=T0 + 100)
    idle = pair(store, CAROL, BOB, V1, V1, ttl_s=30)
    forever = pair(store, DAVE, BOB, V1, V3)
    both = pair(store, ALICE, CAROL, V3, V3, ttl_s=10, expires_at=T0 + 30)
    assert store.expire_due(T0 + 9.999) == []
    assert store.expire_due(T0 + 30) == [idle.id, both.id]  # creation order
    assert store.expire_due(T0 + 100) == [hard.id]
    expired = store.get_session(hard.id)
    assert expired.status == "expired" and expired.a.number == ALICE
    assert store.get_session(forever.id).status == "open"
    assert store.expire_due(T0 + 10_000) == []


def test_touch_extends_inactivity_ttl(store: PairingStore) -> None:
    session = pair(store, ttl_s=30)
    store.touch(session.id, T0 + 20)
    assert store.get_session(session.id).last_activity == T0 + 20
    assert store.expire_due(T0 + 49) == []
    store.touch(session.id, T0 + 10)  # a late, older touch never moves the clock back
    assert store.get_session(session.id).last_activity == T0 + 20
    assert store.expire_due(T0 + 50) == [session.id]


def test_touch_never_passes_the_absolute_expiry(store: PairingStore) -> None:
    session = pair(store, ttl_s=30, expires_at=T0 + 40)
    store.touch_many({session.id: T0 + 25, "ps_unknown": T0 + 25})
    assert store.expire_due(T0 + 39) == []
    assert store.expire_due(T0 + 40) == [session.id]


def test_touch_does_not_revive_closed_sessions(store: PairingStore) -> None:
    session = pair(store, ttl_s=30)
    store.close_session(session.id, T0 + 1)
    store.touch(session.id, T0 + 2)
    assert store.get_session(session.id).last_activity == T0
    store.touch_many({})


# -- change feed -------------------------------------------------------------------------------

def test_changes_since_between_two_instances(open_store: Factory) -> None:
    proxy = open_store()   # the running proxy
    cli = open_store()     # the admin CLI or another worker, sharing the table
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
    assert seq3 > seq2 and seq3 == cli.current_seq() == proxy.current_seq()


def test_each_instance_sees_the_others_conflicts(open_store: Factory) -> None:
    one, two = open_store(), open_store()
    pair(one, ALICE, BOB, V1, V2)
    with pytest.raises(ConflictError):
        pair(two, ALICE, CAROL, V1, V3)
    assert len(two.list_sessions()) == 1


def test_changes_since_pages_by_limit(store: PairingStore) -> None:
    ids = [pair(store, f"+1555123{i:04d}", BOB, V1, f"+1555999{i:04d}").id for i in range(10, 15)]
    page, seq = store.changes_since(0, limit=2)
    assert [s.id for s in page] == ids[:2]
    page, seq = store.changes_since(seq, limit=10)
    assert [s.id for s in page] == ids[2:]
    assert store.changes_since(seq) == ([], seq)


def test_a_session_changed_twice_comes_once_in_its_latest_state(store: PairingStore) -> None:
    session = pair(store)
    store.close_session(session.id, T0 + 1)
    changed, _ = store.changes_since(0)
    assert [(s.id, s.status) for s in changed] == [(session.id, "closed")]


def test_touch_is_not_a_change(store: PairingStore) -> None:
    session = pair(store, ttl_s=60)
    _, seq = store.changes_since(0)
    store.touch(session.id, T0 + 5)
    assert store.changes_since(seq) == ([], seq)


def test_sequence_never_goes_back_after_purge(store: PairingStore) -> None:
    session = pair(store)
    store.close_session(session.id, T0 + 1)
    seq = store.current_seq()
    store.purge(older_than=T0 + 2)
    newer = pair(store, now=T0 + 3)
    changed, _ = store.changes_since(seq)
    assert [s.id for s in changed] == [newer.id]


def test_load_active_skips_due_sessions(store: PairingStore) -> None:
    live = pair(store, ALICE, BOB, V1, V2, ttl_s=100)
    due = pair(store, CAROL, BOB, V1, V1, expires_at=T0 + 5)
    closed = pair(store, DAVE, BOB, V1, V3)
    store.close_session(closed.id, T0 + 1)
    sessions, seq = store.load_active(now=T0 + 10)
    assert [s.id for s in sessions] == [live.id]
    assert seq == store.current_seq()
    assert {s.id for s in store.load_active()[0]} == {live.id, due.id}


# -- CDRs and retention ------------------------------------------------------------------------

def test_cdrs_round_trip(store: PairingStore, vault: NumberVault) -> None:
    session = pair(store)
    cdrs = [make_cdr(vault, session.id, T0 + 100 + i, i) for i in range(3)]
    assert store.record_cdrs(cdrs) == 3
    assert store.record_cdrs([]) == 0
    store.record_cdrs([make_cdr(vault, None, T0 + 200, 9)])
    assert store.list_cdrs(session_id=session.id) == list(reversed(cdrs))
    assert len(store.list_cdrs()) == 4
    assert store.list_cdrs(limit=1)[0].session_id is None
    assert store.list_cdrs(session_id="ps_unknown") == []


def export_all(store: PairingStore, start: float, end: float, limit: int,
               session_id: str | None = None) -> tuple[list[Cdr], int]:
    """Every CDR `export_cdrs` yields for the range, following cursors; and the page count."""
    found: list[Cdr] = []
    cursor: str | None = None
    for pages in range(1, 10_000):
        page = store.export_cdrs(start, end, session_id=session_id, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        found += page.items
        if page.next_cursor is None:
            return found, pages
        assert page.items  # a page with a cursor onward is never empty
        cursor = page.next_cursor
    raise AssertionError("the cursor never ends")


def test_export_cdrs_range_is_start_inclusive_end_exclusive(store: PairingStore,
                                                            vault: NumberVault) -> None:
    cdrs = [make_cdr(vault, None, T0 + i, i) for i in range(10)]
    store.record_cdrs(reversed(cdrs))  # recorded newest first: the export orders by ended_at
    page = store.export_cdrs(T0 + 2, T0 + 5)
    assert page.items == cdrs[2:5] and page.next_cursor is None
    assert store.export_cdrs(T0 + 2.5, T0 + 4.5).items == cdrs[3:5]
    assert store.export_cdrs(T0 - 100, T0 + 100).items == cdrs
    assert store.export_cdrs(T0 + 9, T0 + 9).items == []  # an empty range
    assert store.export_cdrs(T0 + 10, T0 + 99).items == []  # past the last CDR


def test_export_cdrs_on_an_empty_store(store: PairingStore) -> None:
    page = store.export_cdrs(T0, T0 + 86_400, limit=5)
    assert page.items == [] and page.next_cursor is None
    assert export_all(store, T0, T0 + 1, 1) == ([], 1)


def test_export_cdrs_cursor_walks_every_page_once(store: PairingStore,
                                                  vault: NumberVault) -> None:
    # ties on ended_at straddle page boundaries: the cursor must key on (ended_at, id)
    cdrs = [make_cdr(vault, None, T0 + i // 3, i) for i in range(25)]
    store.record_cdrs(cdrs)
    for limit in (1, 2, 3, 4, 7, 25, 26, 1000):
        found, pages = export_all(store, T0, T0 + 100, limit)
        assert sorted(c.call_id_token for c in found) == sorted(c.call_id_token for c in cdrs)
        assert len(found) == 25 and [c.ended_at for c in found] == sorted(c.ended_at for c in cdrs)
        assert pages == -(-25 // limit)  # no trailing empty page
    # a full last page says so: no cursor to an empty page
    assert store.export_cdrs(T0, T0 + 100, limit=25).next_cursor is None
    assert store.export_cdrs(T0, T0 + 100, limit=24).next_cursor is not None


def test_export_cdrs_pages_are_stable_while_cdrs_are_recorded_and_purged(
        store: PairingStore, vault: NumberVault) -> None:
    store.record_cdrs([make_cdr(vault, None, T0 + i, i) for i in range(10)])
    first = store.export_cdrs(T0 + 3, T0 + 100, limit=3)
    assert [c.ended_at for c in first.items] == [T0 + 3, T0 + 4, T0 + 5]
    store.record_cdrs([make_cdr(vault, None, T0 + 4, 99),   # before the cursor: not repeated
                       make_cdr(vault, None, T0 + 50, 98)])  # ahead: included
    store.purge(older_than=T0 + 6)  # the cursor's own CDR and all before it are gone
    rest, _ = export_all_from(store, first.next_cursor, T0 + 3, T0 + 100, 3)
    assert [c.ended_at for c in rest] == [T0 + t for t in (6, 7, 8, 9, 50)]


def export_all_from(store: PairingStore, cursor: str | None, start: float, end: float,
                    limit: int) -> tuple[list[Cdr], int]:
    found: list[Cdr] = []
    pages = 0
    while cursor is not None:
        page = store.export_cdrs(start, end, limit=limit, cursor=cursor)
        found += page.items
        cursor, pages = page.next_cursor, pages + 1
    return found, pages


def test_export_cdrs_of_one_session(store: PairingStore, vault: NumberVault) -> None:
    one, two = pair(store), pair(store, CAROL, DAVE)
    mine = [make_cdr(vault, one.id, T0 + 10 - i % 4, i) for i in range(9)]
    store.record_cdrs(mine)
    store.record_cdrs([make_cdr(vault, two.id, T0 + 5, 50), make_cdr(vault, None, T0 + 5, 51)])
    found, pages = export_all(store, T0, T0 + 100, 2, session_id=one.id)
    assert pages == 5 and len(found) == 9 and {c.session_id for c in found} == {one.id}
    assert [c.ended_at for c in found] == sorted(c.ended_at for c in mine)
    assert store.export_cdrs(T0 + 8, T0 + 10, session_id=one.id).items == [
        c for c in sorted(mine, key=lambda c: c.ended_at) if T0 + 8 <= c.ended_at < T0 + 10]
    assert store.export_cdrs(T0, T0 + 100, session_id="ps_0000000000000000").items == []


def test_export_cdrs_refuses_foreign_cursors_and_infinite_ranges(store: PairingStore,
                                                                 vault: NumberVault) -> None:
    store.record_cdrs([make_cdr(vault, None, T0 + i, i) for i in range(3)])
    cursor = store.export_cdrs(T0, T0 + 10, limit=1).next_cursor
    assert cursor is not None
    other_backend = [encode_cdr_cursor(p, T0, 1) for p in ("sqlite-cdr:", "redis-cdr:")]
    assert cursor in other_backend  # exactly one of them is this backend's
    other_backend.remove(cursor)
    for bad in ("", "nope", cursor[:-2] + "!!", cursor.split(".")[0], "x." + cursor,
                encode_cursor("sqlite:", 1), *other_backend):
        with pytest.raises(PairingError):
            store.export_cdrs(T0, T0 + 10, cursor=bad)
    for start, end in ((float("-inf"), T0), (T0, float("inf")), (float("nan"), T0)):
        with pytest.raises(PairingError):
            store.export_cdrs(start, end)


def test_exported_cdrs_carry_tokens_never_numbers(store: PairingStore, vault: NumberVault) -> None:
    store.record_cdrs([make_cdr(vault, None, T0 + i, i) for i in range(5)])
    text = repr(store.export_cdrs(T0, T0 + 10).items)
    assert vault.token(ALICE) in text
    assert not any(number in text or number[1:] in text for number in REAL_NUMBERS)


def test_purge_removes_old_closed_and_expired_sessions_and_cdrs(store: PairingStore,
                                                                vault: NumberVault) -> None:
    old_closed = pair(store, ALICE, BOB, V1, V2)
    old_expired = pair(store, CAROL, BOB, V1, V1, expires_at=T0 + 10)
    still_open = pair(store, DAVE, BOB, V1, V3)
    store.close_session(old_closed.id, T0 + 5)
    store.expire_due(T0 + 10)
    recent = pair(store, ALICE, BOB, V1, V2, now=T0 + 500)
    store.close_session(recent.id, T0 + 900)
    store.record_cdrs([make_cdr(vault, old_closed.id, T0 + 6),
                       make_cdr(vault, recent.id, T0 + 800)])

    assert store.purge(older_than=T0 + 600) == (2, 1)
    assert {s.id for s in store.list_sessions()} == {still_open.id, recent.id}
    assert [c.session_id for c in store.list_cdrs()] == [recent.id]
    assert store.list_cdrs(session_id=old_closed.id) == []
    for gone in (old_closed.id, old_expired.id):
        with pytest.raises(NotFound):
            store.get_session(gone)
    assert store.purge(older_than=T0 + 600) == (0, 0)
    # The freed slots stay usable, and a purge never touches open sessions however old.
    assert store.purge(older_than=T0 + 10**9) == (1, 1)
    assert [s.id for s in store.list_sessions()] == [still_open.id]


def test_purge_in_many_batches(store: PairingStore) -> None:
    ids = [pair(store, f"+1555{i:07d}", BOB, V1, f"+1666{i:07d}").id for i in range(1203)]
    for n, session_id in enumerate(ids):
        store.close_session(session_id, T0 + n)
    assert store.purge(older_than=T0 + 1202) == (1202, 0)
    assert [s.id for s in store.list_sessions()] == ids[-1:]


# -- keys --------------------------------------------------------------------------------------

def test_rotate_key_re_encrypts_and_re_indexes(open_store: Factory) -> None:
    store = open_store()
    first = pair(store, ALICE, BOB, V1, V2, ttl_s=60)
    closed = pair(store, CAROL, DAVE, V3, V3)
    store.close_session(closed.id, T0 + 1)
    new_vault = NumberVault.from_secret(OTHER_SECRET)
    assert store.rotate_key(new_vault) == 2

    assert store.get_session(first.id) == first
    with pytest.raises(ConflictError):  # the conflict check finds Alice under the new index
        pair(store, ALICE, CAROL, V1, V3)
    pair(store, CAROL, DAVE, V3, V3)
    with pytest.raises(StoreError):
        open_store(NumberVault.from_secret(SECRET))  # the old key no longer opens it
    reopened = open_store(new_vault)
    assert reopened.get_session(closed.id) == store.get_session(closed.id)


def test_a_store_opened_before_a_rotation_cannot_write_old_key_numbers(
        open_store: Factory) -> None:
    stale, rotator = open_store(), open_store()
    rotator.rotate_key(NumberVault.from_secret(OTHER_SECRET))
    with pytest.raises(StoreError, match="does not match"):
        pair(stale)
    assert rotator.list_sessions() == []


def test_a_store_refuses_another_key(open_store: Factory) -> None:
    pair(open_store())
    with pytest.raises(StoreError, match="does not match"):
        open_store(NumberVault.from_secret(OTHER_SECRET))


# -- what lies at rest -------------------------------------------------------------------------

def _sqlite_raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def _redis_raw(client: redis.Redis) -> bytes:
    """Every key name and every value in the Redis database, concatenated."""
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == b"zset":
            parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            parts.append(repr(client.dump(key)).encode())
    return b"\n".join(parts)


def _exercise(store: PairingStore, vault: NumberVault) -> None:
    session = pair(store, ttl_s=60, metadata={"order": "A-1"})
    other = pair(store, CAROL, DAVE, V3, V3, expires_at=T0 + 50)
    store.touch(session.id, T0 + 1)
    store.record_cdrs([make_cdr(vault, session.id, T0 + 100, i) for i in range(5)])
    store.close_session(session.id, T0 + 200)
    store.expire_due(T0 + 60)
    assert store.get_session(other.id).status == "expired"


def _assert_no_real_number(raw: bytes) -> None:
    assert b"9990001" in raw  # virtual numbers are the operator's own, in clear: the grep works
    for number in REAL_NUMBERS:
        digits = number[2:]
        assert digits.encode() not in raw, number
        assert digits.encode("utf-16-le") not in raw, number


def test_sqlite_export_page_deep_in_the_range_seeks_to_its_cursor(
        tmp_path: Path, vault: NumberVault) -> None:
    store = SqliteStore(tmp_path / "s.db", vault)
    store.record_cdrs(make_cdr(vault, None, T0 + i * 0.01, i) for i in range(30_000))
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def cost(cursor: str | None) -> int:
        steps[0] = 0
        store._conn.set_progress_handler(count, 100)
        try:
            assert len(store.export_cdrs(T0, T0 + 10**6, limit=100, cursor=cursor).items) == 100
        finally:
            store._conn.set_progress_handler(None, 0)
        return steps[0]

    deep = store.export_cdrs(T0, T0 + 10**6, limit=29_000).next_cursor
    # keyset paging: the page after row 29,000 costs what the first page costs, not 290 times
    assert cost(deep) <= 2 * cost(None) + 5
    store.close()


def test_sqlite_keeps_no_real_number_in_clear(tmp_path: Path, vault: NumberVault) -> None:
    path = tmp_path / "sipmask.db"
    store = SqliteStore(path, vault)
    _exercise(store, vault)
    store.rotate_key(NumberVault.from_secret(OTHER_SECRET))
    store.close()
    _assert_no_real_number(_sqlite_raw(path))


def test_redis_keeps_no_real_number_in_clear(redis_client: redis.Redis, redis_url: str,
                                             vault: NumberVault) -> None:
    store = RedisStore.from_url(redis_url, vault)
    _exercise(store, vault)
    raw = _redis_raw(redis_client)
    _assert_no_real_number(raw)
    assert vault.index(ALICE).encode() in raw  # found through the HMAC index
    store.rotate_key(NumberVault.from_secret(OTHER_SECRET))
    raw = _redis_raw(redis_client)
    _assert_no_real_number(raw)
    assert vault.index(ALICE).encode() not in raw
    store.close()


# -- interrupted rotations ---------------------------------------------------------------------

def test_sqlite_rotation_interrupted_rolls_back(tmp_path: Path, vault: NumberVault) -> None:
    path = tmp_path / "sipmask.db"
    store = SqliteStore(path, vault)
    sessions = [pair(store, f"+1555{i:07d}", BOB, V1, f"+1666{i:07d}") for i in range(5)]
    new_vault = NumberVault.from_secret(OTHER_SECRET)

    class StoppedHalfWay(NumberVault):
        calls = 0

        def encrypt(self, number: str) -> bytes:
            StoppedHalfWay.calls += 1
            if StoppedHalfWay.calls == 7:
                raise KeyboardInterrupt  # as if the process were stopped half way
            return super().encrypt(number)

    with pytest.raises(KeyboardInterrupt):
        store.rotate_key(StoppedHalfWay.from_secret(OTHER_SECRET))
    store.close()
    again = SqliteStore(path, vault)  # still entirely under the old key
    assert [again.get_session(s.id) for s in sessions] == sessions
    assert again.rotate_key(new_vault) == 5
    again.close()
    rotated = SqliteStore(path, new_vault)
    assert [rotated.get_session(s.id) for s in sessions] == sessions
    rotated.close()


def test_redis_rotation_interrupted_is_finished_by_running_it_again(
        redis_client: redis.Redis, redis_url: str, vault: NumberVault,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = RedisStore.from_url(redis_url, vault)
    sessions = [pair(store, f"+1555{i:07d}", BOB, V1, f"+1666{i:07d}") for i in range(5)]
    new_vault = NumberVault.from_secret(OTHER_SECRET)
    real = RedisStore._rotate_session
    done = {"n": 0}

    def stop_after_two(self: RedisStore, *args: Any) -> int:
        if done["n"] == 2:
            raise KeyboardInterrupt
        done["n"] += 1
        return real(self, *args)

    monkeypatch.setattr(RedisStore, "_rotate_session", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        store.rotate_key(new_vault)
    monkeypatch.setattr(RedisStore, "_rotate_session", real)

    # Half done: nobody opens it normally, and writes are refused meanwhile.
    for key in (vault, new_vault):
        with pytest.raises(StoreError):
            RedisStore.from_url(redis_url, key)
    with pytest.raises(StoreError, match="rotation"):
        pair(store, CAROL, DAVE, V3, V3)
    with pytest.raises(StoreError, match="different key"):
        RedisStore.from_url(redis_url, vault, rotating=True).rotate_key(
            NumberVault.from_secret(bytes(64)))

    resumed = RedisStore.from_url(redis_url, vault, rotating=True)
    assert resumed.rotate_key(new_vault) == 3  # the two already done are skipped
    fresh = RedisStore.from_url(redis_url, new_vault)
    assert [fresh.get_session(s.id) for s in sessions] == sessions
    with pytest.raises(ConflictError):
        pair(fresh, sessions[0].a.number, CAROL, V1, V3)
    for s in (store, resumed, fresh):
        s.close()
