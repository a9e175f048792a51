"""What the API handlers share: the admin operations, the store, metrics, readiness."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from ..observability.metrics import Metrics
from ..pairing.admin import PairingAdmin
from ..pairing.model import Session
from ..pairing.stores import ApiStore
from .limits import Limits

__all__ = ["ApiContext", "CTX"]

T = TypeVar("T")


async def _inline(fn: Callable[[], T]) -> T:
    return fn()


@dataclass
class ApiContext:
    """Passed to `build_app`; handlers reach it as ``request.app[CTX]``.

    `checks` are the readiness probes (name -> callable raising or returning False when not
    ready); `collectors` run on the loop before each ``/metrics`` rendering to refresh gauges
    from memory, `store_collectors` through `call` (they read the store). A probe or a store
    collector that has not answered within `probe_timeout_s` counts as failing, so /readyz and
    /metrics answer at once with the truth while the store is down or frozen.

    `call` runs a blocking store operation and awaits its result: inline by default; the
    running proxy passes its store worker thread, so a slow store never stalls SIP. Handlers
    then report session changes with `changed`, on the loop, which updates the proxy's
    routing cache at once (it is not thread-safe, so never from the worker).
    """

    admin: PairingAdmin
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    checks: dict[str, Callable[[], object]] = field(default_factory=dict)
    collectors: list[Callable[[], None]] = field(default_factory=list)
    store_collectors: list[Callable[[], None]] = field(default_factory=list)
    probe_timeout_s: float = 1.0
    limits: Limits = field(default_factory=Limits)
    call: Callable[[Callable[[], Any]], Awaitable[Any]] = _inline
    on_change: Callable[[Session], None] | None = None
    create_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` through `call`."""
        result: T = await self.call(functools.partial(fn, *args, **kwargs))
        return result

    def changed(self, session: Session) -> Session:
        """Tell the routing cache about a created, updated or closed session."""
        if self.on_change is not None:
            self.on_change(session)
        return session

    @property
    def store(self) -> ApiStore:
        return self.admin.store


CTX = web.AppKey("sipmask_api", ApiContext)
