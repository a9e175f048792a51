"""Operations endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/openapi.json`` (public)
and ``/v1/audit`` (admin)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..observability.metrics import Gauge, Metrics
from .auth import requires
from .codec import parse_limit, render_audit
from .context import CTX
from .openapi import openapi_document
from .problems import ApiProblem, field_name

__all__ = ["STORE_UP", "routes"]

#: the gauge that tells whether the store answered the last /metrics collection
STORE_UP = "sipmask_store_up"


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: every check (store reachable, SIP listening) passes, each within the probe
    timeout (a frozen store is "timeout", answered at once, not a hanging probe)."""
    ctx = request.app[CTX]
    results: dict[str, str] = {}
    for name, check in ctx.checks.items():
        try:
            ok = await asyncio.wait_for(ctx.run(check), ctx.probe_timeout_s)
        except TimeoutError:
            results[name] = "timeout"
            continue
        except Exception:  # noqa: BLE001 - a failing probe means "not ready"
            ok = False
        results[name] = "ok" if ok is not False else "failing"
    if any(state != "ok" for state in results.values()):
        failing = ", ".join(n for n, s in results.items() if s != "ok")
        raise ApiProblem(503, f"not ready: {failing}")
    return web.json_response({"status": "ready", "checks": results})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the process's metrics registry.

    Always 200 while the process lives: the in-memory figures are fresh; when the store does
    not answer in time, its gauges keep their last values and ``sipmask_store_up`` says 0."""
    ctx = request.app[CTX]
    for collect in ctx.collectors:
        collect()
    if ctx.store_collectors:
        up = 1
        for collect in ctx.store_collectors:
            try:
                await asyncio.wait_for(ctx.run(collect), ctx.probe_timeout_s)
            except Exception:  # noqa: BLE001 - TimeoutError or the store's error: "down"
                up = 0
        _store_up(ctx.metrics).set(up)
    # prometheus_client writes the body: OpenMetrics if the scraper asks for it, else text 0.0.4
    body, content_type = ctx.metrics.exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


def _store_up(metrics: Metrics) -> Gauge:
    gauge = metrics.get(STORE_UP)
    if not isinstance(gauge, Gauge):
        gauge = metrics.gauge(STORE_UP, "1 when the store answered the last /metrics collection "
                              "within the probe timeout, else 0.")
    return gauge


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document (also checked in as docs/openapi.json)."""
    return web.json_response(openapi_document())


@requires("admin")
async def audit(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    for name in request.query:
        if name not in ("limit", "before", "target", "actor"):
            raise ApiProblem(422, "unknown query parameter", field=field_name(name, "query"))
    before_text = request.query.get("before")
    if before_text is not None and (not before_text.isdigit() or len(before_text) > 18):
        raise ApiProblem(422, "expected an audit entry id", field="before")
    entries = await ctx.run(
        ctx.store.list_audit,
        limit=parse_limit(request),
        before=None if before_text is None else int(before_text),
        target=request.query.get("target"),
        actor=request.query.get("actor"),
    )
    items = [render_audit(e) for e in entries]
    return web.json_response({"items": items,
                              "next_before": items[-1]["id"] if items else None})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/healthz", healthz, allow_head=False),
        web.get("/readyz", readyz, allow_head=False),
        web.get("/metrics", metrics, allow_head=False),
        web.get("/v1/openapi.json", openapi, allow_head=False),
        web.get("/v1/audit", audit, allow_head=False),
    ]


