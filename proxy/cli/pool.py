"""``sipmask pool add|list|drain|activate|remove``: the virtual-number pool, as the API has it.

Every change is audited (actor ``cli:USER``); ``session create`` allocates from the pool.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..pairing.admin import PairingAdmin
from ..pairing.records import POOL_STATUSES, PoolNumber
from .common import actor, add_region_option, when, with_admin

__all__ = [
    "add_subcommands", "cmd_pool_activate", "cmd_pool_add", "cmd_pool_drain", "cmd_pool_list",
    "cmd_pool_remove",
]


def add_subcommands(subparsers: Any) -> None:
    """Add ``pool add|list|drain|activate|remove`` to an argparse sub-parsers object."""
    pool = subparsers.add_parser("pool", help="the virtual-number pool")
    psub = pool.add_subparsers(dest="pool_command", metavar="COMMAND", required=True)
    add = psub.add_parser("add", help="add virtual numbers")
    add.add_argument("numbers", nargs="+", metavar="NUMBER", help="virtual numbers to add")
    add_region_option(add)
    add.set_defaults(func=cmd_pool_add)
    listing = psub.add_parser("list", help="list the pool with open-session counts")
    listing.add_argument("--status", choices=POOL_STATUSES, help="only numbers in this state")
    listing.set_defaults(func=cmd_pool_list)
    for name, func, text in (
        ("drain", cmd_pool_drain, "take no new sessions on a number"),
        ("activate", cmd_pool_activate, "undo drain"),
        ("remove", cmd_pool_remove, "remove a number no active session uses"),
    ):
        cmd = psub.add_parser(name, help=text)
        cmd.add_argument("number", help="the virtual number")
        add_region_option(cmd)
        cmd.set_defaults(func=func)


def _pool_line(number: PoolNumber) -> str:
    return (f"{number.number}  {number.status:<8}  open_sessions={number.open_sessions}  "
            f"added={when(number.added_at)}")


@with_admin
def cmd_pool_add(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``pool add NUMBER...``: add virtual numbers to the pool."""
    for raw in args.numbers:
        print("added " + _pool_line(admin.add_pool_number(actor(), raw)))
    return 0


@with_admin
def cmd_pool_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``pool list``: the pool's numbers with their open-session counts."""
    numbers = admin.store.list_pool_numbers(args.status)
    for number in numbers:
        print(_pool_line(number))
    if not numbers:
        print("the pool is empty")
    return 0


@with_admin
def cmd_pool_drain(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``pool drain NUMBER``: allocate no new sessions on the number."""
    print(_pool_line(admin.set_pool_status(actor(), args.number, "draining")))
    return 0


@with_admin
def cmd_pool_activate(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``pool activate NUMBER``: undo a drain."""
    print(_pool_line(admin.set_pool_status(actor(), args.number, "active")))
    return 0


@with_admin
def cmd_pool_remove(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``pool remove NUMBER``: remove a number no active session uses."""
    removed = admin.remove_pool_number(actor(), args.number)
    print(f"removed {removed.number}")
    return 0
