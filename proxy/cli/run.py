"""``sipmask run`` (the B2BUA itself) and ``sipmask check-config`` (validate before a start).

Both run the start-up checks of `proxy.preflight` (sockets, addresses, TLS files, key file,
store, rules): a problem is one line naming its key, exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..config import Config, load_config
from ..preflight import preflight
from .common import describe_store

__all__ = ["add_subcommands", "cmd_check_config", "cmd_run", "report_problems"]


def add_subcommands(subparsers: Any) -> None:
    """Add ``run`` and ``check-config`` to an argparse sub-parsers object."""
    run = subparsers.add_parser("run", help="run the B2BUA (default: udp 127.0.0.1:5060, ./sipmask.db)")
    run.set_defaults(func=cmd_run)
    check = subparsers.add_parser(
        "check-config", help="validate a config and try what run needs (ports, files, store)")
    check.add_argument("file", nargs="?", help="config file (default: -c, $SIPMASK_CONFIG, "
                                               "./sipmask.toml, /etc/sipmask/sipmask.toml)")
    check.set_defaults(func=cmd_check_config)


def report_problems(config: Config) -> int:
    """Run the start-up checks; print each problem as one line. 2 when any, else 0."""
    problems = preflight(config)
    for problem in problems:
        print(f"sipmask: {problem}", file=sys.stderr)
    return 2 if problems else 0


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: check what start-up needs, then serve the config until interrupted."""
    # imported here: the admin commands need none of the server
    from ..app import serve
    from ..transport import install_event_loop_policy

    config = load_config(args.config)
    if code := report_problems(config):
        return code
    install_event_loop_policy()
    try:
        asyncio.run(serve(config))  # a bind lost to a race since the checks: ConfigError, exit 2
    except KeyboardInterrupt:
        pass
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """``check-config [FILE]``: load the config, run the start-up checks; say what it holds."""
    config = load_config(args.file or args.config)
    if code := report_problems(config):
        return code
    print(f"ok: {config.source or 'built-in defaults'} ({len(config.sip.listen)} listeners, "
          f"{len(config.trunks)} trunks, {len(config.routes)} routes, rules {config.rules_file}; "
          f"store {describe_store(config.store.backend, config.store.path, config.store.redis_url)})")
    return 0
