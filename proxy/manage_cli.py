"""Admin subcommands mirroring the HTTP API: ``session``, ``pool``, ``token``, ``audit``.

They work directly on the store file, like ``pairing ...`` (which stays as it was), through
the same `PairingAdmin` operations as the API, so every change is audited (actor
``cli:USER``). A running proxy picks session changes up on its next poll.

Real numbers are masked in output unless ``--reveal``; error messages never contain one.
Errors print one line to stderr and exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from .admin_cli import _describe, _describe_cdr, _meta_item, _open_store, _positive_seconds, _when
from .pairing.admin import PairingAdmin
from .pairing.crypto import NumberVault, load_vault
from .pairing.model import MODES, STATUSES, PairingError
from .pairing.records import KEEP, POOL_STATUSES, ROLES, SessionFilter
from .pairing.stores import ApiStore

__all__ = ["add_subcommands"]

Handler = Callable[[argparse.Namespace, PairingAdmin], int]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli:unknown"


def _guarded(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Open the configured store and an admin around `handler`; domain errors exit 1 with
    one line."""

    def run(args: argparse.Namespace) -> int:
        store = None
        try:
            store = _open_store(args)
            if not isinstance(store, ApiStore):
                raise PairingError(
                    f"the {getattr(args, 'backend', None) or 'sqlite'} store does not support "
                    "session, pool, token and audit commands yet")
            admin = PairingAdmin(store, store_vault(args), region=getattr(args, "region", "US"))
            return handler(args, admin)
        except (PairingError, sqlite3.Error, redis.RedisError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            if store is not None:
                store.close()

    run.__name__ = handler.__name__
    return run


def store_vault(args: argparse.Namespace) -> NumberVault:
    """The vault of the store `_open_store` opened (same key source, never creating one)."""
    return load_vault(args.key_file, create=False)


# -- session ------------------------------------------------------------------------------------

@_guarded
def cmd_session_create(args: argparse.Namespace, admin: PairingAdmin) -> int:
    now = time.time()
    session = admin.create_session(
        _actor(), args.a, args.b, virtual_a=args.a_virtual, virtual_b=args.b_virtual,
        expires_at=None if args.expires_in is None else now + args.expires_in,
        ttl_s=args.ttl, metadata=dict(args.meta), mode=args.mode,
    )
    print(f"created {session.id}")
    print(_describe(session, now, reveal=False))
    return 0


@_guarded
def cmd_session_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    participant = None if args.participant is None else admin.number(args.participant,
                                                                      "--participant")
    where = SessionFilter(status=args.status, participant=participant, metadata=tuple(args.meta))
    now = time.time()
    page = admin.store.find_sessions(where, now=now, limit=args.limit, cursor=args.cursor)
    for session in page.items:
        print(_describe(session, now, args.reveal))
    if not page.items:
        print("no sessions")
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")
    return 0


@_guarded
def cmd_session_get(args: argparse.Namespace, admin: PairingAdmin) -> int:
    now = time.time()
    print(_describe(admin.store.get_session(args.id), now, args.reveal))
    for cdr in admin.store.list_cdrs(session_id=args.id, limit=args.calls):
        print("  call " + _describe_cdr(cdr))
    return 0


@_guarded
def cmd_session_update(args: argparse.Namespace, admin: PairingAdmin) -> int:
    expires: Any = KEEP
    ttl: Any = KEEP
    if args.no_expiry:
        expires = None
    elif args.expires_in is not None:
        expires = time.time() + args.expires_in
    if args.no_ttl:
        ttl = None
    elif args.ttl is not None:
        ttl = args.ttl
    if expires is KEEP and ttl is KEEP:
        print("error: nothing to change (give --ttl, --no-ttl, --expires-in or --no-expiry)",
              file=sys.stderr)
        return 1
    session = admin.update_session(_actor(), args.id, expires_at=expires, ttl_s=ttl)
    print(_describe(session, time.time(), reveal=False))
    return 0


@_guarded
def cmd_session_close(args: argparse.Namespace, admin: PairingAdmin) -> int:
    before = admin.store.get_session(args.id)
    if before.status != "open":
        print(f"{before.id} is already {before.status}")
        return 0
    admin.close_session(_actor(), args.id)
    print(f"closed {args.id}")
    return 0


# -- pool ---------------------------------------------------------------------------------------

def _pool_line(number: Any) -> str:
    return (f"{number.number}  {number.status:<8}  open_sessions={number.open_sessions}  "
            f"added={_when(number.added_at)}")


@_guarded
def cmd_pool_add(args: argparse.Namespace, admin: PairingAdmin) -> int:
    for raw in args.numbers:
        print("added " + _pool_line(admin.add_pool_number(_actor(), raw)))
    return 0


@_guarded
def cmd_pool_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    numbers = admin.store.list_pool_numbers(args.status)
    for number in numbers:
        print(_pool_line(number))
    if not numbers:
        print("the pool is empty")
    return 0


@_guarded
def cmd_pool_drain(args: argparse.Namespace, admin: PairingAdmin) -> int:
    print(_pool_line(admin.set_pool_status(_actor(), args.number, "draining")))
    return 0


@_guarded
def cmd_pool_activate(args: argparse.Namespace, admin: PairingAdmin) -> int:
    print(_pool_line(admin.set_pool_status(_actor(), args.number, "active")))
    return 0


@_guarded
def cmd_pool_remove(args: argparse.Namespace, admin: PairingAdmin) -> int:
    removed = admin.remove_pool_number(_actor(), args.number)
    print(f"removed {removed.number}")
    return 0


# -- token --------------------------------------------------------------------------------------

@_guarded
def cmd_token_create(args: argparse.Namespace, admin: PairingAdmin) -> int:
    token, secret = admin.create_token(_actor(), args.name, args.role)
    print(f"created {token.id} {token.name} role={token.role}")
    print("secret (shown once, store it now):")
    print(secret)
    return 0


@_guarded
def cmd_token_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    tokens = admin.store.list_tokens()
    for token in tokens:
        state = "active" if token.revoked_at is None else f"revoked={_when(token.revoked_at)}"
        print(f"{token.id}  {token.name}  role={token.role}  created={_when(token.created_at)}"
              f"  {state}")
    if not tokens:
        print("no tokens")
    return 0


@_guarded
def cmd_token_revoke(args: argparse.Namespace, admin: PairingAdmin) -> int:
    token = admin.revoke_token(_actor(), args.token)
    print(f"revoked {token.id} {token.name}")
    return 0


# -- audit --------------------------------------------------------------------------------------

@_guarded
def cmd_audit_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    entries = admin.store.list_audit(limit=args.limit, target=args.target, actor=args.actor)
    for e in entries:
        details = " ".join(f"{k}={v}" for k, v in sorted(e.details.items()))
        print(f"{e.id}  {_when(e.at)}  {e.actor}  {e.action}  {e.target}  {details}".rstrip())
    if not entries:
        print("no audit entries")
    return 0


# -- parser -------------------------------------------------------------------------------------

def _session_parsers(sub: Any) -> None:
    session = sub.add_parser("session", help="sessions with pool allocation (like the API)")
    ssub = session.add_subparsers(dest="session_command", metavar="COMMAND", required=True)

    create = ssub.add_parser("create", help="pair two participants, virtual numbers from the pool")
    create.add_argument("--a", required=True, metavar="NUMBER", help="participant A's real number")
    create.add_argument("--b", required=True, metavar="NUMBER", help="participant B's real number")
    create.add_argument("--a-virtual", metavar="NUMBER", help="A's virtual number (default: pool)")
    create.add_argument("--b-virtual", metavar="NUMBER", help="B's virtual number (default: pool)")
    create.add_argument("--ttl", type=_positive_seconds, metavar="SECONDS",
                        help="end after this long without a call")
    create.add_argument("--expires-in", type=_positive_seconds, metavar="SECONDS",
                        help="end this long from now")
    create.add_argument("--meta", type=_meta_item, nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE")
    create.add_argument("--mode", choices=MODES, default="voice")
    create.add_argument("--region", default="US", help="region of national numbers")
    create.set_defaults(func=cmd_session_create)

    listing = ssub.add_parser("list", help="list sessions (effective status)")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--participant", metavar="NUMBER", help="sessions of this real number")
    listing.add_argument("--meta", type=_meta_item, nargs="+", action="extend", default=[],
                         metavar="KEY=VALUE", help="metadata equal to these values")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--cursor", help="continue after a previous page")
    listing.add_argument("--reveal", action="store_true", help="show real numbers unmasked")
    listing.add_argument("--region", default="US")
    listing.set_defaults(func=cmd_session_list)

    get = ssub.add_parser("get", help="show one session and its last calls")
    get.add_argument("id")
    get.add_argument("--calls", type=int, default=10, help="how many calls to show")
    get.add_argument("--reveal", action="store_true")
    get.set_defaults(func=cmd_session_get)

    update = ssub.add_parser("update", help="change expiry or inactivity TTL")
    update.add_argument("id")
    update.add_argument("--ttl", type=_positive_seconds, metavar="SECONDS")
    update.add_argument("--no-ttl", action="store_true", help="remove the inactivity TTL")
    update.add_argument("--expires-in", type=_positive_seconds, metavar="SECONDS")
    update.add_argument("--no-expiry", action="store_true", help="remove the absolute expiry")
    update.set_defaults(func=cmd_session_update)

    close = ssub.add_parser("close", help="close a session (calls are rejected from then on)")
    close.add_argument("id")
    close.set_defaults(func=cmd_session_close)


def _pool_parsers(sub: Any) -> None:
    pool = sub.add_parser("pool", help="the virtual-number pool")
    psub = pool.add_subparsers(dest="pool_command", metavar="COMMAND", required=True)
    add = psub.add_parser("add", help="add virtual numbers")
    add.add_argument("numbers", nargs="+", metavar="NUMBER")
    add.add_argument("--region", default="US")
    add.set_defaults(func=cmd_pool_add)
    listing = psub.add_parser("list", help="list the pool with open-session counts")
    listing.add_argument("--status", choices=POOL_STATUSES)
    listing.set_defaults(func=cmd_pool_list)
    for name, func, text in (
        ("drain", cmd_pool_drain, "take no new sessions on a number"),
        ("activate", cmd_pool_activate, "undo drain"),
        ("remove", cmd_pool_remove, "remove a number no active session uses"),
    ):
        cmd = psub.add_parser(name, help=text)
        cmd.add_argument("number")
        cmd.add_argument("--region", default="US")
        cmd.set_defaults(func=func)


def _token_parsers(sub: Any) -> None:
    token = sub.add_parser("token", help="API bearer tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = tsub.add_parser("create", help="create a token and print its secret once")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, required=True)
    create.set_defaults(func=cmd_token_create)
    tsub.add_parser("list", help="list tokens (never secrets)").set_defaults(func=cmd_token_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id or name")
    revoke.add_argument("token")
    revoke.set_defaults(func=cmd_token_revoke)


def _audit_parsers(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit log of administrative changes")
    asub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    listing = asub.add_parser("list", help="entries, newest first")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--target", help="only this session id, number or token id")
    listing.add_argument("--actor", help="only this actor (TOKEN_ID/NAME or cli:USER)")
    listing.set_defaults(func=cmd_audit_list)


def add_subcommands(subparsers: Any) -> None:
    """Add ``session``, ``pool``, ``token`` and ``audit`` to an argparse sub-parsers object."""
    _session_parsers(subparsers)
    _pool_parsers(subparsers)
    _token_parsers(subparsers)
    _audit_parsers(subparsers)
