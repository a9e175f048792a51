"""Operations endpoints: ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/openapi.json`` (public)
and ``/v1/audit`` (admin)."""

from __future__ import annotations


from aiohttp import web

from ..observability.metrics import CONTENT_TYPE
from .auth import requires
from .codec import parse_limit, render_audit
from .context import CTX
from .openapi import openapi_document
from .problems import ApiProblem

__all__ = ["routes"]


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: every check (store reachable, SIP listening) passes."""
    ctx = request.app[CTX]
    results: dict[str, str] = {}
    for name, check in ctx.checks.items():
        try:
            ok = await ctx.run(check)
        except Exception:  # noqa: BLE001 - a failing probe means "not ready"
            ok = False
        results[name] = "ok" if ok is not False else "failing"
    if any(state != "ok" for state in results.values()):
        failing = ", ".join(n for n, s in results.items() if s != "ok")
        raise ApiProblem(503, f"not ready: {failing}")
    return web.json_response({"status": "ready", "checks": results})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the process's metrics registry."""
    ctx = request.app[CTX]
    for collect in ctx.collectors:
        await ctx.run(collect)
    body = ctx.metrics.render()
    return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document (also checked in as docs/openapi.json)."""
    return web.json_response(openapi_document())


@requires("admin")
async def audit(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    for name in request.query:
        if name not in ("limit", "before", "target", "actor"):
            raise ApiProblem(422, "unknown query parameter", field=name[:80])
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


