"""What the command groups share: the store opener, the error guard, argument types, output.

A command's handler takes the parsed namespace and returns its exit code. The namespace
carries the store settings that `proxy.cli.main` fills from the config: ``db``,
``key_file``, ``backend``, ``redis_url`` and, when the config was read, ``redis_prefix``
and ``retention_days``.

Errors the operator can act on (a bad number, a conflict, an unknown id, a key file that
does not match, a store that cannot be reached) print one line, ``error: ...``, to stderr
and exit 1; `fail` writes it. Messages never carry a real number, and listings mask real
numbers unless ``--reveal`` is given.
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import redis

from ..pairing.admin import PairingAdmin
from ..pairing.crypto import NumberVault, load_vault
from ..pairing.model import MODES, Cdr, PairingError, Session
from ..pairing.normalize import mask_number
from ..pairing.stores import ApiStore, PairingStore, RedisStore, StoreError, open_store
from ..preflight import redacted_url

__all__ = [
    "STORE_ERRORS", "AdminHandler", "Handler", "StoreHandler", "actor", "add_lifetime_options",
    "add_limit_option", "add_region_option", "add_session_options", "add_reveal_option", "describe_cdr",
    "configured_vault", "describe_session", "describe_store", "fail",
    "meta_item", "open_configured_store", "positive_seconds", "show_number", "when",
    "with_admin", "with_store",
]

Handler = Callable[[argparse.Namespace], int]
"""What a command sets as ``func``: parsed arguments in, exit code out."""
StoreHandler = Callable[[argparse.Namespace, PairingStore], int]
AdminHandler = Callable[[argparse.Namespace, PairingAdmin], int]

STORE_ERRORS: tuple[type[BaseException], ...] = (
    PairingError, sqlite3.Error, redis.RedisError, OSError)
"""The errors `with_store` turns into one line and exit 1."""


def fail(error: BaseException | str) -> int:
    """Print ``error: ...`` to stderr; return the exit code 1."""
    print(f"error: {error}", file=sys.stderr)
    return 1


# -- the store ----------------------------------------------------------------------------------

def open_configured_store(args: argparse.Namespace, vault: NumberVault | None = None, *,
                          rotating: bool = False) -> PairingStore:
    """The store that `args` names, under `vault`.

    Without `vault`, the key file's; a new key only goes with a new store (a SQLite file that
    does not exist, a Redis store that holds nothing): an existing store needs the key it was
    made with. `rotating` is `open_store`'s (a Redis store in mid-rotation).
    """
    backend = getattr(args, "backend", None) or "sqlite"
    if vault is None:
        if backend == "sqlite":
            new_store = not Path(args.db).exists()
        else:
            url = getattr(args, "redis_url", None)
            if not url:
                raise StoreError('store.redis_url is required with backend "redis"')
            new_store = not Path(args.key_file).exists() and RedisStore.is_new(
                url, prefix=getattr(args, "redis_prefix", None) or "sipmask:")
        vault = load_vault(args.key_file, create=new_store)
    return open_store(backend, vault, path=args.db, redis_url=getattr(args, "redis_url", None),
                      redis_prefix=getattr(args, "redis_prefix", None) or "sipmask:",
                      rotating=rotating)


def describe_store(backend: str | None, path: str, redis_url: str | None) -> str:
    """The store a command or the server uses, for the one line that says so: ``sqlite
    /abs/sipmask.db`` or ``redis redis://host:6379/0`` (without a password)."""
    if (backend or "sqlite") == "sqlite":
        return f"sqlite {Path(path).resolve()}"
    return f"redis {redacted_url(redis_url) if redis_url else '(no store.redis_url)'}"


def with_store(handler: StoreHandler) -> Handler:
    """Open the store around `handler`, close it after; `STORE_ERRORS` exit 1 with one line."""

    def run(args: argparse.Namespace) -> int:
        try:
            store = open_configured_store(args)
        except STORE_ERRORS as exc:
            return fail(exc)
        try:
            return handler(args, store)
        except STORE_ERRORS as exc:
            return fail(exc)
        finally:
            store.close()

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def with_admin(handler: AdminHandler) -> Handler:
    """`with_store`, with the store's operations as the API runs them (`PairingAdmin`), so
    that every change is audited; for a store that supports them (`ApiStore`)."""

    def run(args: argparse.Namespace, store: PairingStore) -> int:
        if not isinstance(store, ApiStore):
            raise PairingError(
                f"the {getattr(args, 'backend', None) or 'sqlite'} store does not support "
                "session, pool, token and audit commands yet")
        # the vault of the store just opened: same key source, never creating one
        vault = load_vault(args.key_file, create=False)
        admin = PairingAdmin(store, vault, region=getattr(args, "region", "US"))
        return handler(args, admin)

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return with_store(run)


def actor() -> str:
    """Who the audit log names for a command: ``cli:USER``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli:unknown"


# -- arguments ----------------------------------------------------------------------------------

def positive_seconds(text: str) -> float:
    """Argument type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def meta_item(text: str) -> tuple[str, str]:
    """Argument type: ``key=value`` (the value may hold more ``=``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def add_lifetime_options(parser: argparse.ArgumentParser) -> None:
    """``--ttl`` and ``--expires-in``: when a session ends by itself."""
    parser.add_argument("--ttl", type=positive_seconds, metavar="SECONDS",
                        help="expire after this long without a call")
    parser.add_argument("--expires-in", type=positive_seconds, metavar="SECONDS",
                        help="expire this long from now, whatever the activity")


def add_session_options(parser: argparse.ArgumentParser, noun: str) -> None:
    """What a new session (`noun`: pairing, session) may carry besides its numbers: ``--ttl``,
    ``--expires-in``, ``--meta``, ``--mode``, and ``--region`` to read its numbers."""
    add_lifetime_options(parser)
    parser.add_argument("--meta", type=meta_item, nargs="+", action="extend", default=[],
                        metavar="KEY=VALUE",
                        help=f"metadata to keep with the {noun}, e.g. --meta order=123 city=Paris")
    parser.add_argument("--mode", choices=MODES, default="voice",
                        help="voice: calls and SIP MESSAGEs; message: SIP MESSAGEs only, calls "
                             "get the uniform rejection (default %(default)s)")
    add_region_option(parser)


def add_region_option(parser: argparse.ArgumentParser) -> None:
    """``--region``: how to read numbers written without a +country code."""
    parser.add_argument("--region", default="US",
                        help="region for numbers written without +country code "
                             "(default %(default)s)")


def add_reveal_option(parser: argparse.ArgumentParser) -> None:
    """``--reveal``: print real numbers as they are."""
    parser.add_argument("--reveal", action="store_true", help="show real numbers unmasked")


def add_limit_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--limit N``: print at most N `what`."""
    parser.add_argument("--limit", type=int, default=100, metavar="N",
                        help=f"show at most N {what} (default %(default)s)")


# -- output -------------------------------------------------------------------------------------

def when(ts: float | None) -> str:
    """A Unix time as UTC ISO 8601 to the second, or ``-``."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def configured_vault(args: argparse.Namespace) -> NumberVault:
    """The vault of the configured key (never creating one): for the tokens of masked numbers."""
    return load_vault(args.key_file, create=False)


def show_number(number: str, reveal: bool, vault: NumberVault) -> str:
    """A real number, masked (with its keyed token from `vault`) unless `reveal`."""
    return number if reveal else mask_number(number, vault.token(number))


def describe_session(session: Session, now: float, reveal: bool, vault: NumberVault) -> str:
    """One line for a session (pairing): id, status at `now`, mode, parties, limits, metadata
    (numbers masked with their tokens from `vault` unless `reveal`)."""
    limits = []
    if session.expires_at is not None:
        limits.append(f"expires={when(session.expires_at)}")
    if session.ttl_s is not None:
        limits.append(f"ttl={session.ttl_s:g}s")
    meta = " ".join(f"{k}={v}" for k, v in sorted(session.metadata.items()))
    fields = [
        session.id,
        session.effective_status(now),
        session.mode,
        f"A {show_number(session.a.number, reveal, vault)} via {session.a.virtual}",
        f"B {show_number(session.b.number, reveal, vault)} via {session.b.virtual}",
        f"created={when(session.created_at)}",
        *limits,
    ]
    if meta:
        fields.append(f"meta[{meta}]")
    return "  ".join(fields)


def describe_cdr(cdr: Cdr) -> str:
    """One line for a CDR; its numbers are tokens already."""
    answered = "-" if cdr.answered_at is None else when(cdr.answered_at)
    return "  ".join([
        when(cdr.started_at),
        cdr.session_id or "-",
        cdr.call_id_token,
        f"{cdr.caller_token} -> {cdr.callee_token}",
        f"{cdr.outcome} {cdr.sip_code}",
        f"answered={answered}",
        f"duration={cdr.duration_s:.1f}s",
        f"cause={cdr.cause or '-'}",
    ])

