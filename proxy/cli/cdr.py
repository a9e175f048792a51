"""``sipmask cdr list`` and ``sipmask cdr export``: call detail records (numbers appear as
tokens only).

``cdr export`` writes the CDRs that ended in [--from, --to) as CSV or JSON lines, the same
bytes as ``GET /v1/cdrs/export``, one store page at a time, so memory stays that of one page
whatever the range holds. With ``--output`` the file appears complete or not at all: the
export goes to a temporary file beside it, renamed when the last row is written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from ..pairing.cdr_export import FORMATS, export_header, export_page, iter_pages
from ..pairing.stores import PairingStore
from .common import add_limit_option, describe_cdr, fail, with_store

__all__ = ["add_subcommands", "cmd_cdr_export", "cmd_cdr_list", "export_time"]

_EPOCH = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,9})?")


def export_time(text: str) -> float:
    """An RFC 3339 date-time with an offset, or epoch seconds (argparse type)."""
    if _EPOCH.fullmatch(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected an RFC 3339 date-time (2026-12-01T00:00:00Z) or epoch seconds") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("the date-time needs an offset such as Z or +02:00")
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise argparse.ArgumentTypeError("date-time out of range") from None


def add_subcommands(subparsers: Any) -> None:
    """Add ``cdr list`` and ``cdr export`` to an argparse sub-parsers object."""
    cdr = subparsers.add_parser("cdr", help="call detail records")
    cdr_sub = cdr.add_subparsers(dest="cdr_command", metavar="COMMAND", required=True)
    cdr_list = cdr_sub.add_parser("list", help="list CDRs, newest first")
    cdr_list.add_argument("--session", metavar="ID", help="only CDRs of this pairing")
    add_limit_option(cdr_list, "CDRs")
    cdr_list.set_defaults(func=cmd_cdr_list)
    export = cdr_sub.add_parser(
        "export", help="write the CDRs that ended in a time range as CSV or JSON lines")
    export.add_argument("--from", dest="start", metavar="TIME", required=True, type=export_time,
                        help="ended at or after (RFC 3339 or epoch seconds)")
    export.add_argument("--to", dest="end", metavar="TIME", required=True, type=export_time,
                        help="ended before (RFC 3339 or epoch seconds)")
    export.add_argument("--session", metavar="ID", help="only CDRs of this pairing")
    export.add_argument("--format", choices=FORMATS, default="csv",
                        help="csv (RFC 4180, header line; default) or jsonl")
    export.add_argument("--output", metavar="FILE", help="write to FILE (default: stdout)")
    export.set_defaults(func=cmd_cdr_export)


@with_store
def cmd_cdr_list(args: argparse.Namespace, store: PairingStore) -> int:
    """``cdr list``: print CDRs, newest first (numbers appear as tokens only)."""
    cdrs = store.list_cdrs(session_id=args.session, limit=args.limit)
    for cdr in cdrs:
        print(describe_cdr(cdr))
    if not cdrs:
        print("no CDRs")
    return 0


def _export(args: argparse.Namespace, store: PairingStore, out: IO[str]) -> int:
    out.write(export_header(args.format))
    rows = 0
    for page in iter_pages(store, args.start, args.end, session_id=args.session):
        out.write(export_page(page, args.format))
        rows += len(page)
    return rows


@with_store
def cmd_cdr_export(args: argparse.Namespace, store: PairingStore) -> int:
    """``cdr export``: the CDRs that ended in [--from, --to), oldest first, as CSV or JSON
    lines, to stdout or --output (numbers appear as tokens only)."""
    if args.end <= args.start:
        return fail("--to must be later than --from")
    if args.output is None:
        _export(args, store, sys.stdout)
        sys.stdout.flush()
        return 0
    target = Path(args.output)
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            rows = _export(args, store, out)
        os.replace(partial, target)
    except BaseException:
        os.unlink(partial)
        raise
    print(f"exported {rows} CDRs to {target}", file=sys.stderr)
    return 0
