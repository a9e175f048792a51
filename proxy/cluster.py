"""Calls that outlive a worker, the asyncio side: established calls' records written to the
store, reloaded by a restarted worker, claimed by a sibling when a worker's lease has run out;
and the drain of a planned stop (SIGTERM).

The B2BUA (sans-IO) marks calls as changed in its ``DialogJournal``; every
``cluster.flush_interval_s`` the keeper turns them into records (``b2bua.snapshot``), encrypts
each under the store's key (the records name both parties' real addresses) and writes them in one
store call. Every third of ``cluster.lease_s`` it renews this worker's lease. Every half lease it
looks for workers whose lease ended more than ``cluster.takeover_after_s`` ago and claims their
records atomically (two siblings never get the same call); the B2BUA rebuilds those calls and
continues them (an UPDATE with our Contact to each leg) or ends them cleanly (``takeover``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from .b2bua import B2bua
from .b2bua.snapshot import DialogJournal
from .config import Config
from .pairing.crypto import NumberVault, VaultError
from .pairing.stores import DialogStore
from .transport.stack import SipStack

__all__ = ["DialogKeeper", "worker_name"]

Run = Callable[..., "asyncio.Future[Any]"]


def worker_name(config: Config) -> str:
    """``cluster.worker_id``, or the host name and the first SIP port."""
    if config.cluster.worker_id:
        return config.cluster.worker_id
    return f"{socket.gethostname()}:{config.sip.listen[0].port}"


class DialogKeeper:
    """Writes, reloads, claims and hands over established calls (see the module docstring)."""

    def __init__(self, config: Config, worker: str, store: DialogStore, vault: NumberVault,
                 b2bua: B2bua, stack: SipStack, run: Run, log: Any,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = config.cluster
        self.worker = worker
        self.store = store
        self.vault = vault
        self.b2bua = b2bua
        self.stack = stack
        self.run = run
        self.log = log
        self.loop = loop
        self.journal = DialogJournal()
        b2bua.journal = self.journal
        #: figures for /metrics
        self.written = 0
        self.reloaded = 0
        self.claimed = 0
        self.write_errors = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        """Take this worker's lease and reload its own calls (a restart); returns how many."""
        await self.run(self.store.heartbeat, self.worker, time.time() + self.cfg.lease_s)
        raw = await self.run(self.store.dialogs_of, self.worker)
        calls = self._adopt(raw, "reload")
        self.reloaded = calls
        if raw:
            self.log.info("cluster.reloaded", calls=calls, records=len(raw), worker=self.worker)
        return calls

    def tasks(self) -> list[tuple[str, float, Callable[[], Any]]]:
        """(name, interval, job) of the keeper's housekeeping."""
        jobs: list[tuple[str, float, Callable[[], Any]]] = [
            ("dialogs.flush", self.cfg.flush_interval_s, self.flush),
            ("cluster.lease", self.cfg.lease_s / 3.0, self.renew),
        ]
        if self.cfg.takeover_after_s > 0:
            jobs.append(("cluster.takeover", max(self.cfg.lease_s / 2.0, 0.5), self.take_over))
        return jobs

    async def flush(self) -> None:
        """Write the calls that changed and delete the records of the calls that ended."""
        records, deleted = self.journal.take(self.b2bua.wall_clock, self.b2bua.media)
        if not records and not deleted:
            return
        blobs = {key: self._seal(record) for key, record in records.items()}
        try:
            await self.run(self.store.put_dialogs, self.worker, blobs, deleted)
        except Exception as exc:  # noqa: BLE001 - the store is down: retried at the next flush
            self.write_errors += 1
            self.log.warning("cluster.write_failed", error=type(exc).__name__, calls=len(blobs))
            self.journal.deleted.update(deleted)
            for key in records:
                call = self.b2bua.calls.get(key)
                if call is not None:
                    self.journal.changed(call)
            return
        self.written += len(blobs)

    async def renew(self) -> None:
        """Push this worker's lease forward."""
        await self.run(self.store.heartbeat, self.worker, time.time() + self.cfg.lease_s)

    async def take_over(self) -> None:
        """Claim the records of every worker whose lease ended ``takeover_after_s`` ago."""
        leases: dict[str, float] = await self.run(self.store.worker_leases)
        now = time.time()
        cutoff = now - self.cfg.takeover_after_s
        for worker, expires in leases.items():
            if worker == self.worker or expires >= cutoff:
                continue
            raw: dict[str, bytes] = await self.run(self.store.claim_dialogs, worker, self.worker, cutoff)
            if not raw:
                continue
            calls = self._adopt(raw, self.cfg.takeover)
            self.claimed += calls
            self.log.warning("cluster.took_over", worker=worker, calls=calls, records=len(raw),
                             mode=self.cfg.takeover)

    async def hand_over(self) -> int:
        """The end of a drain: calls not yet established are ended, established ones are
        written to the store and this worker's lease released, for a restart (which reloads
        them) or a sibling (which claims them after ``takeover_after_s``). Returns how many
        calls were handed over."""
        b2bua = self.b2bua
        now = self.loop.time()
        b2bua.end_unestablished(now)
        left = b2bua.drain_remaining()
        for call in left:
            self.journal.changed(call)
        await self.flush()
        await self.run(self.store.release_worker, self.worker)
        self.stack.flush()
        return len(left)

    # ------------------------------------------------------------------ records
    def _seal(self, record: dict[str, Any]) -> bytes:
        return self.vault.encrypt(json.dumps(record, separators=(",", ":")))

    def _adopt(self, raw: dict[str, bytes], mode: str) -> int:
        """Rebuild the calls of ``raw``: ``reload`` (ours, after a restart), ``update`` (a
        sibling's, continued) or ``end`` (a sibling's, ended with cause worker_lost)."""
        records = []
        for blob in raw.values():
            try:
                records.append(json.loads(self.vault.decrypt(blob)))
            except (VaultError, ValueError) as exc:
                self.log.error("cluster.record_unreadable", error=type(exc).__name__)
        now = self.loop.time()
        calls, _failed = self.b2bua.adopt(records, now, self.b2bua.wall_clock(now), refresh=mode == "update")
        if mode == "end":
            for call in calls:
                self.b2bua.end_lost(call, now)
        self.stack.flush()
        return len(calls)
