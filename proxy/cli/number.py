"""``sipmask token-of NUMBER``: the token sipmask writes for a number, for support.

Logs, CDRs and the audit log never hold a real number, only its keyed token (docs/operations.md,
Tokens). To answer "why was this caller rejected?", print the number's token and grep for it::

    $ sipmask token-of "+1 555-123-0001"
    #n_b3db0ebc06ef
    $ grep -F "$(sipmask token-of +15551230001)" /var/log/sipmask.log

Log lines carry it as printed (``#n_...``: a rejected call's ``caller``, any number the log
redacted); CDRs and audit entries carry it without the ``#`` (``n_...``), so ``grep -F n_...``
finds both. Computing a token needs the key (it is an HMAC under it), which is what limits the
command to whoever may read the key file: the operator of the host.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..pairing.crypto import VaultError
from ..pairing.normalize import InvalidNumber, normalize_number
from .common import add_region_option, configured_vault, fail

__all__ = ["add_subcommands", "cmd_token_of"]


def add_subcommands(subparsers: Any) -> None:
    """Add ``token-of NUMBER`` to an argparse sub-parsers object."""
    parser = subparsers.add_parser(
        "token-of", help="print the token logs and CDRs show for a number (#n_...)",
        description="Print the keyed token that log lines show for NUMBER (#n_...); CDRs and "
                    "the audit log show it without the '#'. Needs the key file.")
    parser.add_argument("number", metavar="NUMBER",
                        help="a phone number in any form (+15551230001, tel:..., national)")
    parser.add_argument("--call-id", action="store_true",
                        help="NUMBER is a SIP Call-ID: print the token of the Call-ID instead")
    add_region_option(parser)
    parser.set_defaults(func=cmd_token_of)


def cmd_token_of(args: argparse.Namespace) -> int:
    """``token-of NUMBER [--call-id] [--region R]``: print ``#`` + the number's token."""
    try:
        vault = configured_vault(args)
    except VaultError as exc:
        return fail(exc)
    if args.call_id:
        print("#" + vault.token(args.number))
        return 0
    try:
        number = normalize_number(args.number, args.region)
    except InvalidNumber as exc:
        return fail(f"NUMBER: {exc}")  # never echo the digits
    print("#" + vault.token(number))
    return 0
