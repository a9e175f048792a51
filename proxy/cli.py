"""Command line: ``sipmask run | check-config | pairing ... | cdr ... | keys rotate | purge``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from . import admin_cli, manage_cli, store_cli
from .config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sipmask`` command."""
    parser = argparse.ArgumentParser(prog="sipmask", description="SIP B2BUA that masks phone numbers")
    parser.add_argument("-c", "--config", help="TOML config file (default: none, or $SIPMASK_CONFIG)")
    parser.add_argument("--db", help="SQLite store (default: the config's store.path)")
    parser.add_argument("--key-file", help="number-encryption key file (default: store.key_file)")
    parser.add_argument("--backend", choices=("sqlite", "redis"),
                        help="pairing store (default: store.backend)")
    parser.add_argument("--redis-url", help="Redis store URL (default: store.redis_url)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the B2BUA (default: udp 127.0.0.1:5060, ./sipmask.db)")
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate a config file and its rules file")
    check.add_argument("file", nargs="?", help="config file (default: --config)")
    check.set_defaults(func=_check)
    admin_cli.add_subcommands(sub)
    manage_cli.add_subcommands(sub)
    store_cli.add_subcommands(sub)
    return parser


def _run(args: argparse.Namespace) -> int:
    from .app import serve
    from .transport import install_event_loop_policy

    config = load_config(args.config)
    install_event_loop_policy()
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    return 0


def _check(args: argparse.Namespace) -> int:
    from .b2bua.policy import RulesError, load_rules

    config = load_config(args.file or args.config)
    try:
        load_rules(config.rules_file)
    except RulesError as exc:
        print(f"sipmask: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {config.source or 'defaults'} ({len(config.sip.listen)} listeners, "
          f"{len(config.trunks)} trunks, {len(config.routes)} routes, rules {config.rules_file})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sipmask`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if None in (args.db, args.key_file, args.backend) or args.command == "purge":
            # admin commands default to the store of the config in use
            cfg = load_config(args.config)
            args.db = args.db or cfg.store.path
            args.key_file = args.key_file or cfg.store.key_file
            args.backend = args.backend or cfg.store.backend
            args.redis_url = args.redis_url or cfg.store.redis_url
            args.redis_prefix = cfg.store.redis_prefix
            args.retention_days = cfg.store.retention_days
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"sipmask: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
