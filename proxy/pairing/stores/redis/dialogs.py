"""Established calls' records and the workers' leases for `RedisStore` (see ``DialogStore``
in ``stores.base``). Records are opaque bytes (encrypted by the caller).

Keys under the store's prefix: ``dialogs`` (hash: call key -> record), ``dialog_owner``
(hash: call key -> worker), ``dialogs:<worker>`` (set of the worker's call keys),
``dialog_workers`` (set of workers that ever wrote records), ``workers`` (hash: worker ->
lease end, wall clock). Writes and claims are scripts (``dialog_put.lua``,
``dialog_claim.lua``): each is atomic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .scripts import lua

__all__ = ["RedisDialogMixin"]

_PUT = lua("dialog_put")
_CLAIM = lua("dialog_claim")


class RedisDialogMixin:
    """Dialog records and leases for `RedisStore`."""

    # Provided by RedisStore.
    _r: Any
    _p: str

    def _init_dialogs(self) -> None:
        self._dialog_put = self._r.register_script(_PUT)
        self._dialog_claim = self._r.register_script(_CLAIM)

    def heartbeat(self, worker: str, expires_at: float) -> None:
        """`worker` is alive until `expires_at` (wall clock)."""
        self._r.hset(self._p + "workers", worker, repr(float(expires_at)))

    def release_worker(self, worker: str) -> None:
        """`worker` stopped: its lease ends now (its records, if any, may be claimed at once)."""
        self._r.hset(self._p + "workers", worker, "0")

    def worker_leases(self) -> dict[str, float]:
        """Every worker with a lease or with records: its lease's end (0.0 when it has none)."""
        raw = self._r.hgetall(self._p + "workers")
        leases = {k.decode(): float(v) for k, v in raw.items()}
        for worker in self._r.smembers(self._p + "dialog_workers"):
            name = worker.decode()
            if name not in leases and self._r.scard(f"{self._p}dialogs:{name}"):
                leases[name] = 0.0
        return leases

    def put_dialogs(self, worker: str, records: Mapping[str, bytes], deleted: Iterable[str]) -> None:
        """Write `records` (call key -> record) as `worker`'s and delete the `deleted` keys."""
        gone = list(deleted)
        if not gone and not records:
            return
        args: list[Any] = [self._p, worker, len(gone), *gone]
        for key, record in records.items():
            args += [key, record]
        self._dialog_put(args=args)

    def dialogs_of(self, worker: str) -> dict[str, bytes]:
        """`worker`'s records by call key."""
        keys = [k.decode() for k in self._r.smembers(f"{self._p}dialogs:{worker}")]
        if not keys:
            return {}
        values = self._r.hmget(self._p + "dialogs", keys)
        return {key: bytes(value) for key, value in zip(keys, values, strict=True) if value is not None}

    def claim_dialogs(self, dead: str, worker: str, now: float) -> dict[str, bytes]:
        """Move `dead`'s records to `worker` if `dead`'s lease ended before `now` (atomic)."""
        flat = self._dialog_claim(args=[self._p, dead, worker, repr(float(now))])
        return {flat[i].decode(): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}
