"""The ``sipmask`` command line (console script and ``python -m proxy``).

One module per command group; every group module has ``add_subcommands(subparsers)``:

=========================================  ======================================  ===========
commands                                   what for                                module
=========================================  ======================================  ===========
``init``                                   write a commented example config        init.py
``run``, ``check-config``                  the B2BUA; validate a config first      run.py
``pairing add|list|remove``                pairings with virtual numbers by hand   pairing.py
``cdr list|export``                        call detail records; CSV/JSONL export   cdr.py
``session create|list|get|update|close``   sessions from the pool, like the API    session.py
``pool add|list|drain|activate|remove``    the virtual-number pool                 pool.py
``token create|list|revoke``               API bearer tokens                       token.py
``token-of NUMBER``                        the token logs and CDRs show for it     number.py
``audit list``                             the audit log                           audit.py
``keys rotate``, ``purge``                 key rotation, retention                 keys.py
=========================================  ======================================  ===========

common.py holds what they share: the store opener, the error guard, argument types, output.
Each command sets ``func``, a handler taking the parsed namespace and returning the exit
code. `main` fills the store settings the options leave out from the config, so the admin
commands work on the store a running proxy uses (which picks changes up on its next poll).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from ..config import ConfigError, load_config
from ..config.load import find_config
from . import audit, cdr, init, keys, number, pairing, pool, run, session, token
from .common import Handler, describe_store

__all__ = ["build_parser", "main", "sipmask_version"]

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def sipmask_version() -> str:
    """The installed distribution's version; from a source tree that is not installed, the
    version in its pyproject.toml; else ``unknown``."""
    try:
        return metadata.version("sipmask")
    except metadata.PackageNotFoundError:
        pass
    try:
        with _PYPROJECT.open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``, looking the version up only when asked (every command builds the parser)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"sipmask {sipmask_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sipmask`` command."""
    parser = argparse.ArgumentParser(prog="sipmask", description="SIP B2BUA that masks phone numbers")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument("-c", "--config",
                        help="TOML config file (default: $SIPMASK_CONFIG, else ./sipmask.toml, "
                             "else /etc/sipmask/sipmask.toml, else built-in defaults)")
    parser.add_argument("--db", help="SQLite store (default: the config's store.path)")
    parser.add_argument("--key-file", help="number-encryption key file (default: store.key_file)")
    parser.add_argument("--backend", choices=("sqlite", "redis"),
                        help="pairing store (default: store.backend)")
    parser.add_argument("--redis-url", help="Redis store URL (default: store.redis_url)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (init, run, pairing, cdr, session, pool, token, number, audit, keys):
        group.add_subcommands(sub)
    return parser


#: commands that do not open the store, or say which config they use themselves
_QUIET = ("run", "check-config", "init")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sipmask`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # every command resolves the config alike (-c, $SIPMASK_CONFIG, ./sipmask.toml,
        # /etc/sipmask/sipmask.toml), so the CLI and a running server agree on the store
        args.config = find_config(args.config)
        if args.command != "init":
            cfg = load_config(args.config)
            args.db = args.db or cfg.store.path
            args.key_file = args.key_file or cfg.store.key_file
            args.backend = args.backend or cfg.store.backend
            args.redis_url = args.redis_url or cfg.store.redis_url
            args.redis_prefix = cfg.store.redis_prefix
            args.retention_days = cfg.store.retention_days
        if args.command not in _QUIET and sys.stderr.isatty():
            # to a person at a terminal (scripts keep one-line errors): which store this
            # command changes, so a token made here and a server's 401 cannot silently disagree
            where = Path(args.config).resolve() if args.config else "built-in defaults"
            print(f"sipmask: config {where}, store "
                  f"{describe_store(args.backend, args.db, args.redis_url)}", file=sys.stderr)
        handler: Handler = args.func
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"sipmask: {exc}", file=sys.stderr)
        return 2
