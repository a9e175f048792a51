"""The HTTP API on a Redis store: the session, pool, idempotency and audit tests of test_api.py,
collected again here with an `api` fixture whose store is a real redis-server, and
`start_api` accepting a RedisStore."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog

from proxy.api import start_api
from proxy.config import ApiConfig
from proxy.pairing import NumberVault, PairingService
from proxy.pairing.stores.redis import RedisStore

from .api_harness import Api, running_api
from .test_api import (  # noqa: F401  (collected here, on the Redis `api` below)
    test_closed_session_frees_the_number_for_the_participant,
    test_create_allocates_from_the_pool_and_get_returns_it,
    test_every_change_is_audited_without_real_numbers,
    test_idempotency_key,
    test_interactions_are_the_session_cdrs_with_tokens_only,
    test_list_filters_and_cursor_pagination,
    test_pool_add_list_drain_activate_remove,
    test_pool_exhausted_is_409_naming_the_participant_not_the_number,
    test_revoked_token_stops_working_at_once,
    test_session_changes_reach_the_routing_cache,
    test_update_and_close,
)


@pytest.fixture
def api(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> Iterator[Api]:
    with running_api(tmp_path, redis_url=redis_url) as handle:
        assert isinstance(handle.store, RedisStore)
        yield handle


def test_start_api_serves_a_redis_store(redis_client: redis.Redis, redis_url: str) -> None:
    async def scenario() -> None:
        vault = NumberVault.from_secret(bytes(range(64)))
        store = RedisStore.from_url(redis_url, vault)

        async def inline(fn):  # type: ignore[no-untyped-def]
            return fn()

        server = await start_api(ApiConfig(host="127.0.0.1", port=0), store=store, vault=vault,
                                 service=PairingService(store), call=inline,
                                 sip_ready=lambda: True, log=structlog.get_logger())
        assert server is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = await reader.read()
        writer.close()
        assert b" 200 " in reply.split(b"\r\n")[0]
        await server.stop()
        store.close()

    asyncio.run(scenario())
