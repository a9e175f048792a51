"""Call records export: a store's CDRs for a time range as CSV or JSON lines, streamed.

`iter_cdrs` walks `PairingStore.export_cdrs` page by page (keyset cursors), so memory stays
that of one page however many rows the range holds; `export_chunks` turns them into the text
of one format, a chunk per page. The API (``GET /v1/cdrs/export``) and the CLI
(``sipmask cdr export``) write the same bytes.

Columns are the `Cdr` fields in their order. CDRs hold keyed tokens, never numbers, so
neither format can carry one. Times are RFC 3339 UTC with milliseconds, as everywhere in the
API; an absent time is an empty CSV field or JSON null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from .model import Cdr
from .stores.base import PairingStore

__all__ = ["CDR_FIELDS", "FORMATS", "MEDIA_TYPES", "PAGE_SIZE", "export_chunks", "export_header",
           "export_page", "iter_cdrs", "iter_pages"]

CDR_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Cdr))
FORMATS: Final[tuple[str, ...]] = ("csv", "jsonl")
MEDIA_TYPES: Final = {"csv": "text/csv", "jsonl": "application/jsonl"}
PAGE_SIZE: Final = 1000
_TIMES: Final = frozenset({"started_at", "answered_at", "ended_at"})


def iter_pages(
    store: PairingStore, start: float, end: float, *, session_id: str | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[list[Cdr]]:
    """The CDRs that ended in [`start`, `end`), in ended_at order, one store page at a time."""
    cursor: str | None = None
    while True:
        page = store.export_cdrs(start, end, session_id=session_id, limit=page_size,
                                 cursor=cursor)
        if page.items:
            yield page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def iter_cdrs(
    store: PairingStore, start: float, end: float, *, session_id: str | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[Cdr]:
    """`iter_pages`, one CDR at a time."""
    for page in iter_pages(store, start, end, session_id=session_id, page_size=page_size):
        yield from page


@lru_cache(maxsize=4096)
def _second(whole: int) -> str:
    return datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _time(ts: float | None) -> str | None:
    """`ts` as ``datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")`` writes
    it (microseconds rounded half-even, then truncated to milliseconds), with Z. The text of
    the whole second is cached: an export's times come in runs of the same few seconds, and
    formatting a datetime was a third of an export's CPU (docs/benchmarks.md)."""
    if ts is None:
        return None
    whole = math.floor(ts)
    micros = round((ts - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return f"{_second(whole)}.{micros // 1000:03d}Z"


def _values(cdr: Cdr) -> list[Any]:
    return [_time(getattr(cdr, name)) if name in _TIMES else getattr(cdr, name)
            for name in CDR_FIELDS]


def _csv(rows: Iterable[Iterable[Any]]) -> str:
    """RFC 4180 rows (CRLF line ends, quoting where needed) through the csv module."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def export_header(fmt: str) -> str:
    """What comes before the first CDR: the CSV header line; nothing for JSON lines."""
    _check(fmt)
    return _csv([CDR_FIELDS]) if fmt == "csv" else ""


def export_page(cdrs: Iterable[Cdr], fmt: str) -> str:
    """The text of `cdrs` in `fmt`: one CSV row, or one JSON object, a line each."""
    _check(fmt)
    if fmt == "csv":
        return _csv(["" if v is None else v for v in _values(c)] for c in cdrs)
    return "".join(json.dumps(dict(zip(CDR_FIELDS, _values(c), strict=True)),
                              separators=(",", ":")) + "\n" for c in cdrs)


def export_chunks(pages: Iterable[Sequence[Cdr]], fmt: str) -> Iterator[str]:
    """The whole export of `pages` in `fmt` ("csv" or "jsonl"): `export_header`, then
    `export_page` of each page. `ValueError` for another format."""
    yield export_header(fmt)
    for page in pages:
        yield export_page(page, fmt)
