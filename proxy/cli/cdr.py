"""``sipmask cdr list``: call detail records, newest first (numbers appear as tokens only)."""

from __future__ import annotations

import argparse
from typing import Any

from ..pairing.stores import PairingStore
from .common import add_limit_option, describe_cdr, with_store

__all__ = ["add_subcommands", "cmd_cdr_list"]


def add_subcommands(subparsers: Any) -> None:
    """Add ``cdr list`` to an argparse sub-parsers object."""
    cdr = subparsers.add_parser("cdr", help="call detail records")
    cdr_sub = cdr.add_subparsers(dest="cdr_command", metavar="COMMAND", required=True)
    cdr_list = cdr_sub.add_parser("list", help="list CDRs, newest first")
    cdr_list.add_argument("--session", metavar="ID", help="only CDRs of this pairing")
    add_limit_option(cdr_list, "CDRs")
    cdr_list.set_defaults(func=cmd_cdr_list)


@with_store
def cmd_cdr_list(args: argparse.Namespace, store: PairingStore) -> int:
    """``cdr list``: print CDRs, newest first (numbers appear as tokens only)."""
    cdrs = store.list_cdrs(session_id=args.session, limit=args.limit)
    for cdr in cdrs:
        print(describe_cdr(cdr))
    if not cdrs:
        print("no CDRs")
    return 0
