"""``sipmask run`` (the B2BUA itself) and ``sipmask check-config`` (validate before a start)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..config import load_config

__all__ = ["add_subcommands", "cmd_check_config", "cmd_run"]


def add_subcommands(subparsers: Any) -> None:
    """Add ``run`` and ``check-config`` to an argparse sub-parsers object."""
    run = subparsers.add_parser("run", help="run the B2BUA (default: udp 127.0.0.1:5060, ./sipmask.db)")
    run.set_defaults(func=cmd_run)
    check = subparsers.add_parser("check-config", help="validate a config file and its rules file")
    check.add_argument("file", nargs="?", help="config file (default: --config)")
    check.set_defaults(func=cmd_check_config)


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: serve the config until interrupted."""
    # imported here: the admin commands need none of the server
    from ..app import serve
    from ..transport import install_event_loop_policy

    config = load_config(args.config)
    install_event_loop_policy()
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """``check-config [FILE]``: load the config and its rules file; say what they hold."""
    from ..b2bua.policy import RulesError, load_rules

    config = load_config(args.file or args.config)
    try:
        load_rules(config.rules_file)
    except RulesError as exc:
        print(f"sipmask: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {config.source or 'defaults'} ({len(config.sip.listen)} listeners, "
          f"{len(config.trunks)} trunks, {len(config.routes)} routes, rules {config.rules_file})")
    return 0
