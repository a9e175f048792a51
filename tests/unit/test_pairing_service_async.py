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
