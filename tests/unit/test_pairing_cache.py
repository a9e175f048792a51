"""PairingCache (the per-call lookup) and PairingService (store + cache glue)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.pairing import (
    Cdr,
    Match,
    NumberVault,
    PairingCache,
    PairingService,
    Participant,
    Session,
    SqliteStore,
)

T0 = 1_700_000_000.0
ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"


def session(sid: str = "ps_1", a: str = ALICE, va: str = V1, b: str = BOB, vb: str = V2,
            status: str = "open", expires_at: float | None = None, ttl_s: float | None = None,
            last_activity: float = T0) -> Session:
    return Session(id=sid, a=Participant(a, va), b=Participant(b, vb), status=status,  # type: ignore[arg-type]
                   created_at=T0, expires_at=expires_at, ttl_s=ttl_s, last_activity=last_activity)


# -- the lookup contract -----------------------------------------------------------------------

def test_lookup_in_both_directions() -> None:
    cache = PairingCache()
    cache.apply(session())
    assert cache.lookup(ALICE, V1, T0) == Match("ps_1", callee=BOB, present=V2)
    assert cache.lookup(BOB, V2, T0) == Match("ps_1", callee=ALICE, present=V1)


def test_wrong_virtual_or_unknown_caller_does_not_match() -> None:
    cache = PairingCache()
    cache.apply(session())
    assert cache.lookup(ALICE, V2, T0) is None
    assert cache.lookup(BOB, V1, T0) is None
    assert cache.lookup(CAROL, V1, T0) is None


def test_shared_virtual_number() -> None:
    cache = PairingCache()
    cache.apply(session("ps_1", ALICE, V1, BOB, V1))
    cache.apply(session("ps_2", CAROL, V1, "+15551230004", V1))
    assert cache.lookup(ALICE, V1, T0) == Match("ps_1", BOB, V1)
    assert cache.lookup(BOB, V1, T0) == Match("ps_1", ALICE, V1)
    assert cache.lookup(CAROL, V1, T0) == Match("ps_2", "+15551230004", V1)


def test_lookup_returns_a_prebuilt_match() -> None:
    cache = PairingCache()
    cache.apply(session())
    assert cache.lookup(ALICE, V1, T0) is cache.lookup(ALICE, V1, T0 + 1)


# -- expiry at lookup --------------------------------------------------------------------------

def test_absolute_expiry_is_enforced_and_dropped() -> None:
    cache = PairingCache()
    cache.apply(session(expires_at=T0 + 60))
    assert cache.lookup(ALICE, V1, T0 + 59.9) is not None
    assert cache.lookup(ALICE, V1, T0 + 60) is None
    assert "ps_1" not in cache and len(cache) == 0
    assert cache.lookup(BOB, V2, T0) is None  # both directions went


def test_inactivity_ttl_and_touch() -> None:
    cache = PairingCache()
    cache.apply(session(ttl_s=30))
    assert cache.touch("ps_1", T0 + 20)
    assert cache.lookup(ALICE, V1, T0 + 49) is not None
    assert cache.touch("ps_1", T0 + 5)  # older touch: no effect
    assert cache.lookup(BOB, V2, T0 + 49.5) is not None
    assert cache.lookup(BOB, V2, T0 + 50) is None
    assert not cache.touch("ps_1", T0 + 51)


def test_touch_cannot_outlive_absolute_expiry_or_revive() -> None:
    cache = PairingCache()
    cache.apply(session(ttl_s=30, expires_at=T0 + 40))
    cache.touch("ps_1", T0 + 25)
    assert cache.lookup(ALICE, V1, T0 + 40) is None
    cache.apply(session(ttl_s=30))
    cache.touch("ps_1", T0 + 31)  # already past its idle deadline
    assert cache.lookup(ALICE, V1, T0 + 31) is None


def test_expire_due_sweeps_without_lookups() -> None:
    cache = PairingCache()
    cache.apply(session("ps_1", expires_at=T0 + 10))
    cache.apply(session("ps_2", CAROL, V1, BOB, V1))
    assert cache.expire_due(T0 + 10) == ["ps_1"]
    assert len(cache) == 1


# -- apply / load ------------------------------------------------------------------------------

def test_apply_closed_or_expired_removes() -> None:
    cache = PairingCache()
    cache.apply(session())
    cache.apply(session(status="closed"))
    assert cache.lookup(ALICE, V1, T0) is None and len(cache) == 0
    cache.apply(session(status="expired"))  # unknown and not open: nothing happens
    assert len(cache) == 0


def test_reapply_updates_and_keeps_newer_local_activity() -> None:
    cache = PairingCache()
    cache.apply(session(ttl_s=30))
    cache.touch("ps_1", T0 + 25)
    cache.apply(session(ttl_s=30))  # the store has not seen the touch yet
    assert cache.lookup(ALICE, V1, T0 + 50) is not None
    cache.apply(session(ttl_s=30, va="+15559990003"))
    assert cache.lookup(ALICE, V1, T0) is None
    assert cache.lookup(ALICE, "+15559990003", T0) is not None


def test_newer_session_takes_over_a_route_whole() -> None:
    cache = PairingCache()
    cache.apply(session("ps_old", expires_at=T0 + 5))
    cache.apply(session("ps_new", ALICE, V1, CAROL, "+15559990003"))
    assert cache.lookup(ALICE, V1, T0) == Match("ps_new", CAROL, "+15559990003")
    assert cache.lookup(BOB, V2, T0) is None
    assert "ps_old" not in cache


def test_load_replaces_content_and_skips_non_open() -> None:
    cache = PairingCache()
    cache.apply(session("ps_gone"))
    cache.load([session("ps_1", CAROL, V1, BOB, V1), session("ps_2", status="closed")])
    assert len(cache) == 1 and cache.lookup(ALICE, V1, T0) is None
    assert cache.lookup(CAROL, V1, T0) == Match("ps_1", BOB, V1)


# -- PairingService ----------------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sipmask.db"


@pytest.fixture
def vault() -> NumberVault:
    return NumberVault.from_secret(bytes(range(64)))


@pytest.fixture
def stores(db_path: Path, vault: NumberVault) -> Iterator[tuple[SqliteStore, SqliteStore]]:
    proxy, cli = SqliteStore(db_path, vault), SqliteStore(db_path, vault)
    yield proxy, cli
    proxy.close()
    cli.close()


def test_service_sees_a_pairing_added_by_another_process(
        stores: tuple[SqliteStore, SqliteStore]) -> None:
    proxy_store, cli_store = stores
    clock = FakeClock(T0)
    before = cli_store.create_session(Participant(CAROL, V1), Participant(BOB, V1), now=T0 - 10)
    service = PairingService(proxy_store, PairingCache(), clock)
    assert service.start() == 1
    assert service.lookup(CAROL, V1) == Match(before.id, BOB, V1)

    added = cli_store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=T0)
    assert service.lookup(ALICE, V1) is None  # not polled yet
    assert service.poll() == 1
    assert service.lookup(ALICE, V1) == Match(added.id, BOB, V2)

    cli_store.close_session(added.id, T0 + 1)
    service.poll()
    assert service.lookup(ALICE, V1) is None
    assert service.poll() == 0


def test_service_create_close_are_immediate(stores: tuple[SqliteStore, SqliteStore]) -> None:
    service = PairingService(stores[0], PairingCache(), FakeClock(T0))
    service.start()
    created = service.create(Participant(ALICE, V1), Participant(BOB, V2), ttl_s=60)
    assert service.lookup(BOB, V2) == Match(created.id, ALICE, V1)
    service.poll()  # seeing its own change again is harmless
    assert service.lookup(BOB, V2) == Match(created.id, ALICE, V1)
    service.close(created.id)
    assert service.lookup(BOB, V2) is None
    assert stores[1].get_session(created.id).status == "closed"


def test_service_resolve_normalises_sip_forms(stores: tuple[SqliteStore, SqliteStore]) -> None:
    service = PairingService(stores[0], PairingCache(), FakeClock(T0))
    created = service.create(Participant(ALICE, V1), Participant(BOB, V2))
    assert service.resolve("+1 555 123 0001", "5559990001;phone-context=+1") == \
        Match(created.id, BOB, V2)
    assert service.resolve("garbage", V1) is None


def test_service_touch_and_cdrs_are_buffered_until_flush(
        stores: tuple[SqliteStore, SqliteStore], vault: NumberVault) -> None:
    proxy_store, cli_store = stores
    clock = FakeClock(T0)
    service = PairingService(proxy_store, PairingCache(), clock)
    created = service.create(Participant(ALICE, V1), Participant(BOB, V2), ttl_s=30)
    service.touch(created.id, T0 + 20)
    cdr = Cdr(vault.token("c1"), created.id, vault.token(ALICE), vault.token(BOB), T0 + 20,
              T0 + 21, T0 + 40, "answered", 200, "", 19.0)
    service.record_cdr(cdr)
    assert service.pending == 1
    assert cli_store.list_cdrs() == []
    assert cli_store.get_session(created.id).last_activity == T0
    assert service.flush() == 1
    assert service.pending == 0
    assert cli_store.list_cdrs() == [cdr]
    assert cli_store.get_session(created.id).last_activity == T0 + 20
    assert service.flush() == 0


def test_service_expire_marks_store_and_cache(stores: tuple[SqliteStore, SqliteStore]) -> None:
    proxy_store, cli_store = stores
    clock = FakeClock(T0)
    service = PairingService(proxy_store, PairingCache(), clock)
    service.start()
    created = service.create(Participant(ALICE, V1), Participant(BOB, V2), ttl_s=30)
    service.touch(created.id, T0 + 10)
    assert service.expire(T0 + 39) == []
    assert service.expire(T0 + 40) == [created.id]
    assert cli_store.get_session(created.id).status == "expired"
    assert len(service.cache) == 0


def test_service_purge_applies_the_retention_period(
        stores: tuple[SqliteStore, SqliteStore]) -> None:
    service = PairingService(stores[0], PairingCache(), FakeClock(T0))
    old = service.create(Participant(ALICE, V1), Participant(BOB, V2), now=T0)
    service.close(old.id, now=T0 + 10)
    assert service.purge(retention_s=100, now=T0 + 100) == (0, 0)
    assert service.purge(retention_s=100, now=T0 + 111) == (1, 0)
