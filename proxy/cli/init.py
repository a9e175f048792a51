"""``sipmask init [PATH]``: write the commented example config (package data) to start from."""

from __future__ import annotations

import argparse
import importlib.resources
import os
from pathlib import Path
from typing import Any

from .common import fail

__all__ = ["EXAMPLE", "add_subcommands", "cmd_init", "example_text"]

EXAMPLE = "sipmask.example.toml"
"""The example's name in the package (``proxy/cli/data/``) and in the source tree's root."""


def example_text() -> str:
    """The commented example config shipped with sipmask."""
    return (importlib.resources.files("proxy.cli") / "data" / EXAMPLE).read_text(encoding="utf-8")


def add_subcommands(subparsers: Any) -> None:
    """Add ``init`` to an argparse sub-parsers object."""
    init = subparsers.add_parser("init", help="write a commented example config to start from")
    init.add_argument("path", nargs="?", default="sipmask.toml",
                      help="where to write it (default %(default)s, which every command finds)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    """``init [PATH] [--force]``: write the example; an existing file is kept unless --force.

    The file holds no secret (the key lives in ``store.key_file``), so it is written 0644.
    """
    path = Path(args.path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        return fail(f"{path} exists; use --force to overwrite it")
    except OSError as exc:
        return fail(f"cannot write {path}: {exc.strerror or exc}")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(example_text())
    print(f"wrote {path}; check it with `sipmask check-config {path}`, start with "
          f"`sipmask -c {path} run`")
    return 0
