"""RedisStore, administration side (1/2): the virtual-number pool, allocation from it,
searching sessions with filters and cursors, and updating a session's expiry or TTL.

A mixin of `RedisStore`, the Redis twin of `sqlite_pool`, held to the same contract suite
(tests/unit/test_pairing_pool.py). Keys, under the store's prefix ``{p}``::

    {p}pool                 hash: pool number -> status (active | draining)
    {p}pool:added           hash: pool number -> added_at
    {p}pool:pick            sorted set: the *active* pool numbers, scored by open sessions

The open-session counts themselves are ``{p}vload`` (every virtual number, pool or not), kept
by the session scripts of `redis_store` on create, close, expiry and purge; those scripts
copy each new count into ``{p}pool:pick`` (``ZADD XX``), so the pick order is exact without a
scan. Pool numbers are the operator's own and are stored in clear, as in SQLite.

Allocation is one Lua script: it walks ``{p}pool:pick`` from the least used number, skips the
numbers on which the participant (by HMAC index, through its ``busy`` key) has an active
session, picks among up to 16 ties with a random draw passed in from Python, and inserts the
session with `redis_store`'s own create function, all in one step: two sipmask instances
allocating at once are serialised by Redis, so neither can hand a participant a number the
other has just given it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import redis

from .crypto import NumberVault
from .model import (
    STATUSES, ConflictError, NotFound, PairingError, Participant, Session, new_session,
)
from .records import KEEP, POOL_STATUSES, Page, PoolNumber, SessionFilter, _Keep
from .sqlite_pool import EXHAUSTED

__all__ = ["RedisPoolMixin"]

_CURSOR_PREFIX: Final = "r1:"  # SqliteStore's are "s1:": neither store takes the other's
_SCAN: Final = 500

# True when the busy key `bk` names an open session that is not past its deadline.
_LUA_ACTIVE_HOLDER = r"""
local function active_holder(bk, now)
  local holder = redis.call('GET', bk)
  if not holder then return false end
  local f = redis.call('HMGET', p .. 's:' .. holder, 'status', 'expires_at', 'ttl_s',
                       'last_activity')
  return f[1] == 'open' and not due(f[2], f[3], f[4], now)
end
"""

# ARGV: prefix, the 14 arguments of `create` (va / vb '' to pick), draw A, draw B. At most
# 16 ties are collected, as in SqliteStore.
# Returns create's answer with the virtual numbers used appended on 'ok', or
# {'exhausted', 'A'|'B'} | {'draining', 'A'|'B'}.
_ALLOCATE = _LUA_ACTIVE_HOLDER + r"""
local a = {unpack(ARGV, 2, 15)}
local now = tonumber(a[2])
local pending = {}
local function pick(index, draw)
  local ties, best, start, stop = {}, nil, 0, false
  while not stop do
    local rows = redis.call('ZRANGE', p .. 'pool:pick', start, start + 99, 'WITHSCORES')
    if #rows == 0 then break end
    for i = 1, #rows, 2 do
      local number, used = rows[i], tonumber(rows[i + 1])
      if not active_holder(p .. 'busy:' .. index .. ':' .. number, now) then
        if best ~= nil and (used > best or (used == best and #ties >= 16)) then
          stop = true
          break
        end
        local load = used + (pending[number] or 0)
        if best == nil or load < best then
          best, ties = load, {number}
        elseif load == best and #ties < 16 then
          table.insert(ties, number)
        end
      end
    end
    start = start + 100
  end
  if #ties == 0 then return nil end
  return ties[math.floor(tonumber(draw) * #ties) + 1]
end
for _, side in ipairs({{'A', 6, 7, ARGV[16]}, {'B', 9, 10, ARGV[17]}}) do
  local virtual = a[side[3]]
  if virtual == '' then
    virtual = pick(a[side[2]], side[4])
    if not virtual then return {'exhausted', side[1]} end
    a[side[3]] = virtual
  elseif redis.call('HGET', p .. 'pool', virtual) == 'draining' then
    return {'draining', side[1]}
  end
  pending[virtual] = (pending[virtual] or 0) + 1
end
local out = create(a)
if out[1] == 'ok' then return {'ok', a[7], a[10]} end
return out
"""

# ARGV: prefix, number, now. Returns {'exists'} | {'ok', open sessions}.
_POOL_ADD = r"""
local p, n = ARGV[1], ARGV[2]
if redis.call('HEXISTS', p .. 'pool', n) == 1 then return {'exists'} end
local load = tonumber(redis.call('HGET', p .. 'vload', n) or '0')
redis.call('HSET', p .. 'pool', n, 'active')
redis.call('HSET', p .. 'pool:added', n, ARGV[3])
redis.call('ZADD', p .. 'pool:pick', load, n)
return {'ok', load}
"""

# ARGV: prefix, number, status. Returns 0 when the number is not in the pool.
_POOL_STATUS = r"""
local p, n = ARGV[1], ARGV[2]
if redis.call('HEXISTS', p .. 'pool', n) == 0 then return 0 end
redis.call('HSET', p .. 'pool', n, ARGV[3])
if ARGV[3] == 'active' then
  redis.call('ZADD', p .. 'pool:pick', tonumber(redis.call('HGET', p .. 'vload', n) or '0'), n)
else
  redis.call('ZREM', p .. 'pool:pick', n)
end
return 1
"""

# ARGV: prefix, number, now. Returns {'missing'} | {'busy', sides} | {'ok', status, added, load}.
# Counts sides (a session using the number on both sides counts twice), as SQLite does.
_POOL_REMOVE = r"""
local n, now = ARGV[2], tonumber(ARGV[3])
local status = redis.call('HGET', p .. 'pool', n)
if not status then return {'missing'} end
local sides = 0
for _, id in ipairs(redis.call('SMEMBERS', p .. 'vs:' .. n)) do
  local f = redis.call('HMGET', p .. 's:' .. id, 'status', 'expires_at', 'ttl_s',
                       'last_activity', 'va', 'vb')
  if f[1] == 'open' and not due(f[2], f[3], f[4], now) then
    if f[5] == n then sides = sides + 1 end
    if f[6] == n then sides = sides + 1 end
  end
end
if sides > 0 then return {'busy', sides} end
local added = redis.call('HGET', p .. 'pool:added', n)
redis.call('HDEL', p .. 'pool', n)
redis.call('HDEL', p .. 'pool:added', n)
redis.call('ZREM', p .. 'pool:pick', n)
return {'ok', status, added, redis.call('HGET', p .. 'vload', n) or '0'}
"""

# ARGV: prefix, id, now, expires_at, ttl_s (each 'keep', '' for none, or a value).
# Returns 'missing' | 'inactive' | 'ok'.
_UPDATE = r"""
local id, now = ARGV[2], tonumber(ARGV[3])
local h = p .. 's:' .. id
local f = redis.call('HMGET', h, 'status', 'expires_at', 'ttl_s', 'last_activity')
if not f[1] then return 'missing' end
if f[1] ~= 'open' or due(f[2], f[3], f[4], now) then return 'inactive' end
local ea, ttl = ARGV[4], ARGV[5]
if ea == 'keep' then ea = f[2] end
if ttl == 'keep' then ttl = f[3] end
local seq = redis.call('INCR', p .. 'seq')
redis.call('HSET', h, 'expires_at', ea, 'ttl_s', ttl, 'seq', seq)
redis.call('ZADD', p .. 'changes', seq, id)
local d = nil
if ea ~= '' then d = tonumber(ea) end
if ttl ~= '' then
  local t = tonumber(f[4]) + tonumber(ttl)
  if d == nil or t < d then d = t end
end
if d then redis.call('ZADD', p .. 'deadline', d, id) else redis.call('ZREM', p .. 'deadline', id) end
return 'ok'
"""


def _encode_cursor(cseq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{cseq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        text = ""
    prefix, _, cseq = text.partition(":")
    if f"{prefix}:" != _CURSOR_PREFIX or not cseq.isdigit():
        raise PairingError("cursor is not valid (pass next_cursor of a previous page)")
    return int(cseq)


def _arg(value: float | None | _Keep) -> str:
    if isinstance(value, _Keep):
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

    def _init_pool(self, lua_common: str) -> None:
        """Register the scripts; `lua_common` holds redis_store's helpers and `create`."""
        register = self._r.register_script
        self._allocate = register(lua_common + _ALLOCATE)
        self._pool_add = register(_POOL_ADD)
        self._pool_status = register(_POOL_STATUS)
        self._pool_remove = register(lua_common + _POOL_REMOVE)
        self._update = register(lua_common + _UPDATE)

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
    ) -> Session:
        """Create a session, picking missing virtual numbers from the pool (see `ApiStore`)."""
        session = new_session(
            Participant(number_a, virtual_a or ""), Participant(number_b, virtual_b or ""),
            expires_at=expires_at, ttl_s=ttl_s, metadata=metadata, mode=mode, now=now,
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
        low = "-inf" if cursor is None else f"({_decode_cursor(cursor)}"
        found: list[tuple[int, str, Mapping[bytes, bytes]]] = []
        batch = min(max(limit + 1, 50), _SCAN)
        while len(found) <= limit:
            rows = self._r.zrangebyscore(self._p + zset, low, "+inf", start=0, num=batch,
                                         withscores=True)
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
        return Page(items, _encode_cursor(page[-1][0]) if len(found) > limit else None)

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
        expires_at: float | None | _Keep = KEEP,
        ttl_s: float | None | _Keep = KEEP,
        now: float,
    ) -> Session:
        """Change the expiry and/or TTL of an active session (a change: new seq)."""
        if not isinstance(expires_at, _Keep) and expires_at is not None and expires_at <= now:
            raise PairingError("expiry must be in the future")
        if not isinstance(ttl_s, _Keep) and ttl_s is not None and ttl_s <= 0:
            raise PairingError("ttl must be positive")
        outcome = self._update(args=[self._p, session_id, repr(float(now)), _arg(expires_at),
                                     _arg(ttl_s)])
        if outcome == b"missing":
            raise NotFound(f"no session with id {session_id}")
        if outcome == b"inactive":
            raise ConflictError(f"session {session_id} is not active")
        return self.get_session(session_id)
