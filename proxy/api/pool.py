"""``/v1/pool/numbers``: the virtual-number pool (admin to change, read-only to read)."""

from __future__ import annotations

from aiohttp import web

from ..pairing.records import POOL_STATUSES
from .auth import actor, requires
from .codec import read_json, reject_unknown, render_pool
from .context import CTX
from .problems import ApiProblem, field_name

__all__ = ["routes"]


@requires("admin")
async def add_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    reject_unknown(body, ("number",))
    if not isinstance(body.get("number"), str):
        raise ApiProblem(422, "required: the virtual number as a string", field="number")
    added = await ctx.run(ctx.admin.add_pool_number, actor(request), body["number"])
    return web.json_response(render_pool(added), status=201,
                             headers={"Location": f"/v1/pool/numbers/{added.number}"})


@requires("read-only")
async def list_numbers(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    for name in request.query:
        if name != "status":
            raise ApiProblem(422, "unknown query parameter", field=field_name(name, "query"))
    status = request.query.get("status")
    if status is not None and status not in POOL_STATUSES:
        raise ApiProblem(422, f"expected one of {', '.join(POOL_STATUSES)}", field="status")
    numbers = await ctx.run(ctx.store.list_pool_numbers, status)
    return web.json_response({"items": [render_pool(n) for n in numbers]})


@requires("read-only")
async def get_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    number = ctx.admin.number(request.match_info["number"], "number")
    return web.json_response(render_pool(await ctx.run(ctx.store.get_pool_number, number)))


@requires("admin")
async def drain_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    changed = await ctx.run(ctx.admin.set_pool_status, actor(request),
                            request.match_info["number"], "draining")
    return web.json_response(render_pool(changed))


@requires("admin")
async def activate_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    changed = await ctx.run(ctx.admin.set_pool_status, actor(request),
                            request.match_info["number"], "active")
    return web.json_response(render_pool(changed))


@requires("admin")
async def remove_number(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await ctx.run(ctx.admin.remove_pool_number, actor(request), request.match_info["number"])
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/pool/numbers", add_number),
        web.get("/v1/pool/numbers", list_numbers, allow_head=False),
        web.get("/v1/pool/numbers/{number}", get_number, allow_head=False),
        web.post("/v1/pool/numbers/{number}/drain", drain_number),
        web.post("/v1/pool/numbers/{number}/activate", activate_number),
        web.delete("/v1/pool/numbers/{number}", remove_number),
    ]
