"""Store maintenance: ``sipmask keys rotate`` and ``sipmask purge``, on either backend.

Key rotation, step by step (docs/stores.md says the same for operators):

1. the new key file is created (64 random bytes, mode 0600) unless it exists;
2. the store re-encrypts every number and recomputes the HMAC index under the new key
   (SQLite: one transaction; Redis: one script per session, resumable, see RedisStore);
3. the old key file is copied to ``<key_file>.old`` and the new key is written over
   ``<key_file>`` atomically (temporary file + rename), unless ``--no-install``.

Running the same command again after an interruption finishes the job: a store already
under the new key skips to step 3.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import redis

from ..pairing.crypto import KEY_ENV, NumberVault, load_vault
from ..pairing.model import PairingError
from ..pairing.stores import StoreError
from .common import fail, open_configured_store

__all__ = ["add_subcommands", "cmd_keys_rotate", "cmd_purge"]

_KEY_CHECK_LABEL = "sipmask:key-check"


def add_subcommands(subparsers: Any) -> None:
    """Add ``keys rotate`` and ``purge`` to an argparse sub-parsers object."""
    keys = subparsers.add_parser("keys", help="number-encryption key maintenance")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="re-encrypt every stored number under a new key",
        description="Re-encrypt every stored number (and its lookup index) under a new key. "
                    "Stop every sipmask worker first; start them again afterwards. If it is "
                    "interrupted, run it again with the same arguments.",
    )
    rotate.add_argument("--new-key-file", required=True, metavar="FILE",
                        help="the new key (created with 64 random bytes if missing)")
    rotate.add_argument("--no-install", action="store_true",
                        help="leave the configured key file alone (point store.key_file at "
                             "FILE yourself)")
    rotate.set_defaults(func=cmd_keys_rotate)

    purge = subparsers.add_parser(
        "purge", help="delete closed/expired sessions and CDRs past the retention period")
    purge.add_argument("--older-than-days", type=float, metavar="DAYS",
                       help="retention in days (default: store.retention_days)")
    purge.set_defaults(func=cmd_purge)


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """``keys rotate --new-key-file F``: re-encrypt the store, then install the new key."""
    from_env = bool(os.environ.get(KEY_ENV, "").strip())
    try:
        old = load_vault(args.key_file, create=False)
        new = NumberVault.from_key_file(args.new_key_file, create=True)
    except PairingError as exc:
        return fail(exc)
    if old.index(_KEY_CHECK_LABEL) == new.index(_KEY_CHECK_LABEL):
        return fail("the new key is the key already in use")
    try:
        store = open_configured_store(args, old, rotating=True)
    except StoreError as old_error:
        try:
            open_configured_store(args, new).close()
        except StoreError:
            return fail(old_error)
        print("the store is already under the new key (an earlier rotation finished)")
    else:
        try:
            count = store.rotate_key(new)
        except (PairingError, redis.RedisError) as exc:
            return fail(f"{exc}; run the same command again to finish")
        finally:
            store.close()
        print(f"re-encrypted {count} sessions under the new key")
    if from_env:
        print(f"the key comes from ${KEY_ENV}: set it to the content of {args.new_key_file}, "
              "then restart every sipmask worker")
    elif args.no_install:
        print(f"set store.key_file to {args.new_key_file}, then restart every sipmask worker")
    else:
        backup = _install_key(Path(args.key_file), Path(args.new_key_file))
        print(f"installed the new key as {args.key_file} (old key kept in {backup}); "
              "restart every sipmask worker")
    return 0


def _install_key(key_file: Path, new_key_file: Path) -> Path:
    """Copy the old key aside and put the new one in its place, atomically."""
    backup = key_file.with_name(key_file.name + ".old")
    if backup.exists():
        backup = key_file.with_name(f"{key_file.name}.old-{int(time.time())}")
    new_text = new_key_file.read_bytes()
    if key_file.exists():
        _write_private(backup, key_file.read_bytes())
    tmp = key_file.with_name(f".{key_file.name}.tmp-{os.getpid()}")
    _write_private(tmp, new_text)
    os.replace(tmp, key_file)
    return backup


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def cmd_purge(args: argparse.Namespace) -> int:
    """``purge``: delete what the retention period lets go, now."""
    days = args.older_than_days
    if days is None:
        days = getattr(args, "retention_days", None)
    if days is None or days <= 0:
        return fail("no retention period: set store.retention_days or --older-than-days")
    try:
        store = open_configured_store(args, load_vault(args.key_file, create=False))
    except PairingError as exc:
        return fail(exc)
    try:
        sessions, cdrs = store.purge(older_than=time.time() - days * 86_400.0)
    except (PairingError, redis.RedisError) as exc:
        return fail(exc)
    finally:
        store.close()
    print(f"purged {sessions} sessions and {cdrs} CDRs that ended more than {days:g} days ago")
    return 0
