"""RedisStore, administration side (1/2): the virtual-number pool, allocation from it,
searching sessions with filters and cursors, and updating a session's expiry or TTL.

A mixin of `RedisStore`, the Redis twin of the SQLite store's `pool`, held to the same
contract suite (tests/unit/test_pairing_pool.py). Keys, under the store's prefix ``{p}``::

    {p}pool                 hash: pool number -> status (active | draining)
    {p}pool:added           hash: pool number -> added_at
    {p}pool:pick            sorted set: the *active* pool numbers, scored by open sessions

The open-session counts themselves are ``{p}vload`` (every virtual number, pool or not), kept
by the session scripts of `store` on create, close, expiry and purge; those scripts copy each
new count into ``{p}pool:pick`` (``ZADD XX``), so the pick order is exact without a scan.
Pool numbers are the operator's own and are stored in clear, as in SQLite.

Allocation is one Lua script: it walks ``{p}pool:pick`` from the least used number, skips the
numbers on which the participant (by HMAC index, through its ``busy`` key) has an active
session, picks among up to 16 ties with a random draw passed in from Python, and inserts the
session with the store's own create function (create_function.lua), all in one step: two
sipmask instances allocating at once are serialised by Redis, so neither can hand a
participant a number the other has just given it.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, cast

import redis

from ...crypto import NumberVault
from ...model import (
    STATUSES,
    ConflictError,
    NotFound,
    PairingError,
    Participant,
    Session,
    new_session,
)
from ...policy import DEFAULT_POLICY, SessionPolicy, store_text
from ...records import KEEP, POOL_STATUSES, Keep, Page, PoolNumber, SessionFilter
from ..base import EXHAUSTED, check_update, decode_cursor, encode_cursor
from .scripts import lua

__all__ = ["RedisPoolMixin"]

_CURSOR_PREFIX: Final = "r1:"  # SqliteStore's are "s1:": neither store takes the other's
_SCAN: Final = 500

_ALLOCATE: Final = lua("common", "create_function", "active_holder", "allocate")
_POOL_ADD: Final = lua("pool_add")
_POOL_STATUS: Final = lua("pool_status")
_POOL_REMOVE: Final = lua("common", "pool_remove")
_UPDATE: Final = lua("common", "update")


def _arg(value: float | None | Keep) -> str:
    if isinstance(value, Keep):
        return "keep"
    return "" if value is None else repr(float(value))


class RedisPoolMixin:
    """Pool, allocation, search and update for `RedisStore` (see the module docstring)."""

    # Provided by RedisStore.
    _r: redis.Redis
    _p: str
    _vault: NumberVault
    _new_session: Callable[..., Session]
    _session_args: Callable[[Session], list[str | bytes]]
    _check_outcome: Callable[[Sequence[Any], Session], None]
    _to_session: Callable[[str, Mapping[bytes, bytes]], Session]
    get_session: Callable[[str], Session]

    alloc_random: random.Random | None = None
    """Source of the tie-breaking draws (tests set a seeded one); None: made on first use."""

    def _init_pool(self) -> None:
        """Register the scripts."""
        register = self._r.register_script
        self._allocate = register(_ALLOCATE)
        self._pool_add = register(_POOL_ADD)
        self._pool_status = register(_POOL_STATUS)
        self._pool_remove = register(_POOL_REMOVE)
        self._update = register(_UPDATE)

    def ping(self) -> None:
        """Raise `redis.RedisError` if the server cannot be reached."""
        self._r.ping()

    # -- pool ----------------------------------------------------------------------------------

    def add_pool_number(self, number: str, now: float) -> PoolNumber:
        """Add `number` (E.164) to the pool, active."""
        result = self._pool_add(args=[self._p, number, repr(float(now))])
        if result[0] == b"exists":
            raise ConflictError(f"virtual number {number} is already in the pool")
        return PoolNumber(number, "active", now, int(result[1]))

    def get_pool_number(self, number: str) -> PoolNumber:
        """One pool number; `NotFound` if it is not in the pool."""
        pipe = self._r.pipeline(transaction=True)
        pipe.hget(self._p + "pool", number)
        pipe.hget(self._p + "pool:added", number)
        pipe.hget(self._p + "vload", number)
        status, added, load = pipe.execute()
        if status is None:
            raise NotFound(f"virtual number {number} is not in the pool")
        return PoolNumber(number, status.decode(), float(added), int(load or 0))

    def list_pool_numbers(self, status: str | None = None) -> list[PoolNumber]:
        """The pool in number order, optionally of one status."""
        if status is not None and status not in POOL_STATUSES:
            raise PairingError(f"status must be one of {', '.join(POOL_STATUSES)}")
        pipe = self._r.pipeline(transaction=True)
        pipe.hgetall(self._p + "pool")
        pipe.hgetall(self._p + "pool:added")
        pipe.hgetall(self._p + "vload")
        statuses, added, loads = pipe.execute()
        return [
            PoolNumber(raw.decode(), state.decode(), float(added[raw]), int(loads.get(raw, 0)))
            for raw, state in sorted(statuses.items())
            if status is None or state.decode() == status
        ]

    def set_pool_status(self, number: str, status: str) -> PoolNumber:
        """Drain or re-activate a pool number."""
        if status not in POOL_STATUSES:
            raise PairingError(f"status must be one of {', '.join(POOL_STATUSES)}")
        if not self._pool_status(args=[self._p, number, status]):
            raise NotFound(f"virtual number {number} is not in the pool")
        return self.get_pool_number(number)

    def remove_pool_number(self, number: str, now: float) -> PoolNumber:
        """Remove a pool number no active session uses."""
        result = self._pool_remove(args=[self._p, number, repr(float(now))])
        if result[0] == b"missing":
            raise NotFound(f"virtual number {number} is not in the pool")
        if result[0] == b"busy":
            raise ConflictError(
                f"virtual number {number} is still used by {int(result[1])} active session(s); "
                "drain it and close them or wait for them to end"
            )
        return PoolNumber(number, result[1].decode(), float(result[2]), int(result[3]))

    # -- allocation ----------------------------------------------------------------------------

    def allocate_session(
        self,
        number_a: str,
        number_b: str,
        *,
        virtual_a: str | None = None,
        virtual_b: str | None = None,
        expires_at: float | None = None,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "voice",
        now: float,
        policy: SessionPolicy = DEFAULT_POLICY,
    ) -> Session:
        """Create a session, picking missing virtual numbers from the pool (see `ApiStore`)."""
        session = new_session(
            Participant(number_a, virtual_a or ""), Participant(number_b, virtual_b or ""),
            expires_at=expires_at, ttl_s=ttl_s, metadata=metadata, mode=mode, now=now,
            policy=policy,
        )
        rng = self.alloc_random
        if rng is None:
            rng = self.alloc_random = random.Random()
        result = self._allocate(args=[
            self._p, *self._session_args(session), repr(rng.random()), repr(rng.random()),
        ])
        outcome = result[0]
        if outcome == b"exhausted":
            raise ConflictError(
                f"{EXHAUSTED} ({result[1].decode()}): no active pool number is free for it")
        if outcome == b"draining":
            virtual = virtual_a if result[1] == b"A" else virtual_b
            raise ConflictError(f"virtual number {virtual} is draining and takes no new sessions")
        if outcome == b"ok":
            return dataclasses.replace(
                session, a=Participant(number_a, result[1].decode()),
                b=Participant(number_b, result[2].decode()),
            )
        self._check_outcome(result, session)
        raise AssertionError(f"unexpected allocation outcome {outcome!r}")  # pragma: no cover

    # -- search --------------------------------------------------------------------------------

    def find_sessions(
        self, where: SessionFilter, *, now: float, limit: int = 100, cursor: str | None = None
    ) -> Page[Session]:
        """Sessions matching `where`, in creation order, one page at a time.

        Walks the smallest sorted set that holds every match (the participant's own, else the
        status's, else all sessions) in creation order and filters the raw fields, so only
        the sessions returned are decrypted.
        """
        match = self._matcher(where, now)
        if where.participant is not None:
            zset = f"p:{self._vault.index(where.participant)}"
        elif where.status in ("open", "closed"):
            zset = f"st:{where.status}"
        else:
            zset = "all"
        low = "-inf" if cursor is None else f"({decode_cursor(_CURSOR_PREFIX, cursor)}"
        found: list[tuple[int, str, Mapping[bytes, bytes]]] = []
        batch = min(max(limit + 1, 50), _SCAN)
        while len(found) <= limit:
            rows = cast(list[tuple[bytes, float]], self._r.zrangebyscore(
                self._p + zset, low, "+inf", start=0, num=batch, withscores=True))
            pipe = self._r.pipeline(transaction=False)
            for raw_id, _ in rows:
                pipe.hgetall(f"{self._p}s:{raw_id.decode()}")
            for (raw_id, score), fields in zip(rows, pipe.execute() if rows else []):
                if fields and match(fields):
                    found.append((int(score), raw_id.decode(), fields))
                    if len(found) > limit:
                        break
            if len(rows) < batch:
                break
            low = f"({int(rows[-1][1])}"
        page = found[:limit]
        items = [self._to_session(session_id, fields) for _, session_id, fields in page]
        more = len(found) > limit
        return Page(items, encode_cursor(_CURSOR_PREFIX, page[-1][0]) if more else None)

    def _matcher(self, where: SessionFilter, now: float) -> Callable[[Mapping[bytes, bytes]], bool]:
        """A test of a session's raw hash fields against `where` (same rules as SQLite)."""
        if where.status is not None and where.status not in STATUSES:
            raise PairingError(f"status must be one of {', '.join(STATUSES)}")
        for key, _ in where.metadata:
            if '"' in key or "\\" in key:
                raise PairingError("metadata keys cannot contain quotes or backslashes")
        index = None if where.participant is None else self._vault.index(where.participant).encode()
        virtual = None if where.virtual is None else where.virtual.encode()

        def active(f: Mapping[bytes, bytes]) -> bool:
            if f[b"status"] != b"open":
                return False
            ea, ttl = f[b"expires_at"], f[b"ttl_s"]
            return (ea == b"" or float(ea) > now) and (
                ttl == b"" or float(f[b"last_activity"]) + float(ttl) > now)

        def matches(f: Mapping[bytes, bytes]) -> bool:
            status = where.status
            if status == "open" and not active(f):
                return False
            if status == "closed" and f[b"status"] != b"closed":
                return False
            if status == "expired" and (f[b"status"] == b"closed" or active(f)):
                return False
            if index is not None and index not in (f[b"ia"], f[b"ib"]):
                return False
            if virtual is not None and virtual not in (f[b"va"], f[b"vb"]):
                return False
            created = float(f[b"created_at"])
            if where.created_from is not None and created < where.created_from:
                return False
            if where.created_to is not None and created >= where.created_to:
                return False
            if where.metadata:
                meta = json.loads(f[b"metadata"])
                # Only string values match, as json_extract(...) = text does in SQLite.
                return all(isinstance(meta.get(k), str) and meta[k] == v
                           for k, v in where.metadata)
            return True

        return matches

    # -- update --------------------------------------------------------------------------------

    def update_session(
        self,
        session_id: str,
        *,
        expires_at: float | None | Keep = KEEP,
        ttl_s: float | None | Keep = KEEP,
        now: float,
        policy: SessionPolicy | Keep = KEEP,
    ) -> Session:
        """Change the expiry, TTL and/or policy of an active session (a change: new seq)."""
        check_update(expires_at, ttl_s, now)
        outcome = self._update(args=[
            self._p, session_id, repr(float(now)), _arg(expires_at), _arg(ttl_s),
            "keep" if isinstance(policy, Keep) else store_text(policy),
        ])
        if outcome == b"missing":
            raise NotFound(f"no session with id {session_id}")
        if outcome == b"inactive":
            raise ConflictError(f"session {session_id} is not active")
        return self.get_session(session_id)
