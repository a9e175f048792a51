"""CDR export for `RedisStore` (``export_cdrs`` in ``stores.base``).

A page is one script (``cdr_export.lua``) over ``{p}cdr:ended``, the CDR ids scored by
ended_at: it finds the cursor's CDR by rank (O(log n)) and reads the next `limit` members, so
a page costs the same wherever it starts, and reads them with their JSON in the same atomic
step. Ties of ended_at come in member order, as Redis sorts them (the id's decimal text).
One session's CDRs come from ``{p}cdr:s:{session}`` instead, read whole (a session has few)
and sorted the same way.
"""

from __future__ import annotations

import json
from typing import Any, Final, cast

from ...model import Cdr
from ...records import Page
from ..base import check_export_range, decode_cdr_cursor, encode_cdr_cursor
from .scripts import lua

__all__ = ["RedisCdrExportMixin"]

_EXPORT: Final = lua("cdr_export")
_CURSOR_PREFIX: Final = "redis-cdr:"
_MAX_PAGE: Final = 5000
"""The script unpacks a page's ids into one HMGET: Lua's stack takes about 8000 values."""


class RedisCdrExportMixin:
    """`export_cdrs` for `RedisStore`."""

    # Provided by RedisStore.
    _r: Any
    _p: str

    def _init_cdr_export(self) -> None:
        self._export_script = self._r.register_script(_EXPORT)

    def export_cdrs(
        self, start: float, end: float, *, session_id: str | None = None, limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[Cdr]:
        """CDRs that ended in [`start`, `end`) in (ended_at, id) order, a page of at most
        `limit` (and of 5000) at a time (see ``PairingStore.export_cdrs``)."""
        check_export_range(start, end)
        limit = max(1, min(limit, _MAX_PAGE))
        after = None if cursor is None else decode_cdr_cursor(_CURSOR_PREFIX, cursor)
        if session_id is not None:
            return self._export_session(session_id, start, end, limit, after)
        after_id, after_at = ("", "") if after is None else (str(after[1]), repr(after[0]))
        reply = self._export_script(
            args=[self._p, repr(float(start)), repr(float(end)), after_id, after_at, limit])
        flat = cast(list[bytes], reply[1:])
        rows = [(int(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2) if flat[i + 1]]
        return self._page(rows, more=bool(int(reply[0])))

    def _export_session(
        self, session_id: str, start: float, end: float, limit: int,
        after: tuple[float, int] | None,
    ) -> Page[Cdr]:
        ids = cast(list[bytes], self._r.zrange(f"{self._p}cdr:s:{session_id}", 0, -1))
        found = cast(list[bytes | None], self._r.hmget(self._p + "cdr", ids)) if ids else []
        keyed: list[tuple[float, bytes, bytes]] = []
        for raw_id, raw in zip(ids, found, strict=True):
            if raw is None:
                continue
            ended_at = float(json.loads(raw)["ended_at"])
            if start <= ended_at < end:
                keyed.append((ended_at, raw_id, raw))
        keyed.sort()
        if after is not None:
            # the same order as the script's: ended_at, then the id's text
            mark = (after[0], str(after[1]).encode())
            keyed = [k for k in keyed if (k[0], k[1]) > mark]
        rows = [(int(raw_id), raw) for _, raw_id, raw in keyed[:limit + 1]]
        return self._page(rows[:limit], more=len(rows) > limit)

    @staticmethod
    def _page(rows: list[tuple[int, bytes]], *, more: bool) -> Page[Cdr]:
        items = [Cdr(**json.loads(raw)) for _, raw in rows]
        next_cursor = (encode_cdr_cursor(_CURSOR_PREFIX, items[-1].ended_at, rows[-1][0])
                       if more and items else None)
        return Page(items, next_cursor)
