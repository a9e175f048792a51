"""Fixtures every unit test module may use: a private redis-server (``redis_url``, started on
first use) and a flushed client of it (``redis_client``), from tests/unit/redis_server.py."""

from __future__ import annotations

from .redis_server import redis_client, redis_url

__all__ = ["redis_client", "redis_url"]
