"""``sipmask session create|list|get|update|close``: sessions as the HTTP API makes them.

Virtual numbers come from the pool (proxy/cli/pool.py) unless given; the commands run the same
`PairingAdmin` operations as the API, so every change is audited (actor ``cli:USER``). A
running proxy picks a change up on its next poll.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..pairing.admin import PairingAdmin
from ..pairing.crypto import NumberVault
from ..pairing.model import STATUSES, Session
from ..pairing.policy import (
    DEFAULT_POLICY,
    DIRECTIONS,
    PolicyError,
    SessionPolicy,
    parse_policy,
    policy_to_json,
)
from ..pairing.records import KEEP, Keep, SessionFilter
from .common import (
    actor,
    add_lifetime_options,
    add_limit_option,
    add_region_option,
    add_reveal_option,
    add_session_options,
    describe_cdr,
    describe_session,
    fail,
    meta_item,
    with_admin,
)

__all__ = [
    "add_subcommands", "cmd_session_close", "cmd_session_create", "cmd_session_get",
    "cmd_session_list", "cmd_session_update",
]


def add_subcommands(subparsers: Any) -> None:
    """Add ``session create|list|get|update|close`` to an argparse sub-parsers object."""
    session = subparsers.add_parser("session", help="sessions with pool allocation (like the API)")
    ssub = session.add_subparsers(dest="session_command", metavar="COMMAND", required=True)

    create = ssub.add_parser("create", help="pair two participants, virtual numbers from the pool")
    create.add_argument("--a", required=True, metavar="NUMBER", help="participant A's real number")
    create.add_argument("--b", required=True, metavar="NUMBER", help="participant B's real number")
    create.add_argument("--a-virtual", metavar="NUMBER", help="A's virtual number (default: pool)")
    create.add_argument("--b-virtual", metavar="NUMBER", help="B's virtual number (default: pool)")
    add_session_options(create, "session")
    _add_policy_options(create, update=False)
    create.set_defaults(func=cmd_session_create)

    listing = ssub.add_parser("list", help="list sessions (effective status)")
    listing.add_argument("--status", choices=STATUSES, help="only sessions in this state")
    listing.add_argument("--participant", metavar="NUMBER", help="sessions of this real number")
    listing.add_argument("--meta", type=meta_item, nargs="+", action="extend", default=[],
                         metavar="KEY=VALUE", help="metadata equal to these values")
    add_limit_option(listing, "sessions")
    listing.add_argument("--cursor", help="continue after a previous page")
    add_reveal_option(listing)
    add_region_option(listing)
    listing.set_defaults(func=cmd_session_list)

    get = ssub.add_parser("get", help="show one session and its last calls")
    get.add_argument("id", help="session id (ps_...)")
    get.add_argument("--calls", type=int, default=10, help="how many calls to show")
    add_reveal_option(get)
    get.set_defaults(func=cmd_session_get)

    update = ssub.add_parser("update", help="change expiry, inactivity TTL or call policy")
    update.add_argument("id", help="session id (ps_...)")
    add_lifetime_options(update)
    update.add_argument("--no-ttl", action="store_true", help="remove the inactivity TTL")
    update.add_argument("--no-expiry", action="store_true", help="remove the absolute expiry")
    _add_policy_options(update, update=True)
    update.set_defaults(func=cmd_session_update)

    close = ssub.add_parser("close", help="close a session (calls are rejected from then on)")
    close.add_argument("id", help="session id (ps_...)")
    close.set_defaults(func=cmd_session_close)


def _add_policy_options(parser: argparse.ArgumentParser, *, update: bool) -> None:
    """The call policy's options (see docs/api.md, "Call policy")."""
    parser.add_argument(
        "--window", action="append", metavar="'DAYS FROM-TO ZONE'",
        help="allow calls only then, e.g. --window 'mon-fri 08:00-20:00 Asia/Singapore' "
             "(repeat for several; local time of the IANA zone)"
             + ("; replaces the session's windows" if update else ""))
    parser.add_argument("--max-call", type=float, metavar="SECONDS",
                        help="hang up a call after this long (default: calls.max_duration_s)")
    parser.add_argument("--ring-timeout", type=float, metavar="SECONDS",
                        help="give up on an unanswered call after this long "
                             "(default: calls.ring_timeout_s)")
    parser.add_argument("--direction", choices=DIRECTIONS,
                        help="who may call: both, only A (a_to_b) or only B (b_to_a)")
    parser.add_argument("--single-use", action=argparse.BooleanOptionalAction, default=None,
                        help="close the session when its first call is answered")
    if update:
        parser.add_argument("--no-windows", action="store_true", help="allow calls at any time")
        parser.add_argument("--no-max-call", action="store_true",
                            help="back to calls.max_duration_s")
        parser.add_argument("--no-ring-timeout", action="store_true",
                            help="back to calls.ring_timeout_s")


def _window_option(text: str, i: int) -> dict[str, str]:
    days, _, rest = text.strip().partition(" ")
    hours, _, tz = rest.strip().partition(" ")
    start, _, end = hours.partition("-")
    if not (days and start and end and tz.strip()):
        raise PolicyError("expected 'DAYS FROM-TO ZONE', e.g. 'mon-fri 08:00-20:00 Europe/Paris'",
                          f"--window #{i + 1}")
    return {"days": days, "from": start, "to": end, "tz": tz.strip()}


def _policy_options(args: argparse.Namespace, base: SessionPolicy) -> SessionPolicy:
    """`base` with the policy options given applied; `PolicyError` names the bad one."""
    raw: dict[str, Any] = {}
    if getattr(args, "no_windows", False):
        raw["calling_windows"] = []
    if args.window:
        raw["calling_windows"] = [_window_option(text, i) for i, text in enumerate(args.window)]
    for name, option in (("max_call_s", "max_call"), ("ring_timeout_s", "ring_timeout")):
        if getattr(args, f"no_{option}", False):
            raw[name] = None
        elif getattr(args, option) is not None:
            raw[name] = getattr(args, option)
    if args.direction is not None:
        raw["direction"] = args.direction
    if args.single_use is not None:
        raw["single_use"] = args.single_use
    return parse_policy(raw, base)


def _describe_policy(session: Session) -> str | None:
    """One line for a session's call policy, or None when it has none."""
    if session.policy == DEFAULT_POLICY:
        return None
    shown = policy_to_json(session.policy)
    windows = "; ".join(f"{w['days']} {w['from']}-{w['to']} {w['tz']}"
                        for w in shown.pop("calling_windows"))
    parts = [f"windows={windows}"] if windows else []
    parts += [f"{key}={value}" for key, value in shown.items() if value not in (None, False)]
    return "  policy " + " ".join(parts)


def _print_session(session: Session, now: float, reveal: bool, vault: NumberVault) -> None:
    print(describe_session(session, now, reveal, vault))
    line = _describe_policy(session)
    if line is not None:
        print(line)


@with_admin
def cmd_session_create(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``session create``: a session, its virtual numbers from the pool unless given."""
    now = time.time()
    try:
        policy = _policy_options(args, DEFAULT_POLICY)
    except PolicyError as exc:
        return fail(exc)
    session = admin.create_session(
        actor(), args.a, args.b, virtual_a=args.a_virtual, virtual_b=args.b_virtual,
        expires_at=None if args.expires_in is None else now + args.expires_in,
        ttl_s=args.ttl, metadata=dict(args.meta), mode=args.mode, policy=policy,
    )
    print(f"created {session.id}")
    _print_session(session, now, False, admin.vault)
    return 0


@with_admin
def cmd_session_list(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``session list``: one page of sessions that match, and the cursor of the next."""
    participant = None if args.participant is None else admin.number(args.participant,
                                                                      "--participant")
    where = SessionFilter(status=args.status, participant=participant, metadata=tuple(args.meta))
    now = time.time()
    page = admin.store.find_sessions(where, now=now, limit=args.limit, cursor=args.cursor)
    for session in page.items:
        print(describe_session(session, now, args.reveal, admin.vault))
    if not page.items:
        print("no sessions")
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")
    return 0


@with_admin
def cmd_session_get(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``session get ID``: the session and its last calls."""
    now = time.time()
    _print_session(admin.store.get_session(args.id), now, args.reveal, admin.vault)
    for cdr in admin.store.list_cdrs(session_id=args.id, limit=args.calls):
        print("  call " + describe_cdr(cdr))
    return 0


@with_admin
def cmd_session_update(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``session update ID``: change or remove the absolute expiry and the inactivity TTL."""
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
    policy: SessionPolicy | Keep = KEEP
    try:
        current = admin.store.get_session(args.id).policy
        changed = _policy_options(args, current)
        if changed != current:
            policy = changed
    except PolicyError as exc:
        return fail(exc)
    if expires is KEEP and ttl is KEEP and policy is KEEP:
        return fail("nothing to change (give --ttl, --no-ttl, --expires-in, --no-expiry or a "
                    "policy option)")
    session = admin.update_session(actor(), args.id, expires_at=expires, ttl_s=ttl,
                                   policy=policy)
    _print_session(session, time.time(), False, admin.vault)
    return 0


@with_admin
def cmd_session_close(args: argparse.Namespace, admin: PairingAdmin) -> int:
    """``session close ID``: close the session (calls are rejected from then on)."""
    before = admin.store.get_session(args.id)
    if before.status != "open":
        print(f"{before.id} is already {before.status}")
        return 0
    admin.close_session(actor(), args.id)
    print(f"closed {args.id}")
    return 0
