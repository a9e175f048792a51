"""PairingService housekeeping through a runner (a worker thread in the app): the store is
called through it, the cache stays on the loop, and a poll that races a local write reads
again instead of resurrecting a closed session."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from proxy.pairing import Cdr, NumberVault, PairingService, Participant, SqliteStore

T0 = 1_700_000_000.0
ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "s.db", NumberVault.from_secret(bytes(range(64))))


def threaded_runner(calls: list[str]) -> Callable[..., Any]:
    executor = ThreadPoolExecutor(max_workers=1)

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        calls.append(fn.__name__)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: (threading.current_thread().name, fn(*args)))

    async def unwrap(fn: Callable[..., Any], *args: Any) -> Any:
        thread, result = await run(fn, *args)
        assert thread != threading.main_thread().name
        return result

    return unwrap


def test_poll_flush_expire_purge_run_in_the_worker(store: SqliteStore, tmp_path: Path) -> None:
    service = PairingService(store, clock=lambda: T0)
    other = SqliteStore(tmp_path / "s.db", NumberVault.from_secret(bytes(range(64))))  # the CLI
    calls: list[str] = []
    run = threaded_runner(calls)

    async def scenario() -> None:
        service.start()
        session = other.create_session(Participant(ALICE, V1), Participant(BOB, V2), ttl_s=30,
                                       now=T0)
        assert await service.poll_async(run) == 1
        assert service.lookup(ALICE, V1) is not None
        service.touch(session.id, T0 + 20)
        service.record_cdr(Cdr("c", session.id, "n_a", "n_b", T0, None, T0 + 21, "failed",
                               486, "", 0.0))
        assert await service.flush_async(run) == 1
        assert store.get_session(session.id).last_activity == T0 + 20
        assert await service.expire_async(run, T0 + 49) == []
        assert await service.expire_async(run, T0 + 50) == [session.id]
        assert service.lookup(ALICE, V1, T0 + 10) is None
        assert await service.purge_async(run, retention_s=10, now=T0 + 61) == (1, 1)

    asyncio.run(scenario())
    assert {"changes_since", "touch_many", "record_cdrs", "expire_due", "purge"} <= set(calls)


def test_flush_failure_keeps_the_batch(store: SqliteStore) -> None:
    service = PairingService(store, clock=lambda: T0)
    session = service.create(Participant(ALICE, V1), Participant(BOB, V2), ttl_s=30)
    service.touch(session.id, T0 + 5)
    fail = [True]

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        if fail[0]:
            raise ConnectionError("store down")
        return fn(*args)

    async def scenario() -> None:
        with pytest.raises(ConnectionError):
            await service.flush_async(run)
        service.touch(session.id, T0 + 7)
        fail[0] = False
        await service.flush_async(run)

    asyncio.run(scenario())
    assert store.get_session(session.id).last_activity == T0 + 7


def test_a_poll_racing_a_local_close_reads_again(store: SqliteStore) -> None:
    service = PairingService(store, clock=lambda: T0)
    service.start()
    session = store.create_session(Participant(ALICE, V1), Participant(CAROL, V2), now=T0)
    first = [True]

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)  # read the store: the session is still open here
        if first[0]:
            first[0] = False
            service.close(session.id)  # the API closes it while the read is in flight
        return result

    asyncio.run(service.poll_async(run))
    assert service.lookup(ALICE, V1) is None  # the stale "open" read was not applied


def test_a_poll_racing_an_api_write_to_the_cache_reads_again(store: SqliteStore) -> None:
    service = PairingService(store, clock=lambda: T0)
    service.start()
    session = store.create_session(Participant(ALICE, V1), Participant(CAROL, V2), now=T0)
    first = [True]

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        if first[0]:
            first[0] = False
            service.cache.apply(store.close_session(session.id, T0 + 1))  # as the API does
        return result

    asyncio.run(service.poll_async(run))
    assert service.lookup(ALICE, V1) is None


def test_a_redis_that_comes_back_empty_is_detected_and_the_cache_reloaded(
        redis_client: Any, redis_url: str) -> None:
    """The feed position of a store whose data was lost means nothing: without a resync a pairing
    created after the loss is never routed (its change seq is below the one the cache holds) and
    a lost one keeps being bridged. The epoch tells the cache the history changed."""
    from proxy.pairing.stores.redis import RedisStore

    vault = NumberVault.from_secret(bytes(range(64)))
    store = RedisStore.from_url(redis_url, vault)
    writer = RedisStore.from_url(redis_url, vault)  # another worker, or the CLI
    service = PairingService(store, clock=lambda: T0)
    run = threaded_runner([])

    async def scenario() -> None:
        service.start()
        for n in range(5):  # the feed moves on: its position is well past 1
            writer.create_session(Participant(f"+1555123000{n}", f"+1555777000{n}"),
                                  Participant(f"+1555888000{n}", f"+1555777100{n}"), now=T0)
        assert await service.poll_async(run) == 5
        assert service.lookup("+15551230000", "+15557770000") is not None
        assert await service.poll_async(run) == 0 and service.resyncs == 0  # the epoch is stable
        redis_client.flushall()  # Redis restarted without its data
        writer.create_session(Participant(CAROL, V1), Participant(BOB, V2), now=T0)
        assert await service.poll_async(run) == 1
        assert service.resyncs == 1
        assert service.lookup(CAROL, V1) is not None, "a pairing created after the loss is routed"
        assert service.lookup("+15551230000", "+15557770000") is None, "a lost one is not"
        assert await service.poll_async(run) == 0 and service.resyncs == 1

    try:
        asyncio.run(scenario())
    finally:
        store.close()
        writer.close()


def test_the_sqlite_epoch_is_stable_and_a_replaced_file_reloads_the_cache(tmp_path: Path) -> None:
    vault = NumberVault.from_secret(bytes(range(64)))
    store = SqliteStore(tmp_path / "a.db", vault)
    epoch = store.epoch()
    assert store.epoch() == epoch
    assert SqliteStore(tmp_path / "a.db", vault).epoch() == epoch  # another process, same file
    assert SqliteStore(tmp_path / "b.db", vault).epoch() != epoch
    service = PairingService(store, clock=lambda: T0)
    service.start()
    store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=T0)
    assert service.poll() == 1 and service.resyncs == 0
    with store._lock, store._conn:  # the file restored from another history
        store._conn.execute("UPDATE meta SET value = 'restored' WHERE key = 'epoch'")
    assert service.poll() == 1 and service.resyncs == 1
    assert service.lookup(ALICE, V1) is not None
