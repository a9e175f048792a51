"""The aiohttp application and its server, run in the same event loop as the SIP side.

`build_app(ctx)` makes the application (routes, middlewares); `ApiServer` binds it to a
TCP socket and stops it. Middlewares, outermost first: request metrics, problem+json for
every error, bearer-token authentication.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web

from ..config import ApiConfig
from ..observability.metrics import Metrics
from ..pairing.admin import PairingAdmin
from ..pairing.crypto import NumberVault
from ..pairing.service import PairingService
from ..pairing.stores import ApiStore
from . import cdrs, ops, pool, sessions
from .auth import auth_middleware
from .context import CTX, ApiContext
from .limits import Limits
from .problems import problem_middleware

__all__ = ["ApiServer", "MAX_BODY_BYTES", "build_app", "route_table", "start_api"]

MAX_BODY_BYTES: Final = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_table() -> list[web.RouteDef]:
    """Every route of the API (the OpenAPI test checks each is documented)."""
    return [*sessions.routes(), *pool.routes(), *cdrs.routes(), *ops.routes()]


def _metrics_middleware(ctx: ApiContext) -> Any:
    requests = ctx.metrics.counter(
        "sipmask_api_requests_total", "HTTP API requests by route, method and status.",
        ["route", "method", "status"])
    latency = ctx.metrics.histogram(
        "sipmask_api_request_seconds", "HTTP API request handling time.",
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0), labelnames=["route"])

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        resource = request.match_info.route.resource
        # The route template, never the path itself: paths carry numbers and ids.
        route = resource.canonical if resource is not None else "unmatched"
        requests.labels(route, request.method, str(response.status)).inc()
        latency.labels(route).observe(time.perf_counter() - started)
        return response

    return middleware


def build_app(ctx: ApiContext, log: Any) -> web.Application:
    """The API application for `ctx`."""
    app = web.Application(
        middlewares=[_metrics_middleware(ctx), problem_middleware(log),
                     auth_middleware(ctx, log)],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CTX] = ctx
    app.add_routes(route_table())
    return app


class ApiServer:
    """The API listening on host:port (port 0 picks a free one: see `port`)."""

    def __init__(self, ctx: ApiContext, log: Any) -> None:
        self._app = build_app(ctx, log)
        self._runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and serve; return the address actually bound."""
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.host, self.port = (sockets[0].getsockname()[:2] if sockets else (host, port))
        return self.host, self.port

    async def stop(self) -> None:
        """Stop accepting and finish in-flight requests (briefly)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def start_api(
    config: ApiConfig,
    *,
    store: Any,
    vault: NumberVault,
    service: PairingService,
    call: Callable[[Callable[[], Any]], Awaitable[Any]],
    sip_ready: Callable[[], bool],
    log: Any,
    sip_stats: Callable[[], Mapping[str, Mapping[str, float]]] | None = None,
) -> ApiServer | None:
    """Serve the API for a running proxy, or return None when the store cannot back it.

    Store calls go through `call` (the proxy's store worker); session changes made through
    the API reach the routing cache at once. ``sip_stats`` returns the SIP side's figures by
    metric name (see ``SIP_METRICS``) and label value, refreshed at each ``/metrics`` read.
    Raises OSError when the port cannot be bound.
    """
    if not isinstance(store, ApiStore):
        log.error("api.unavailable", reason="the configured store backend does not implement "
                  "the administration interface (pool, tokens, audit)")
        return None
    admin = PairingAdmin(store, vault, region=config.default_region)
    metrics = Metrics()
    cached = metrics.gauge("sipmask_sessions_routable",
                           "Open sessions held in the routing cache.")
    pool_gauge = metrics.gauge("sipmask_pool_numbers", "Virtual numbers in the pool by status.",
                               ["status"])

    collect_sip = _sip_collector(metrics, sip_stats) if sip_stats is not None else None

    def collect_memory() -> None:
        if collect_sip is not None:
            collect_sip()
        cached.set(len(service.cache))

    def collect_store() -> None:
        counts = {"active": 0, "draining": 0}
        for number in store.list_pool_numbers():
            counts[number.status] += 1
        for status, count in counts.items():
            pool_gauge.labels(status).set(count)

    ctx = ApiContext(
        admin=admin, metrics=metrics, call=call, on_change=service.cache.apply,
        checks={"store": store.ping, "sip": sip_ready}, collectors=[collect_memory],
        store_collectors=[collect_store],
        limits=Limits(per_token_rate=config.rate_limit_per_token,
                      per_token_burst=max(1.0, 2 * config.rate_limit_per_token)),
    )
    server = ApiServer(ctx, log)
    host, port = await server.start(config.host, config.port)
    log.info("api.listening", host=host, port=port)
    return server


#: the SIP side's figures on ``/metrics``: name -> (kind, label name or None, help). Labels are
#: event, message and gate names, never numbers.
SIP_METRICS: dict[str, tuple[str, str | None, str]] = {
    "sipmask_cluster_dialogs_total": (
        "counter", "kind",
        "Established calls' records (cluster.persist_dialogs): written to the store, reloaded "
        "after a restart, claimed from a dead sibling, and failed writes (write_errors)."),
    "sipmask_calls_active": ("gauge", None, "Calls in progress."),
    "sipmask_sip_events_total": (
        "counter", "event",
        "B2BUA events: calls set up, refusals by reason (overload, no_pairing, untrusted, "
        "no_route), failovers, rejected messages."),
    "sipmask_overload_refusals_total": (
        "counter", "gate",
        "New calls refused with 503 + Retry-After, by admission gate (queue_delay: queued past "
        "calls.overload_queue_delay_ms; other: max_cps, retransmissions, busy)."),
    "sipmask_sip_messages_total": (
        "counter", "kind",
        "SIP transport: received, sent, parse_errors, bad_requests_answered, dropped, "
        "send_errors, keepalives."),
    "sipmask_sip_transactions": ("gauge", "kind", "Live SIP transactions by kind."),
    "sipmask_sip_request_retransmissions_total": (
        "counter", None,
        "Retransmitted requests absorbed by the transaction layer (peers whose T1 fired "
        "before sipmask answered)."),
    "sipmask_tcp_connections": ("gauge", None, "TCP and TLS connections open now."),
    "sipmask_tcp_connections_refused_total": (
        "counter", None,
        "Accepted TCP/TLS connections closed at once: sip.tcp_max_connections or "
        "sip.tcp_max_connections_per_source was reached."),
    "sipmask_tcp_message_timeouts_total": (
        "counter", None,
        "TCP/TLS connections closed because a message did not arrive complete within "
        "sip.tcp_message_timeout_s (slowloris)."),
    "sipmask_sip_source_limited_total": (
        "counter", "action",
        "New requests from a source over sip.source_rate: INVITEs answered 503 + Retry-After "
        "(invite_503), other requests dropped (dropped)."),
    "sipmask_store_resyncs_total": (
        "counter", None,
        "Routing cache reloaded whole because the store's history changed under it (a Redis "
        "that came back empty, a replaced database file)."),
    "sipmask_media_sessions": ("gauge", None, "Calls with a media session at an rtpengine."),
    "sipmask_media_ng_requests_total": (
        "counter", "command", "ng requests to rtpengine by command (retries not counted)."),
    "sipmask_media_ng_failures_total": (
        "counter", "kind",
        "ng failures: errors (rtpengine said error), timeouts (no answer to any retry), "
        "refused (ICMP unreachable), unavailable (no rtpengine left to try)."),
}


def _sip_collector(
    metrics: Metrics, sip_stats: Callable[[], Mapping[str, Mapping[str, float]]]
) -> Callable[[], None]:
    """Refresh the SIP metrics from ``sip_stats()``: gauges are set, counters advanced by what
    the running totals grew since the last read (so they only ever go up)."""
    made: dict[str, Any] = {}
    for name, (kind, label, help_text) in SIP_METRICS.items():
        labels = [label] if label else []
        made[name] = (metrics.gauge(name, help_text, labels) if kind == "gauge"
                      else metrics.counter(name, help_text, labels))
    seen: dict[tuple[str, str], float] = {}

    def collect() -> None:
        for name, values in sip_stats().items():
            metric = made.get(name)
            if metric is None:
                continue
            kind, label, _ = SIP_METRICS[name]
            for label_value, value in values.items():
                child = metric.labels(label_value) if label else metric
                if kind == "gauge":
                    child.set(value)
                    continue
                key = (name, label_value)
                grown = value - seen.get(key, 0.0)
                if grown > 0:
                    child.inc(grown)
                    seen[key] = value
    return collect
