"""``sipmask token create|list|revoke``: bearer tokens of the HTTP API (docs/api.md).

The secret is printed once, at creation; the store keeps only its SHA-256. Every change is
audited (actor ``cli:USER``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..pairing.admin import PairingAdmin
from ..pairing.records import ROLES
from .common import actor, when, with_admin

__all__ = ["add_subcommands", "cmd_token_create", "cmd_token_list", "cmd_token_revoke"]


def add_subcommands(subparsers: Any) -> None:
    """Add ``token create|list|revoke`` to an argparse sub-parsers object."""
    token = subparsers.add_parser("token", help="API bearer tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = tsub.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name", help="a name for the token (who or what uses it)")
    create.add_argument("--role", choices=ROLES, required=True,
                        help="what the token may do (docs/api.md, Authentication and roles)")
    create.set_defaults(func=cmd_token_create)
    tsub.add_parser("list", help="list tokens (never secrets)").set_defaults(func=cmd_token_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id or name")
    revoke.add_argument("token", help="the token's id (tok_...) or name")
    revoke.set_defaults(func=cmd_token_revoke)


@with_admin
def cmd_token_create(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``token create NAME --role ROLE``: a new token; its secret is printed this once."""
    token, secret = admin.create_token(actor(), args.name, args.role)
    print(f"created {token.id} {token.name} role={token.role}")
    print("secret (shown once, store it now):")
    print(secret)
    return 0


@with_admin
def cmd_token_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``token list``: every token and whether it is revoked (never a secret)."""
    tokens = admin.store.list_tokens()
    for token in tokens:
        state = "active" if token.revoked_at is None else f"revoked={when(token.revoked_at)}"
        print(f"{token.id}  {token.name}  role={token.role}  created={when(token.created_at)}"
              f"  {state}")
    if not tokens:
        print("no tokens")
    return 0


@with_admin
def cmd_token_revoke(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``token revoke ID|NAME``: the token stops working at the next request."""
    token = admin.revoke_token(actor(), args.token)
    print(f"revoked {token.id} {token.name}")
    return 0
