"""The app picks its store from the config: two sipmask apps on one redis-server route each
other's pairings, and the periodic purge runs with `store.retention_days`."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from proxy.app import App, start
from proxy.config import load_config
from proxy.pairing import NumberVault, Participant
from proxy.pairing.stores.redis import RedisStore

ALICE, BOB = "+15551230001", "+15551230002"
V1, V2 = "+15559990001", "+15559990002"


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    """`start` tunes the process's garbage collector for serving; undo it for other tests."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, name: str, store: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[sip]\nlisten = ["udp:127.0.0.1:{free_udp_port()}"]\n[log]\nlevel = "warning"\nformat = "json"\n'
        f'[api]\nenabled = false\n'
        f'[store]\nkey_file = "{tmp_path / "shared.key"}"\npoll_interval_s = 0.05\n{store}'
    )
    return path


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_two_workers_share_a_redis_table(tmp_path: Path, redis_client: redis.Redis,
                                         redis_url: str) -> None:
    store_cfg = f'backend = "redis"\nredis_url = "{redis_url}"\nredis_prefix = "t:"\n'

    async def scenario() -> None:
        one: App = await start(load_config(write_config(tmp_path, "one", store_cfg), env={}))
        two: App = await start(load_config(write_config(tmp_path, "two", store_cfg), env={}))
        try:
            session = one.service.create(Participant(ALICE, V1), Participant(BOB, V2))
            await wait_for(lambda: two.service.lookup(ALICE, V1) is not None)
            assert two.service.lookup(BOB, V2).callee == ALICE  # type: ignore[union-attr]
            two.service.close(session.id)
            await wait_for(lambda: one.service.lookup(ALICE, V1) is None)
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())
    assert redis_client.keys("t:s:*") and not redis_client.keys("sipmask:*")


def test_periodic_purge_uses_retention_days(tmp_path: Path, redis_client: redis.Redis,
                                            redis_url: str) -> None:
    vault = NumberVault.from_key_file(tmp_path / "shared.key")
    seed = RedisStore.from_url(redis_url, vault)
    old = seed.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=1_000.0)
    seed.close_session(old.id, 2_000.0)
    recent = seed.create_session(Participant(ALICE, V1), Participant(BOB, V2),
                                 now=time.time() - 3600)
    seed.close_session(recent.id, time.time() - 3600)
    store_cfg = (f'backend = "redis"\nredis_url = "{redis_url}"\nretention_days = 1\n'
                 f'purge_interval_s = 0.05\n')

    async def scenario() -> None:
        app = await start(load_config(write_config(tmp_path, "p", store_cfg), env={}))
        try:
            await wait_for(lambda: [s.id for s in seed.list_sessions()] == [recent.id])
        finally:
            await app.close()

    asyncio.run(scenario())
    seed.close()


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = write_config(tmp_path, "d", f'path = "{tmp_path / "d.db"}"\n')
        app = await start(load_config(cfg, env={}))
        try:
            app.service.create(Participant(ALICE, V1), Participant(BOB, V2))
        finally:
            await app.close()

    asyncio.run(scenario())
    assert (tmp_path / "d.db").exists()
