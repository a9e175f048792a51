"""What the API handlers share: the admin operations, the store, metrics, readiness."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from ..observability.metrics import Metrics
from ..pairing.admin import PairingAdmin
from ..pairing.store import ApiStore

__all__ = ["ApiContext", "CTX"]


@dataclass
class ApiContext:
    """Passed to `build_app`; handlers reach it as ``request.app[CTX]``.

    `checks` are the readiness probes (name -> callable raising or returning False when not
    ready); `collectors` run before each ``/metrics`` rendering to refresh gauges.
    """

    admin: PairingAdmin
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    checks: dict[str, Callable[[], object]] = field(default_factory=dict)
    collectors: list[Callable[[], None]] = field(default_factory=list)

    @property
    def store(self) -> ApiStore:
        return self.admin.store


CTX = web.AppKey("sipmask_api", ApiContext)
