"""Pairing stores: the contract (`base`), its backends (`sqlite`, `redis`) and `open_store`,
the one place that knows every backend by name."""

from __future__ import annotations

import os

from redis import RedisError

from ..crypto import NumberVault
from .base import (
    AdminStore,
    ApiStore,
    DialogStore,
    PairingStore,
    PoolStore,
    SessionAdminStore,
    StoreError,
)
from .redis import DEFAULT_PREFIX, RedisStore
from .sqlite import SqliteStore

__all__ = [
    "BACKENDS",
    "AdminStore",
    "ApiStore",
    "DialogStore",
    "PairingStore",
    "PoolStore",
    "RedisStore",
    "SessionAdminStore",
    "SqliteStore",
    "StoreError",
    "open_store",
]

BACKENDS = ("sqlite", "redis")


def open_store(
    backend: str,
    vault: NumberVault,
    *,
    path: str | os.PathLike[str] = "sipmask.db",
    redis_url: str | None = None,
    redis_prefix: str = DEFAULT_PREFIX,
    rotating: bool = False,
) -> PairingStore:
    """A store of `backend` ("sqlite": the file at `path`; "redis": `redis_url`).

    Raises `StoreError` when the backend cannot be reached or was written with another key.
    `rotating` lets a Redis store open in the middle of an unfinished key rotation (only the
    rotation command uses it).
    """
    if backend == "sqlite":
        return SqliteStore(path, vault)
    if backend == "redis":
        if not redis_url:
            raise StoreError('store.redis_url is required with backend "redis"')
        try:
            return RedisStore.from_url(redis_url, vault, prefix=redis_prefix, rotating=rotating)
        except RedisError as exc:
            # redis-py's messages name host and port, never the password of the URL.
            raise StoreError(f"cannot use the Redis store: {exc}") from None
    raise StoreError(f"unknown store backend {backend!r}; expected one of {', '.join(BACKENDS)}")
