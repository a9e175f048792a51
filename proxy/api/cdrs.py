"""``GET /v1/cdrs/export``: call records of a time range as CSV or JSON lines, streamed.

The response is chunked: one store page (keyset cursor, `PairingStore.export_cdrs`) is read
through the store worker, written, and dropped before the next is read, so the server's
memory stays that of one page for a range of millions of rows. Parameters are checked before
the first byte goes out (problem+json naming the parameter, never echoing its value); a
store failure after that ends the connection without the closing chunk, which an HTTP client
reports as a truncated body rather than a complete export. CDRs hold tokens, never numbers,
so the read-only role may export them.
"""

from __future__ import annotations

import math
import re
from typing import Final

from aiohttp import web

from ..pairing.cdr_export import FORMATS, MEDIA_TYPES, PAGE_SIZE, export_header, export_page
from ..pairing.model import Cdr, PairingError
from ..pairing.records import Page
from .auth import requires
from .codec import parse_time
from .context import CTX
from .problems import ApiProblem

__all__ = ["routes"]

_PARAMS: Final = ("from", "to", "session", "format")
_EPOCH: Final = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?")
_SESSION: Final = re.compile(r"ps_[0-9a-f]{16}")


def _time(request: web.Request, name: str) -> float:
    value = request.query.get(name)
    if value is None:
        raise ApiProblem(422, "required: an RFC 3339 date-time or epoch seconds", field=name)
    if _EPOCH.fullmatch(value):
        return float(value)
    if len(value) > 40 or value[:1] == "-":
        raise ApiProblem(422, "expected an RFC 3339 date-time or epoch seconds", field=name)
    return parse_time(value, name)


def _query(request: web.Request) -> tuple[float, float, str | None, str]:
    for name in request.query:
        if name not in _PARAMS:
            raise ApiProblem(422, f"unknown query parameter; expected {', '.join(_PARAMS)}",
                             field=name[:80])
    start, end = _time(request, "from"), _time(request, "to")
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ApiProblem(422, "to must be later than from", field="to")
    session = request.query.get("session")
    if session is not None and not _SESSION.fullmatch(session):
        raise ApiProblem(422, "expected a session id (ps_ and 16 hex digits)", field="session")
    fmt = request.query.get("format", "csv")
    if fmt not in FORMATS:
        raise ApiProblem(422, f"expected one of {', '.join(FORMATS)}", field="format")
    return start, end, session, fmt


@requires("read-only")
async def export_cdrs(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    start, end, session, fmt = _query(request)

    async def page(cursor: str | None) -> Page[Cdr]:
        try:
            return await ctx.run(ctx.store.export_cdrs, start, end, session_id=session,
                                 limit=PAGE_SIZE, cursor=cursor)
        except PairingError as exc:
            raise ApiProblem(422, str(exc)) from None

    first = await page(None)  # a store that fails now still gets a problem+json answer
    response = web.StreamResponse(headers={
        "Content-Type": f"{MEDIA_TYPES[fmt]}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="cdrs.{fmt}"',
        "Cache-Control": "no-store",
    })
    response.enable_chunked_encoding()
    await response.prepare(request)

    try:
        await response.write(export_header(fmt).encode())
        current = first
        while True:
            if current.items:
                await response.write(export_page(current.items, fmt).encode())
            if current.next_cursor is None:
                break
            current = await page(current.next_cursor)
    except ConnectionResetError:
        return response  # the client went away: nothing left to tell it
    except Exception:
        # The status line is out, so no problem+json can follow: cut the connection before
        # the closing chunk, so the client sees a truncated body, never a short "complete"
        # export. The problem middleware logs the error (api.failed).
        if request.transport is not None:
            request.transport.abort()
        raise
    await response.write_eof()
    return response


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/cdrs/export", export_cdrs, allow_head=False)]
