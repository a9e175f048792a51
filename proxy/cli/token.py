"""``sipmask token create|list|revoke``: bearer tokens of the HTTP API (docs/api.md).

The secret is printed once, at creation; the store keeps only its SHA-256. A token may be
given an expiry (``--expires-in 30d`` or ``--expires-at 2027-01-01T00:00:00Z``); from then on
the API answers it 401 ``token-expired``. Every change is audited (actor ``cli:USER``).
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime
from typing import Any, Final

from ..pairing.admin import PairingAdmin
from ..pairing.records import ROLES
from .common import actor, when, with_admin

__all__ = [
    "add_subcommands", "cmd_token_create", "cmd_token_list", "cmd_token_revoke", "duration",
    "instant",
]

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION: Final = re.compile(r"([0-9]{1,9})([smhdw]?)")


def duration(text: str) -> float:
    """``--expires-in``: seconds from a count and a unit (``30d``, ``12h``, ``90m``, ``45s``,
    ``2w``; a bare count is seconds)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            "expected a positive count with an optional unit s, m, h, d or w (e.g. 30d)")
    return float(int(match.group(1)) * _UNITS[match.group(2) or "s"])


def instant(text: str) -> float:
    """``--expires-at``: an RFC 3339 date-time with an offset, as epoch seconds."""
    try:
        when_ = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected an RFC 3339 date-time such as 2027-01-01T00:00:00Z") from None
    if when_.tzinfo is None:
        raise argparse.ArgumentTypeError("the date-time needs an offset such as Z or +02:00")
    return when_.timestamp()


def add_subcommands(subparsers: Any) -> None:
    """Add ``token create|list|revoke`` to an argparse sub-parsers object."""
    token = subparsers.add_parser("token", help="API bearer tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = tsub.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name", help="a name for the token (who or what uses it)")
    create.add_argument("--role", choices=ROLES, required=True,
                        help="what the token may do (docs/api.md, Authentication and roles)")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=duration, metavar="DURATION",
                        help="the token stops working this long from now: 30d, 12h, 90m, 2w")
    expiry.add_argument("--expires-at", type=instant, metavar="TIME",
                        help="the token stops working at this RFC 3339 time "
                             "(2027-01-01T00:00:00Z); default: never (until revoked)")
    create.set_defaults(func=cmd_token_create)
    tsub.add_parser("list", help="list tokens (never secrets)").set_defaults(func=cmd_token_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id or name")
    revoke.add_argument("token", help="the token's id (tok_...) or name")
    revoke.set_defaults(func=cmd_token_revoke)


@with_admin
def cmd_token_create(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``token create NAME --role ROLE [--expires-in D | --expires-at T]``: a new token; its
    secret is printed this once."""
    expires_at = args.expires_at
    if args.expires_in is not None:
        expires_at = time.time() + args.expires_in
    token, secret = admin.create_token(actor(), args.name, args.role, expires_at)
    expiry = "" if token.expires_at is None else f" expires={when(token.expires_at)}"
    print(f"created {token.id} {token.name} role={token.role}{expiry}")
    print("secret (shown once, store it now):")
    print(secret)
    return 0


@with_admin
def cmd_token_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``token list``: every token, its expiry and whether it is revoked or expired (never a
    secret)."""
    tokens = admin.store.list_tokens()
    now = time.time()
    for token in tokens:
        if token.revoked_at is not None:
            state = f"revoked={when(token.revoked_at)}"
        elif token.expired(now):
            state = "expired"
        else:
            state = "active"
        expiry = "never" if token.expires_at is None else when(token.expires_at)
        print(f"{token.id}  {token.name}  role={token.role}  created={when(token.created_at)}"
              f"  expires={expiry}  {state}")
    if not tokens:
        print("no tokens")
    return 0


@with_admin
def cmd_token_revoke(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``token revoke ID|NAME``: the token stops working at the next request."""
    token = admin.revoke_token(actor(), args.token)
    print(f"revoked {token.id} {token.name}")
    return 0
