"""Admin subcommands on the pairing store: ``pairing add|list|remove`` and ``cdr list``.

`add_subcommands(subparsers)` plugs them into the main ``sipmask`` parser; each subcommand sets
``func`` (a handler taking the parsed namespace and returning an exit code). The namespace must
carry ``db`` and ``key_file`` (and ``backend``, ``redis_url``, ``redis_prefix`` for a Redis
store; cli.py fills them from the config). The CLI writes to the same store as a running proxy,
which picks the change up on its next poll.

Errors (bad numbers, conflicts, unknown ids, a key file that does not match) print one line to
stderr and exit 1; real numbers are masked in listings unless ``--reveal`` is given.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis

from .pairing.stores import PairingStore, open_store
from .pairing.crypto import load_vault
from .pairing.model import MODES, STATUSES, Cdr, PairingError, Participant, Session
from .pairing.normalize import mask_number, normalize_number

__all__ = ["add_subcommands", "main"]

Handler = Callable[[argparse.Namespace], int]

DEFAULT_DB = "sipmask.db"
DEFAULT_KEY_FILE = "sipmask.key"


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _meta_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def add_subcommands(subparsers: Any) -> None:
    """Add ``pairing`` and ``cdr`` commands to an argparse sub-parsers object."""
    pairing = subparsers.add_parser("pairing", help="manage pairings (sessions)")
    pairing_sub = pairing.add_subparsers(dest="pairing_command", metavar="COMMAND", required=True)

    add = pairing_sub.add_parser("add", help="pair two participants")
    add.add_argument("--a", required=True, metavar="NUMBER", help="participant A's real number")
    add.add_argument("--a-virtual", required=True, metavar="NUMBER",
                     help="the virtual number A dials to reach B (and sees when B calls)")
    add.add_argument("--b", required=True, metavar="NUMBER", help="participant B's real number")
    add.add_argument("--b-virtual", required=True, metavar="NUMBER",
                     help="the virtual number B dials to reach A (and sees when A calls)")
    add.add_argument("--ttl", type=_positive_seconds, metavar="SECONDS",
                     help="expire after this long without a call")
    add.add_argument("--expires-in", type=_positive_seconds, metavar="SECONDS",
                     help="expire this long from now, whatever the activity")
    add.add_argument("--meta", type=_meta_item, nargs="+", action="extend", default=[],
                     metavar="KEY=VALUE",
                     help="metadata to keep with the pairing, e.g. --meta order=123 city=Paris")
    add.add_argument("--mode", choices=MODES, default="voice")
    add.add_argument("--region", default="US",
                     help="region for numbers written without +country code (default US)")
    add.set_defaults(func=cmd_pairing_add)

    listing = pairing_sub.add_parser("list", help="list pairings")
    listing.add_argument("--status", choices=STATUSES, help="only pairings in this state")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--reveal", action="store_true", help="show real numbers unmasked")
    listing.set_defaults(func=cmd_pairing_list)

    remove = pairing_sub.add_parser("remove", help="close a pairing")
    remove.add_argument("id", help="pairing id (ps_...)")
    remove.set_defaults(func=cmd_pairing_remove)

    cdr = subparsers.add_parser("cdr", help="call detail records")
    cdr_sub = cdr.add_subparsers(dest="cdr_command", metavar="COMMAND", required=True)
    cdr_list = cdr_sub.add_parser("list", help="list CDRs, newest first")
    cdr_list.add_argument("--session", metavar="ID", help="only CDRs of this pairing")
    cdr_list.add_argument("--limit", type=int, default=100)
    cdr_list.set_defaults(func=cmd_cdr_list)


def _open_store(args: argparse.Namespace) -> PairingStore:
    db = Path(getattr(args, "db", DEFAULT_DB))
    backend = getattr(args, "backend", None) or "sqlite"
    # A new key only goes with a new SQLite file: an existing store needs the key it was made
    # with (a Redis store's key file is made by the first `sipmask run`).
    vault = load_vault(getattr(args, "key_file", DEFAULT_KEY_FILE),
                       create=backend == "sqlite" and not db.exists())
    return open_store(backend, vault, path=db, redis_url=getattr(args, "redis_url", None),
                      redis_prefix=getattr(args, "redis_prefix", None) or "sipmask:")


def _guarded(handler: Callable[[argparse.Namespace, PairingStore], int]) -> Handler:
    """Open the store around `handler` and turn domain errors into a message and exit 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            store = _open_store(args)
        except (PairingError, sqlite3.Error, redis.RedisError, OSError) as exc:
            return _fail(exc)
        try:
            return handler(args, store)
        except (PairingError, sqlite3.Error, redis.RedisError) as exc:
            return _fail(exc)
        finally:
            store.close()

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _fail(exc: BaseException) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _show(number: str, reveal: bool) -> str:
    return number if reveal else mask_number(number)


def _describe(session: Session, now: float, reveal: bool) -> str:
    limits = []
    if session.expires_at is not None:
        limits.append(f"expires={_when(session.expires_at)}")
    if session.ttl_s is not None:
        limits.append(f"ttl={session.ttl_s:g}s")
    meta = " ".join(f"{k}={v}" for k, v in sorted(session.metadata.items()))
    fields = [
        session.id,
        session.effective_status(now),
        session.mode,
        f"A {_show(session.a.number, reveal)} via {session.a.virtual}",
        f"B {_show(session.b.number, reveal)} via {session.b.virtual}",
        f"created={_when(session.created_at)}",
        *limits,
    ]
    if meta:
        fields.append(f"meta[{meta}]")
    return "  ".join(fields)


@_guarded
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
    print(_describe(session, now, reveal=False))
    return 0


@_guarded
def cmd_pairing_list(args: argparse.Namespace, store: PairingStore) -> int:
    """``pairing list``: settle due expiries, then print pairings (numbers masked)."""
    now = time.time()
    store.expire_due(now)  # so that the list (and the proxy's next poll) agree on "expired"
    sessions = store.list_sessions(status=args.status, limit=args.limit)
    for session in sessions:
        print(_describe(session, now, args.reveal))
    if not sessions:
        print("no pairings")
    return 0


@_guarded
def cmd_pairing_remove(args: argparse.Namespace, store: PairingStore) -> int:
    """``pairing remove ID``: close the pairing (it stops routing at the proxy's next poll)."""
    before = store.get_session(args.id)
    if before.status != "open":
        print(f"{before.id} is already {before.status}")
        return 0
    store.close_session(args.id, time.time())
    print(f"closed {args.id}")
    return 0


def _describe_cdr(cdr: Cdr) -> str:
    answered = "-" if cdr.answered_at is None else _when(cdr.answered_at)
    return "  ".join([
        _when(cdr.started_at),
        cdr.session_id or "-",
        cdr.call_id_token,
        f"{cdr.caller_token} -> {cdr.callee_token}",
        f"{cdr.outcome} {cdr.sip_code}",
        f"answered={answered}",
        f"duration={cdr.duration_s:.1f}s",
        f"cause={cdr.cause or '-'}",
    ])


@_guarded
def cmd_cdr_list(args: argparse.Namespace, store: PairingStore) -> int:
    """``cdr list``: print CDRs, newest first (numbers appear as tokens only)."""
    cdrs = store.list_cdrs(session_id=args.session, limit=args.limit)
    for cdr in cdrs:
        print(_describe_cdr(cdr))
    if not cdrs:
        print("no CDRs")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser with ``--db``, ``--key-file`` and the admin subcommands."""
    parser = argparse.ArgumentParser(prog="sipmask", description="sipmask pairing admin")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file (default {DEFAULT_DB})")
    parser.add_argument("--key-file", default=DEFAULT_KEY_FILE,
                        help=f"master key file, created if missing (default {DEFAULT_KEY_FILE})")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_subcommands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one admin command; return its exit code (argparse usage errors exit 2)."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
