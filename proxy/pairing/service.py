"""The pairing service: the store for durability, the cache for the per-call lookup.

The running proxy owns one `PairingService`. It calls `start()` once, `poll()` every ~0.5 s
(so a pairing added by the CLI in another process becomes routable), `lookup()` for every
INVITE, `touch()` when a call uses a session, `close_used()` when a single-use session's call
is answered, `record_cdr()` when a call ends, and `flush()` every ~200 ms and at shutdown.
Touches, closes and CDRs are buffered so a call never waits on a disk write; a crash loses at
most one flush interval of them (a single-use session whose close was lost stays open).

The ``*_async`` variants of the housekeeping calls take a `Runner` and run every store call
through it (app.py passes one that runs them in a worker thread), while the cache, which is
not thread-safe, is only ever touched on the caller's event loop. A store across the network
(Redis) then never stalls the SIP side, not even while it is unreachable.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from .cache import PairingCache
from .model import Cdr, Match, NotFound, Participant, Session
from .normalize import try_normalize
from .policy import DEFAULT_POLICY, SessionPolicy
from .stores.base import PairingStore

__all__ = ["PairingService"]

_log = structlog.get_logger("proxy.pairing")

Clock = Callable[[], float]
Runner = Callable[..., Awaitable[Any]]
"""``run(fn, *args)``: call ``fn(*args)`` somewhere (a thread) and await its result."""


class PairingService:
    """Glue between a `PairingStore` (durable, shared between processes) and `PairingCache`."""

    def __init__(
        self,
        store: PairingStore,
        cache: PairingCache | None = None,
        clock: Clock = time.time,
        *,
        region: str = "US",
    ) -> None:
        """`clock` returns epoch seconds (it must agree with `expires_at`); `region` is used
        by `resolve` to read national numbers."""
        self.store = store
        self.cache = cache if cache is not None else PairingCache()
        self.clock = clock
        self.region = region
        self._seq = 0
        #: the store's epoch when the cache was loaded (None: not loaded yet)
        self._epoch: str | None = None
        #: times the cache was reloaded because the store's history changed under it
        self.resyncs = 0
        self._pending_cdrs: list[Cdr] = []
        self._pending_touches: dict[str, float] = {}
        self._pending_closes: dict[str, float] = {}

    # -- cache upkeep --------------------------------------------------------------------------

    def start(self) -> int:
        """Load the active sessions into the cache; return how many."""
        epoch = self.store.epoch()
        sessions, self._seq = self.store.load_active(self.clock())
        self.cache.load(sessions)
        self._epoch = epoch
        return len(self.cache)

    def _reload(self, epoch: str, loaded: tuple[list[Session], int]) -> int:
        """The store's history changed under the cache (data lost or replaced): what the cache
        holds and the feed position mean nothing now; replace both with what the store holds."""
        sessions, self._seq = loaded
        dropped = len(self.cache)
        self.cache.load(sessions)
        self._epoch = epoch
        self.resyncs += 1
        _log.warning("store.resynced", reason="the store's history changed (data lost or replaced)",
                     sessions_before=dropped, sessions_now=len(self.cache))
        return len(sessions)

    def poll(self) -> int:
        """Apply every change made to the store since the last poll (by any process); return
        how many sessions changed. A store whose data was lost or replaced since (a Redis that
        came back empty) is loaded again whole."""
        epoch = self.store.epoch()
        if epoch != self._epoch:
            return self._reload(epoch, self.store.load_active(self.clock()))
        applied = 0
        while True:
            sessions, self._seq = self.store.changes_since(self._seq)
            for session in sessions:
                self._apply(session)
            applied += len(sessions)
            if not sessions:
                return applied

    def _apply(self, session: Session) -> None:
        """Apply a change read from the store, unless it would route again a single-use
        session whose close is still waiting for the flush."""
        if session.id not in self._pending_closes:
            self.cache.apply(session)

    def expire(self, now: float | None = None) -> list[str]:
        """Mark sessions past their deadline expired in the store and drop them from memory."""
        now = self.clock() if now is None else now
        self.flush()  # inactivity deadlines must see the latest touches
        expired = self.store.expire_due(now)
        self.cache.expire_due(now)
        self.poll()
        return expired

    def purge(self, retention_s: float, now: float | None = None) -> tuple[int, int]:
        """Delete sessions closed or expired, and CDRs ended, more than `retention_s` ago.
        Return (sessions deleted, CDRs deleted)."""
        now = self.clock() if now is None else now
        return self.store.purge(older_than=now - retention_s)

    async def poll_async(self, run: Runner) -> int:
        """`poll`, reading the store through `run`. A session applied to the cache while a read
        was in flight (a close from the API) makes the poll read again rather than apply a
        state older than what the cache holds."""
        epoch = await run(self.store.epoch)
        if epoch != self._epoch:
            return self._reload(epoch, await run(self.store.load_active, self.clock()))
        applied = 0
        while True:
            generation = self.cache.applied
            sessions, seq = await run(self.store.changes_since, self._seq)
            if generation != self.cache.applied:
                continue
            self._seq = seq
            for session in sessions:
                self._apply(session)
            applied += len(sessions)
            if not sessions:
                return applied

    async def flush_async(self, run: Runner) -> int:
        """`flush`, writing through `run`. On a store error the whole batch is kept for the
        next flush (touches are idempotent, so writing them twice is harmless)."""
        if self._pending_closes:
            self._closed(await run(self._write_closes, dict(self._pending_closes)))
        touches, self._pending_touches = self._pending_touches, {}
        cdrs, self._pending_cdrs = self._pending_cdrs, []
        if not touches and not cdrs:
            return 0
        try:
            await run(self.store.touch_many, touches)
            return int(await run(self.store.record_cdrs, cdrs))
        except Exception:
            for session_id, when in self._pending_touches.items():
                touches[session_id] = max(when, touches.get(session_id, when))
            self._pending_touches = touches
            self._pending_cdrs[:0] = cdrs
            raise

    async def expire_async(self, run: Runner, now: float | None = None) -> list[str]:
        """`expire`, with every store call through `run`."""
        now = self.clock() if now is None else now
        await self.flush_async(run)
        expired: list[str] = await run(self.store.expire_due, now)
        self.cache.expire_due(now)
        await self.poll_async(run)
        return expired

    async def purge_async(
        self, run: Runner, retention_s: float, now: float | None = None
    ) -> tuple[int, int]:
        """`purge` through `run`."""
        now = self.clock() if now is None else now
        result: tuple[int, int] = await run(self.store.purge, now - retention_s)
        return result

    # -- per call ------------------------------------------------------------------------------

    def lookup(self, caller: str, dialed: str, now: float | None = None) -> Match | None:
        """The Match for `caller` (E.164) dialing `dialed` (E.164), or None."""
        return self.cache.lookup(caller, dialed, self.clock() if now is None else now)

    def resolve(self, caller: str, dialed: str, now: float | None = None) -> Match | None:
        """Like `lookup`, for numbers as they appear in SIP (normalised first; unparsable
        numbers simply do not match)."""
        caller_e164 = try_normalize(caller, self.region)
        dialed_e164 = try_normalize(dialed, self.region)
        if caller_e164 is None or dialed_e164 is None:
            return None
        return self.lookup(caller_e164, dialed_e164, now)

    def touch(self, session_id: str, now: float | None = None) -> None:
        """Record a call on a session: restarts its inactivity TTL now, in the store at flush."""
        now = self.clock() if now is None else now
        if self.cache.touch(session_id, now):
            self._pending_touches[session_id] = now

    def close_used(self, session_id: str, now: float | None = None) -> None:
        """A single-use session's call was answered: stop routing the session now (later
        calls get the uniform answer) and close it in the store at the next flush."""
        self.cache.remove(session_id)
        self._pending_closes[session_id] = self.clock() if now is None else now

    def _write_closes(self, closes: Mapping[str, float]) -> list[str]:
        """Close in the store the sessions `close_used` named (session id -> when); return
        their ids. Until then they stay pending (an error leaves them for the next flush;
        closing twice is harmless) and the change feed does not route them again."""
        for session_id, when in closes.items():
            try:
                self.store.close_session(session_id, when)
            except NotFound:
                pass  # purged meanwhile: nothing left to close
        return list(closes)

    def _closed(self, session_ids: list[str]) -> None:
        for session_id in session_ids:
            self._pending_closes.pop(session_id, None)

    def record_cdr(self, cdr: Cdr) -> None:
        """Buffer a CDR; it reaches the store at the next `flush`."""
        self._pending_cdrs.append(cdr)

    def flush(self) -> int:
        """Write buffered touches and CDRs; return the number of CDRs written. On a store error
        the batch is kept for the next flush and the error propagates."""
        if self._pending_closes:
            self._closed(self._write_closes(dict(self._pending_closes)))
        touches, self._pending_touches = self._pending_touches, {}
        cdrs, self._pending_cdrs = self._pending_cdrs, []
        try:
            self.store.touch_many(touches)
        except Exception:
            touches.update(self._pending_touches)
            self._pending_touches = touches
            self._pending_cdrs[:0] = cdrs
            raise
        try:
            return self.store.record_cdrs(cdrs)
        except Exception:
            self._pending_cdrs[:0] = cdrs
            raise

    @property
    def pending(self) -> int:
        """Number of CDRs waiting for `flush`."""
        return len(self._pending_cdrs)

    # -- administration ------------------------------------------------------------------------

    def create(
        self,
        a: Participant,
        b: Participant,
        *,
        expires_at: float | None = None,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "voice",
        now: float | None = None,
        policy: SessionPolicy = DEFAULT_POLICY,
    ) -> Session:
        """Create a session in the store and make it routable at once."""
        session = self.store.create_session(
            a, b, expires_at=expires_at, ttl_s=ttl_s, metadata=metadata, mode=mode,
            now=self.clock() if now is None else now, policy=policy,
        )
        self.cache.apply(session)
        return session

    def close(self, session_id: str, now: float | None = None) -> Session:
        """Close a session in the store and stop routing it at once."""
        session = self.store.close_session(session_id, self.clock() if now is None else now)
        self.cache.apply(session)
        return session
