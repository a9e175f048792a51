"""``sipmask pairing add|list|remove``: pairings with virtual numbers given by hand (no pool).

``session ...`` (proxy/cli/session.py) does the same with numbers from the pool, audited, as
the API does. A running proxy picks a change up on its next poll.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..pairing.model import STATUSES, PairingError, Participant
from ..pairing.normalize import normalize_number
from ..pairing.stores import PairingStore
from .common import (
    add_limit_option,
    add_reveal_option,
    add_session_options,
    configured_vault,
    describe_session,
    with_store,
)

__all__ = ["add_subcommands", "cmd_pairing_add", "cmd_pairing_list", "cmd_pairing_remove"]


def add_subcommands(subparsers: Any) -> None:
    """Add ``pairing add|list|remove`` to an argparse sub-parsers object."""
    pairing = subparsers.add_parser("pairing", help="manage pairings (sessions)")
    pairing_sub = pairing.add_subparsers(dest="pairing_command", metavar="COMMAND", required=True)

    add = pairing_sub.add_parser("add", help="pair two participants")
    add.add_argument("--a", required=True, metavar="NUMBER", help="participant A's real number")
    add.add_argument("--a-virtual", required=True, metavar="NUMBER",
                     help="the virtual number A dials to reach B (and sees when B calls)")
    add.add_argument("--b", required=True, metavar="NUMBER", help="participant B's real number")
    add.add_argument("--b-virtual", required=True, metavar="NUMBER",
                     help="the virtual number B dials to reach A (and sees when A calls)")
    add_session_options(add, "pairing")
    add.set_defaults(func=cmd_pairing_add)

    listing = pairing_sub.add_parser("list", help="list pairings")
    listing.add_argument("--status", choices=STATUSES, help="only pairings in this state")
    add_limit_option(listing, "pairings")
    add_reveal_option(listing)
    listing.set_defaults(func=cmd_pairing_list)

    remove = pairing_sub.add_parser("remove", help="close a pairing")
    remove.add_argument("id", help="pairing id (ps_...)")
    remove.set_defaults(func=cmd_pairing_remove)


@with_store
def cmd_pairing_add(args: argparse.Namespace, store: PairingStore) -> int:
    """``pairing add``: normalise the four numbers and create an open pairing."""
    numbers = {}
    for option in ("a", "a_virtual", "b", "b_virtual"):
        try:
            numbers[option] = normalize_number(getattr(args, option), args.region)
        except PairingError as exc:
            # Name the option, never echo the number.
            flag = "--" + option.replace("_", "-")
            raise type(exc)(f"{flag}: {exc}") from None
    a = Participant(numbers["a"], numbers["a_virtual"])
    b = Participant(numbers["b"], numbers["b_virtual"])
    now = time.time()
    session = store.create_session(
        a, b,
        expires_at=None if args.expires_in is None else now + args.expires_in,
        ttl_s=args.ttl,
        metadata=dict(args.meta),
        mode=args.mode,
        now=now,
    )
    print(f"created {session.id}")
    print(describe_session(session, now, False, configured_vault(args)))
    return 0


@with_store
def cmd_pairing_list(args: argparse.Namespace, store: PairingStore) -> int:
    """``pairing list``: settle due expiries, then print pairings (numbers masked)."""
    now = time.time()
    store.expire_due(now)  # so that the list (and the proxy's next poll) agree on "expired"
    sessions = store.list_sessions(status=args.status, limit=args.limit)
    vault = configured_vault(args)
    for session in sessions:
        print(describe_session(session, now, args.reveal, vault))
    if not sessions:
        print("no pairings")
    return 0


@with_store
def cmd_pairing_remove(args: argparse.Namespace, store: PairingStore) -> int:
    """``pairing remove ID``: close the pairing (it stops routing at the proxy's next poll)."""
    before = store.get_session(args.id)
    if before.status != "open":
        print(f"{before.id} is already {before.status}")
        return 0
    store.close_session(args.id, time.time())
    print(f"closed {args.id}")
    return 0
