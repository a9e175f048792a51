"""Redis store: one pairing table shared by several sipmask workers.

Same contract as `SqliteStore` (see `store.PairingStore`), laid out in Redis under one key
prefix (default ``sipmask:``)::

    {p}meta                 hash: key_check (HMAC of a label under the store's key), rotation
    {p}seq                  counter: the change sequence (INCR)
    {p}s:{id}               hash: one session; numbers as AES-GCM blobs (na, nb) plus their
                            HMAC index (ia, ib); kc = key check of the key that wrote it
    {p}busy:{index}:{virtual}  string: id of the open session where that participant (by HMAC
                            index, never the number) dials that virtual number
    {p}all, {p}st:{status}  sorted sets of ids scored by creation seq (listing, paging)
    {p}changes              sorted set: id scored by the seq of its latest change
    {p}deadline             sorted set: open ids with a finite deadline, scored by it
    {p}ended                sorted set: closed/expired ids scored by ended_at (purge)
    {p}cdr:seq, {p}cdr      counter and hash id -> CDR (JSON, tokens only)
    {p}cdr:ids, {p}cdr:ended, {p}cdr:s:{session}  sorted sets of CDR ids (order, purge, session)
    {p}p:{index}            sorted set: every session of a participant (HMAC index), by creation
    {p}vload                hash: virtual number -> open sessions using it (one per side)
    {p}vs:{virtual}         set: ids of the open sessions using that virtual number

The pool, tokens, audit log and idempotency records (`redis_admin`) have their own keys,
listed there. ``{p}meta`` also holds ``schema``: 2 once the participant index and the
open-session counts above exist (`_migrate` builds them for a table written before); each
session's ``counted`` field says whether it is in those counts.

Every check-then-write runs as one Lua script, so two workers cannot both pass the conflict
check and a poller never sees half of a change. Encryption happens here, in the client:
Redis only ever holds ciphertexts, HMACs and tokens.

Timestamps are written as Python ``repr`` strings and compared with ``tonumber`` in Lua;
numbers handed from Lua to ``redis.call`` are formatted with 17 significant digits, so epoch
seconds keep their exact value both ways. Scripts build key names from the prefix, so the
store needs one Redis (standalone or Sentinel), not a Redis Cluster.

Methods are synchronous (redis-py's blocking client, thread-safe through its pool); the
running proxy calls them from a worker thread (app.py), never on the per-call path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import redis

from .crypto import NumberVault
from .model import (
    MODES, STATUSES, Cdr, ConflictError, NotFound, PairingError, Participant, Session, new_session,
)
from .redis_admin import RedisAdminMixin
from .redis_pool import RedisPoolMixin
from .sqlite_store import StoreError

__all__ = ["RedisStore", "DEFAULT_PREFIX"]

DEFAULT_PREFIX = "sipmask:"
_KEY_CHECK_LABEL = "sipmask:key-check"  # same label as SqliteStore's
_PAGE = 1000

# Shared Lua helpers, prepended to the scripts that change a session's status.
_LUA_COMMON = r"""
local p = ARGV[1]
local function due(ea, ttl, la, now)
  if ea and ea ~= '' and tonumber(ea) <= now then return true end
  if ttl and ttl ~= '' and tonumber(la) + tonumber(ttl) <= now then return true end
  return false
end
-- Open sessions per virtual number, mirrored into the pool's pick order when it is active.
local function vload_add(virtual, delta)
  local n = redis.call('HINCRBY', p .. 'vload', virtual, delta)
  if n <= 0 then redis.call('HDEL', p .. 'vload', virtual) end
  redis.call('ZADD', p .. 'pool:pick', 'XX', n, virtual)
end
local function set_status(id, status, now_s)
  local h = p .. 's:' .. id
  local f = redis.call('HMGET', h, 'ia', 'va', 'ib', 'vb', 'cseq', 'counted')
  local seq = redis.call('INCR', p .. 'seq')
  redis.call('HSET', h, 'status', status, 'ended_at', now_s, 'seq', seq, 'counted', '0')
  redis.call('ZREM', p .. 'st:open', id)
  redis.call('ZADD', p .. 'st:' .. status, f[5], id)
  redis.call('ZADD', p .. 'changes', seq, id)
  redis.call('ZREM', p .. 'deadline', id)
  redis.call('ZADD', p .. 'ended', now_s, id)
  for _, pair in ipairs({{f[1], f[2]}, {f[3], f[4]}}) do
    local bk = p .. 'busy:' .. pair[1] .. ':' .. pair[2]
    if redis.call('GET', bk) == id then redis.call('DEL', bk) end
    if f[6] == '1' then vload_add(pair[2], -1) end
    redis.call('SREM', p .. 'vs:' .. pair[2], id)
  end
end
"""

# Inserts an open session unless a participant is busy on its virtual number. `a` holds
# ARGV[2..15] of _CREATE: id, now, kc, mode, na, ia, va, nb, ib, vb, expires_at, ttl_s,
# metadata, deadline. Returns {'ok'} | {'conflict', 'A'|'B', holder id} | {'key'} | {'rotating'}
_LUA_CREATE_FN = r"""
local function create(a)
local meta = redis.call('HMGET', p .. 'meta', 'key_check', 'rotation')
if meta[2] then return {'rotating'} end
if meta[1] ~= a[3] then return {'key'} end
local id, now_s = a[1], a[2]
local now = tonumber(now_s)
local sides = {{'A', a[6], a[7]}, {'B', a[9], a[10]}}
local stale = {}
for _, side in ipairs(sides) do
  local bk = p .. 'busy:' .. side[2] .. ':' .. side[3]
  local holder = redis.call('GET', bk)
  if holder then
    local f = redis.call('HMGET', p .. 's:' .. holder, 'status', 'expires_at', 'ttl_s',
                         'last_activity')
    if f[1] == 'open' then
      if due(f[2], f[3], f[4], now) then
        table.insert(stale, holder)
      else
        return {'conflict', side[1], holder}
      end
    else
      redis.call('DEL', bk)
    end
  end
end
for _, holder in ipairs(stale) do
  if redis.call('HGET', p .. 's:' .. holder, 'status') == 'open' then
    set_status(holder, 'expired', now_s)
  end
end
local seq = redis.call('INCR', p .. 'seq')
redis.call('HSET', p .. 's:' .. id, 'seq', seq, 'cseq', seq, 'status', 'open', 'mode', a[4],
  'na', a[5], 'ia', a[6], 'va', a[7], 'nb', a[8], 'ib', a[9], 'vb', a[10],
  'created_at', now_s, 'expires_at', a[11], 'ttl_s', a[12], 'last_activity', now_s,
  'ended_at', '', 'metadata', a[13], 'kc', a[3], 'counted', '1')
redis.call('ZADD', p .. 'all', seq, id)
redis.call('ZADD', p .. 'st:open', seq, id)
redis.call('ZADD', p .. 'changes', seq, id)
if a[14] ~= '' then redis.call('ZADD', p .. 'deadline', a[14], id) end
for _, side in ipairs(sides) do
  redis.call('SET', p .. 'busy:' .. side[2] .. ':' .. side[3], id)
  redis.call('ZADD', p .. 'p:' .. side[2], seq, id)
  vload_add(side[3], 1)
  redis.call('SADD', p .. 'vs:' .. side[3], id)
end
return {'ok'}
end
"""

# ARGV: prefix, then _LUA_CREATE_FN's arguments.
_CREATE = _LUA_COMMON + _LUA_CREATE_FN + r"""
return create({unpack(ARGV, 2, 15)})
"""

# ARGV: prefix, id, now. Returns 0 for an unknown id, 1 otherwise.
_CLOSE = _LUA_COMMON + r"""
local status = redis.call('HGET', p .. 's:' .. ARGV[2], 'status')
if not status then return 0 end
if status == 'open' then set_status(ARGV[2], 'closed', ARGV[3]) end
return 1
"""

# ARGV: prefix, now. Returns the ids expired, in creation order.
_EXPIRE_DUE = _LUA_COMMON + r"""
local ids = redis.call('ZRANGEBYSCORE', p .. 'deadline', '-inf', ARGV[2])
local rows = {}
for _, id in ipairs(ids) do
  table.insert(rows, {id, tonumber(redis.call('HGET', p .. 's:' .. id, 'cseq'))})
end
table.sort(rows, function(x, y) return x[2] < y[2] end)
local out = {}
for _, row in ipairs(rows) do
  set_status(row[1], 'expired', ARGV[2])
  table.insert(out, row[1])
end
return out
"""

# ARGV: prefix, then (id, now) pairs. Moves last_activity (never backwards) and the deadline.
_TOUCH = r"""
local p = ARGV[1]
for i = 2, #ARGV, 2 do
  local id, now_s = ARGV[i], ARGV[i + 1]
  local h = p .. 's:' .. id
  local f = redis.call('HMGET', h, 'status', 'last_activity', 'expires_at', 'ttl_s')
  if f[1] == 'open' and tonumber(now_s) > tonumber(f[2]) then
    redis.call('HSET', h, 'last_activity', now_s)
    if f[4] ~= '' then
      local d = tonumber(now_s) + tonumber(f[4])
      if f[3] ~= '' and tonumber(f[3]) < d then d = tonumber(f[3]) end
      redis.call('ZADD', p .. 'deadline', d, id)
    end
  end
end
return 0
"""

# ARGV: prefix, seq, limit. Returns {id, seq, fields...} flattened per session, oldest first.
_CHANGES = r"""
local p = ARGV[1]
local rows = redis.call('ZRANGEBYSCORE', p .. 'changes', '(' .. ARGV[2], '+inf', 'WITHSCORES',
                        'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i = 1, #rows, 2 do
  table.insert(out, {rows[i], rows[i + 1], redis.call('HGETALL', p .. 's:' .. rows[i])})
end
return out
"""

# ARGV: prefix, then (json, session id or '', ended_at) triples. Returns how many written.
_RECORD_CDRS = r"""
local p = ARGV[1]
local n = 0
for i = 2, #ARGV, 3 do
  local id = redis.call('INCR', p .. 'cdr:seq')
  redis.call('HSET', p .. 'cdr', id, ARGV[i])
  redis.call('ZADD', p .. 'cdr:ids', id, id)
  redis.call('ZADD', p .. 'cdr:ended', ARGV[i + 2], id)
  if ARGV[i + 1] ~= '' then redis.call('ZADD', p .. 'cdr:s:' .. ARGV[i + 1], id, id) end
  n = n + 1
end
return n
"""

# ARGV: prefix, older_than, batch. Returns {sessions deleted, CDRs deleted} for one batch.
_PURGE = r"""
local p = ARGV[1]
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', p .. 'ended', '-inf', '(' .. ARGV[2], 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local ix = redis.call('HMGET', p .. 's:' .. id, 'ia', 'ib')
  for _, index in ipairs(ix) do
    if index then redis.call('ZREM', p .. 'p:' .. index, id) end
  end
  redis.call('DEL', p .. 's:' .. id)
  for _, z in ipairs({'all', 'st:closed', 'st:expired', 'changes', 'ended'}) do
    redis.call('ZREM', p .. z, id)
  end
end
local cdrs = redis.call('ZRANGEBYSCORE', p .. 'cdr:ended', '-inf', '(' .. ARGV[2],
                        'LIMIT', 0, limit)
for _, id in ipairs(cdrs) do
  local raw = redis.call('HGET', p .. 'cdr', id)
  if raw then
    local sid = cjson.decode(raw)['session_id']
    if type(sid) == 'string' then redis.call('ZREM', p .. 'cdr:s:' .. sid, id) end
  end
  redis.call('HDEL', p .. 'cdr', id)
  redis.call('ZREM', p .. 'cdr:ids', id)
  redis.call('ZREM', p .. 'cdr:ended', id)
end
return {#ids, #cdrs}
"""

# ARGV: prefix, id, old kc, new kc, na, ia, nb, ib. Re-keys one session unless already done.
_ROTATE_ONE = r"""
local p, id = ARGV[1], ARGV[2]
local h = p .. 's:' .. id
local f = redis.call('HMGET', h, 'kc', 'status', 'ia', 'va', 'ib', 'vb', 'cseq')
if f[1] ~= ARGV[3] then return 0 end
for _, move in ipairs({{f[3], ARGV[6]}, {f[5], ARGV[8]}}) do
  redis.call('ZREM', p .. 'p:' .. move[1], id)
  redis.call('ZADD', p .. 'p:' .. move[2], f[7], id)
end
if f[2] == 'open' then
  for _, side in ipairs({{f[3], f[4], ARGV[6]}, {f[5], f[6], ARGV[8]}}) do
    local old = p .. 'busy:' .. side[1] .. ':' .. side[2]
    if redis.call('GET', old) == id then
      redis.call('DEL', old)
      redis.call('SET', p .. 'busy:' .. side[3] .. ':' .. side[2], id)
    end
  end
end
redis.call('HSET', h, 'kc', ARGV[4], 'na', ARGV[5], 'ia', ARGV[6], 'nb', ARGV[7], 'ib', ARGV[8])
return 1
"""

SCHEMA = 2
"""Layout version written to ``{p}meta`` (1: before the pool; the key had no ``schema``)."""

# ARGV: prefix, creation seq to start after, batch size. One batch of the migration to
# schema 2 (see `_migrate`): indexes each session by participant and counts the open ones
# not yet counted. Returns the creation seq of the last session seen, or false when done.
_MIGRATE_BATCH = _LUA_COMMON + r"""
local rows = redis.call('ZRANGEBYSCORE', p .. 'all', '(' .. ARGV[2], '+inf', 'WITHSCORES',
                        'LIMIT', 0, tonumber(ARGV[3]))
if #rows == 0 then return false end
for i = 1, #rows, 2 do
  local id = rows[i]
  local h = p .. 's:' .. id
  local f = redis.call('HMGET', h, 'status', 'ia', 'va', 'ib', 'vb', 'cseq', 'counted')
  if f[1] then
    local count = f[1] == 'open' and not f[7]
    for _, side in ipairs({{f[2], f[3]}, {f[4], f[5]}}) do
      redis.call('ZADD', p .. 'p:' .. side[1], f[6], id)
      if count then
        vload_add(side[2], 1)
        redis.call('SADD', p .. 'vs:' .. side[2], id)
      end
    end
    if not f[7] then redis.call('HSET', h, 'counted', count and '1' or '0') end
  end
end
return rows[#rows]
"""


def _num(value: float | None) -> str:
    """A timestamp as stored: exact ``repr`` text, '' for None."""
    return "" if value is None else repr(float(value))


def _opt(raw: bytes) -> float | None:
    return None if raw == b"" else float(raw)


class RedisStore(RedisPoolMixin, RedisAdminMixin):
    """Sessions and CDRs in Redis, numbers encrypted; several processes share one table.

    `client` is a ready ``redis.Redis`` (bytes responses); `from_url` builds one. The store
    refuses a key that does not match the one the data was written with, and refuses to
    open while a key rotation is unfinished (unless `rotating`, which `rotate_key` uses).
    """

    def __init__(
        self,
        client: redis.Redis,
        vault: NumberVault,
        *,
        prefix: str = DEFAULT_PREFIX,
        rotating: bool = False,
    ) -> None:
        self._r = client
        self._vault = vault
        self._p = prefix
        self._kc = vault.index(_KEY_CHECK_LABEL)
        self._create = client.register_script(_CREATE)
        self._close = client.register_script(_CLOSE)
        self._expire = client.register_script(_EXPIRE_DUE)
        self._touch = client.register_script(_TOUCH)
        self._changes = client.register_script(_CHANGES)
        self._record = client.register_script(_RECORD_CDRS)
        self._purge = client.register_script(_PURGE)
        self._rotate_one = client.register_script(_ROTATE_ONE)
        self._check_key(rotating)
        self._migrate(client.register_script(_MIGRATE_BATCH))
        self._init_pool(_LUA_COMMON + _LUA_CREATE_FN)
        self._init_admin()

    @classmethod
    def from_url(
        cls, url: str, vault: NumberVault, *, prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 5.0, rotating: bool = False,
    ) -> RedisStore:
        """Connect to `url` (``redis://``, ``rediss://``, ``unix://``)."""
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
        return cls(client, vault, prefix=prefix, rotating=rotating)

    def close(self) -> None:
        """Close the client's connections."""
        self._r.close()

    def _check_key(self, rotating: bool) -> None:
        meta = self._p + "meta"
        self._r.hsetnx(meta, "key_check", self._kc)
        stored, rotation = self._r.hmget(meta, ["key_check", "rotation"])
        if stored != self._kc.encode():
            raise StoreError("the key does not match this Redis store")
        if rotation is not None and not rotating:
            raise StoreError(
                "a key rotation of this Redis store is unfinished; run `sipmask keys rotate` "
                "again with the same keys to finish it"
            )

    def _migrate(self, batch: Any) -> None:
        """Bring a table written before the pool (schema 1) to schema 2, in batches so Redis
        is never blocked for long. Each session records whether it is counted in the
        open-session counts (``counted``), so workers already running this code may create
        and close sessions meanwhile, and two workers migrating at once count each session
        once. Workers of the previous version must be stopped first: they keep no counts."""
        meta = self._p + "meta"
        if int(self._r.hget(meta, "schema") or 1) >= SCHEMA:
            return
        after: bytes | None = b"0"
        while after is not None:  # the script answers nil after the last batch
            after = batch(args=[self._p, int(after), _PAGE])
        self._r.hset(meta, "schema", SCHEMA)

    # -- sessions ----------------------------------------------------------------------------

    def create_session(
        self,
        a: Participant,
        b: Participant,
        *,
        expires_at: float | None = None,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "voice",
        now: float,
    ) -> Session:
        """Insert an open session between `a` and `b`; see `PairingStore.create_session`."""
        session = new_session(a, b, expires_at=expires_at, ttl_s=ttl_s,
                                    metadata=metadata, mode=mode, now=now)
        result = self._create(args=[self._p, *self._session_args(session)])
        self._check_outcome(result, session)
        return session

    def _session_args(self, session: Session) -> list[str | bytes]:
        """The arguments of _LUA_CREATE_FN's `create` for `session` (numbers encrypted)."""
        a, b, vault = session.a, session.b, self._vault
        deadline = session.deadline()
        return [
            session.id, _num(session.created_at), self._kc, session.mode,
            vault.encrypt(a.number), vault.index(a.number), a.virtual,
            vault.encrypt(b.number), vault.index(b.number), b.virtual,
            _num(session.expires_at), _num(session.ttl_s),
            json.dumps(session.metadata, sort_keys=True, separators=(",", ":")),
            "" if math.isinf(deadline) else repr(deadline),
        ]

    @staticmethod
    def _check_outcome(result: Sequence[Any], session: Session) -> None:
        """Raise for what `create` answered unless it is 'ok'."""
        outcome = result[0]
        if outcome == b"conflict":
            label, holder = result[1].decode(), result[2].decode()
            virtual = session.a.virtual if label == "A" else session.b.virtual
            raise ConflictError(
                f"participant {label} already has open session {holder} "
                f"on virtual number {virtual}"
            )
        if outcome == b"rotating":
            raise StoreError("a key rotation of this Redis store is in progress")
        if outcome == b"key":
            raise StoreError("the key does not match this Redis store (was it rotated?)")

    def get_session(self, session_id: str) -> Session:
        """The session with `session_id` as stored; raise `NotFound` if there is none."""
        fields = self._r.hgetall(self._key(session_id))
        if not fields:
            raise NotFound(f"no session with id {session_id}")
        return self._to_session(session_id, fields)

    def list_sessions(
        self, status: str | None = None, limit: int = 100, after: str | None = None
    ) -> list[Session]:
        """Sessions in creation order, optionally of one `status`, starting after id `after`."""
        if status is not None and status not in STATUSES:
            raise PairingError(f"status must be one of {', '.join(STATUSES)}")
        low = "-inf"
        if after is not None:
            score = self._r.zscore(self._p + "all", after)
            if score is None:
                raise NotFound(f"no session with id {after}")
            low = f"({int(score)}"
        zset = self._p + ("all" if status is None else f"st:{status}")
        ids = self._r.zrangebyscore(zset, low, "+inf", start=0, num=limit)
        return self._fetch(ids)

    def load_active(self, now: float | None = None) -> tuple[list[Session], int]:
        """Every open session (active as of `now` if given) and the change sequence read
        *before* them: changes made while reading come again from `changes_since`."""
        seq = self.current_seq()
        sessions: list[Session] = []
        low = "-inf"
        while True:
            rows = self._r.zrangebyscore(self._p + "st:open", low, "+inf", start=0, num=_PAGE,
                                         withscores=True)
            if not rows:
                break
            for session in self._fetch([member for member, _ in rows]):
                if session.status == "open" and (now is None or session.is_active(now)):
                    sessions.append(session)
            low = f"({int(rows[-1][1])}"
        return sessions, seq

    def close_session(self, session_id: str, now: float) -> Session:
        """Close an open session and return it; see `PairingStore.close_session`."""
        if not self._close(args=[self._p, session_id, _num(now)]):
            raise NotFound(f"no session with id {session_id}")
        return self.get_session(session_id)

    def touch(self, session_id: str, now: float) -> None:
        """Record activity on an open session (moves its inactivity deadline)."""
        self.touch_many({session_id: now})

    def touch_many(self, activity: Mapping[str, float]) -> None:
        """Record activity for several sessions in one script ({session_id: now})."""
        if not activity:
            return
        args: list[str] = [self._p]
        for session_id, now in activity.items():
            args += [session_id, _num(now)]
        self._touch(args=args)

    def expire_due(self, now: float) -> list[str]:
        """Mark open sessions whose expiry or inactivity TTL has passed as expired; return ids."""
        return [raw.decode() for raw in self._expire(args=[self._p, _num(now)])]

    # -- change feed -------------------------------------------------------------------------

    def current_seq(self) -> int:
        """The latest change sequence number."""
        return int(self._r.get(self._p + "seq") or 0)

    def changes_since(self, seq: int, limit: int = 10_000) -> tuple[list[Session], int]:
        """Sessions changed after `seq` (oldest first, at most `limit`) and the next seq."""
        rows = self._changes(args=[self._p, int(seq), int(limit)])
        if not rows:
            return [], seq
        sessions = [
            self._to_session(raw_id.decode(), _pairs(flat)) for raw_id, _, flat in rows if flat
        ]
        return sessions, int(float(rows[-1][1]))

    # -- CDRs --------------------------------------------------------------------------------

    def record_cdrs(self, cdrs: Iterable[Cdr]) -> int:
        """Append CDRs in one script; return how many were written."""
        args: list[str] = [self._p]
        for cdr in cdrs:
            args += [json.dumps(asdict(cdr), separators=(",", ":")), cdr.session_id or "",
                     repr(float(cdr.ended_at))]
        if len(args) == 1:
            return 0
        return int(self._record(args=args))

    def list_cdrs(self, session_id: str | None = None, limit: int = 100) -> list[Cdr]:
        """The newest CDRs first, optionally only those of one session."""
        zset = self._p + (f"cdr:s:{session_id}" if session_id else "cdr:ids")
        ids = self._r.zrevrange(zset, 0, limit - 1)
        if not ids:
            return []
        return [Cdr(**json.loads(raw)) for raw in self._r.hmget(self._p + "cdr", ids) if raw]

    # -- retention and keys ------------------------------------------------------------------

    def purge(self, older_than: float) -> tuple[int, int]:
        """Delete closed/expired sessions that ended before `older_than` and CDRs that ended
        before it, in batches of one script each. Return (sessions, CDRs) deleted."""
        sessions = cdrs = 0
        while True:
            done_s, done_c = self._purge(args=[self._p, _num(older_than), _PAGE])
            sessions, cdrs = sessions + int(done_s), cdrs + int(done_c)
            if done_s < _PAGE and done_c < _PAGE:
                return sessions, cdrs

    def rotate_key(self, new_vault: NumberVault) -> int:
        """Re-encrypt every session under `new_vault`, one atomic script per session.

        The rotation is marked in ``{p}meta`` first: while the mark stands, creates are
        refused and other stores refuse to open. Each session records the key it is under,
        so running this again after an interruption skips the sessions already done. The
        mark goes and the key check moves to the new key only when every session is done.
        Return how many sessions were rewritten by this call.
        """
        meta = self._p + "meta"
        new_kc = new_vault.index(_KEY_CHECK_LABEL)
        if new_kc == self._kc:
            raise StoreError("the new key is the key already in use")
        self._r.hsetnx(meta, "rotation", new_kc)
        if self._r.hget(meta, "rotation") != new_kc.encode():
            raise StoreError("a rotation to a different key is unfinished; finish it first")
        rewritten = 0
        low = "-inf"
        while True:
            rows = self._r.zrangebyscore(self._p + "all", low, "+inf", start=0, num=_PAGE,
                                         withscores=True)
            if not rows:
                break
            for raw_id, _ in rows:
                rewritten += self._rotate_session(raw_id.decode(), new_vault, new_kc)
            low = f"({int(rows[-1][1])}"
        self._r.hset(meta, "key_check", new_kc)
        self._r.hdel(meta, "rotation")
        self._vault, self._kc = new_vault, new_kc
        return rewritten

    def _rotate_session(self, session_id: str, new_vault: NumberVault, new_kc: str) -> int:
        kc, blob_a, blob_b = self._r.hmget(self._key(session_id), ["kc", "na", "nb"])
        if kc is None or kc.decode() != self._kc:
            return 0  # purged meanwhile, or already under the new key
        number_a, number_b = self._vault.decrypt(blob_a), self._vault.decrypt(blob_b)
        return int(self._rotate_one(args=[
            self._p, session_id, self._kc, new_kc,
            new_vault.encrypt(number_a), new_vault.index(number_a),
            new_vault.encrypt(number_b), new_vault.index(number_b),
        ]))

    # -- rows --------------------------------------------------------------------------------

    def _key(self, session_id: str) -> str:
        return f"{self._p}s:{session_id}"

    def _fetch(self, ids: Sequence[bytes]) -> list[Session]:
        if not ids:
            return []
        pipe = self._r.pipeline(transaction=False)
        for raw_id in ids:
            pipe.hgetall(self._key(raw_id.decode()))
        return [
            self._to_session(raw_id.decode(), fields)
            for raw_id, fields in zip(ids, pipe.execute())
            if fields
        ]

    def _to_session(self, session_id: str, f: Mapping[bytes, bytes]) -> Session:
        mode = f[b"mode"].decode()
        status = f[b"status"].decode()
        assert mode in MODES and status in STATUSES
        return Session(
            id=session_id,
            a=Participant(self._vault.decrypt(f[b"na"]), f[b"va"].decode()),
            b=Participant(self._vault.decrypt(f[b"nb"]), f[b"vb"].decode()),
            status=status,  # type: ignore[arg-type]  # checked against STATUSES
            created_at=float(f[b"created_at"]),
            expires_at=_opt(f[b"expires_at"]),
            ttl_s=_opt(f[b"ttl_s"]),
            last_activity=float(f[b"last_activity"]),
            metadata=json.loads(f[b"metadata"]),
            mode=mode,  # type: ignore[arg-type]  # checked against MODES
        )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """HGETALL as returned through a Lua script: a flat [field, value, ...] list."""
    return dict(zip(flat[::2], flat[1::2]))
