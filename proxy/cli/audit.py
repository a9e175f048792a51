"""``sipmask audit list``: the audit log of administrative changes, newest first.

Entries never carry a real number (participants appear as keyed tokens).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..pairing.admin import PairingAdmin
from .common import add_limit_option, when, with_admin

__all__ = ["add_subcommands", "cmd_audit_list"]


def add_subcommands(subparsers: Any) -> None:
    """Add ``audit list`` to an argparse sub-parsers object."""
    audit = subparsers.add_parser("audit", help="the audit log of administrative changes")
    asub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    listing = asub.add_parser("list", help="entries, newest first")
    add_limit_option(listing, "entries")
    listing.add_argument("--target", help="only this session id, number or token id")
    listing.add_argument("--actor", help="only this actor (TOKEN_ID/NAME or cli:USER)")
    listing.set_defaults(func=cmd_audit_list)


@with_admin
def cmd_audit_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``audit list``: entries, newest first, optionally of one target or actor."""
    entries = admin.store.list_audit(limit=args.limit, target=args.target, actor=args.actor)
    for e in entries:
        details = " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))
        print(f"{e.id}  {when(e.at)}  {e.actor}  {e.action}  {e.target}  {details}".rstrip())
    if not entries:
        print("no audit entries")
    return 0
