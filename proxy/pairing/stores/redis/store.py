"""Redis store: one pairing table shared by several sipmask workers.

Same contract as `SqliteStore` (see `stores.base.PairingStore`), laid out in Redis under one key
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
    {p}cdr:ids, {p}cdr:ended, {p}cdr:s:{session}  sorted sets of CDR ids (order, purge and
                            export (`cdrs.py`), session)
    {p}p:{index}            sorted set: every session of a participant (HMAC index), by creation
    {p}vload                hash: virtual number -> open sessions using it (one per side)
    {p}vs:{virtual}         set: ids of the open sessions using that virtual number

The pool (`pool.py`), tokens, audit log and idempotency records (`admin.py`) have their own
keys, listed there. ``{p}meta`` also holds ``schema``: 2 once the participant index and the
open-session counts above exist (`_migrate` builds them for a table written before); each
session's ``counted`` field says whether it is in those counts.

Every check-then-write runs as one Lua script (the ``.lua`` files beside this module, see
`scripts`), so two workers cannot both pass the conflict check and a poller never sees half
of a change. Encryption happens here, in the client: Redis only ever holds ciphertexts, HMACs
and tokens.

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
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Final, cast

import redis

from ...crypto import NumberVault
from ...model import (
    MODES,
    STATUSES,
    Cdr,
    ConflictError,
    NotFound,
    PairingError,
    Participant,
    Session,
    new_session,
)
from ...policy import DEFAULT_POLICY, SessionPolicy, policy_from_json, store_text
from ..base import KEY_CHECK_LABEL, StoreError
from .admin import RedisAdminMixin
from .cdrs import RedisCdrExportMixin
from .dialogs import RedisDialogMixin
from .pool import RedisPoolMixin
from .scripts import lua

__all__ = ["DEFAULT_PREFIX", "SCHEMA", "RedisStore"]

DEFAULT_PREFIX = "sipmask:"
_PAGE = 1000

_CREATE: Final = lua("common", "create_function", "create")
_CLOSE: Final = lua("common", "close")
_EXPIRE_DUE: Final = lua("common", "expire_due")
_TOUCH: Final = lua("touch")
_CHANGES: Final = lua("changes")
_EPOCH: Final = lua("epoch")
_RECORD_CDRS: Final = lua("record_cdrs")
_PURGE: Final = lua("purge")
_ROTATE_ONE: Final = lua("rotate_one")
_MIGRATE_BATCH: Final = lua("common", "migrate_batch")

SCHEMA = 2
"""Layout version written to ``{p}meta`` (1: before the pool; the key had no ``schema``)."""


def _num(value: float | None) -> str:
    """A timestamp as stored: exact ``repr`` text, '' for None."""
    return "" if value is None else repr(float(value))


def _opt(raw: bytes) -> float | None:
    return None if raw == b"" else float(raw)


class RedisStore(RedisPoolMixin, RedisAdminMixin, RedisDialogMixin, RedisCdrExportMixin):
    """Sessions and CDRs in Redis, numbers encrypted; several processes share one table.

    `client` is a ready ``redis.Redis`` answering bytes (no ``decode_responses``; hence the
    casts of its replies to bytes types); `from_url` builds one. The store refuses a key
    that does not match the one the data was written with, and refuses to open while a key
    rotation is unfinished (unless `rotating`, which `rotate_key` uses).
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
        self._kc = vault.index(KEY_CHECK_LABEL)
        self._create = client.register_script(_CREATE)
        self._close = client.register_script(_CLOSE)
        self._expire = client.register_script(_EXPIRE_DUE)
        self._touch = client.register_script(_TOUCH)
        self._changes = client.register_script(_CHANGES)
        self._epoch = client.register_script(_EPOCH)
        self._record = client.register_script(_RECORD_CDRS)
        self._purge = client.register_script(_PURGE)
        self._rotate_one = client.register_script(_ROTATE_ONE)
        self._check_key(rotating)
        self._migrate(client.register_script(_MIGRATE_BATCH))
        self._init_pool()
        self._init_admin()
        self._init_dialogs()
        self._init_cdr_export()

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

    @staticmethod
    def is_new(url: str, *, prefix: str = DEFAULT_PREFIX, timeout_s: float = 5.0) -> bool:
        """True when the Redis store at `url` holds no data yet (no key check: nothing was
        ever written with any key), so a new key may be made for it."""
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            return not client.hexists(prefix + "meta", "key_check")
        finally:
            client.close()

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
        policy: SessionPolicy = DEFAULT_POLICY,
    ) -> Session:
        """Insert an open session between `a` and `b`; see `PairingStore.create_session`."""
        session = new_session(a, b, expires_at=expires_at, ttl_s=ttl_s,
                              metadata=metadata, mode=mode, now=now, policy=policy)
        result = self._create(args=[self._p, *self._session_args(session)])
        self._check_outcome(result, session)
        return session

    def _session_args(self, session: Session) -> list[str | bytes]:
        """The arguments of `create` (create_function.lua) for `session` (numbers encrypted)."""
        a, b, vault = session.a, session.b, self._vault
        deadline = session.deadline()
        return [
            session.id, _num(session.created_at), self._kc, session.mode,
            vault.encrypt(a.number), vault.index(a.number), a.virtual,
            vault.encrypt(b.number), vault.index(b.number), b.virtual,
            _num(session.expires_at), _num(session.ttl_s),
            json.dumps(session.metadata, sort_keys=True, separators=(",", ":")),
            "" if math.isinf(deadline) else repr(deadline),
            store_text(session.policy),
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
        fields = cast(dict[bytes, bytes], self._r.hgetall(self._key(session_id)))
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
        ids = cast(list[bytes], self._r.zrangebyscore(zset, low, "+inf", start=0, num=limit))
        return self._fetch(ids)

    def load_active(self, now: float | None = None) -> tuple[list[Session], int]:
        """Every open session (active as of `now` if given) and the change sequence read
        *before* them: changes made while reading come again from `changes_since`."""
        seq = self.current_seq()
        sessions: list[Session] = []
        low = "-inf"
        while True:
            rows = cast(list[tuple[bytes, float]], self._r.zrangebyscore(
                self._p + "st:open", low, "+inf", start=0, num=_PAGE, withscores=True))
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

    def epoch(self) -> str:
        """The identity of this table's history; see `PairingStore.epoch`. Kept in the meta
        hash: a Redis restarted without its data (or flushed) has none, and gets a new one."""
        raw = self._epoch(args=[self._p, secrets.token_hex(8)])
        return raw.decode() if isinstance(raw, bytes) else str(raw)

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
        ids = cast(list[bytes], self._r.zrevrange(zset, 0, limit - 1))
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
        new_kc = new_vault.index(KEY_CHECK_LABEL)
        if new_kc == self._kc:
            raise StoreError("the new key is the key already in use")
        self._r.hsetnx(meta, "rotation", new_kc)
        if self._r.hget(meta, "rotation") != new_kc.encode():
            raise StoreError("a rotation to a different key is unfinished; finish it first")
        rewritten = 0
        low = "-inf"
        while True:
            rows = cast(list[tuple[bytes, float]], self._r.zrangebyscore(
                self._p + "all", low, "+inf", start=0, num=_PAGE, withscores=True))
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
        kc, blob_a, blob_b = cast(
            list["bytes | None"], self._r.hmget(self._key(session_id), ["kc", "na", "nb"]))
        if kc is None or kc.decode() != self._kc:
            return 0  # purged meanwhile, or already under the new key
        assert blob_a is not None and blob_b is not None  # a session hash holds both
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
            policy=policy_from_json(f.get(b"policy")),  # absent: written before policies
        )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """HGETALL as returned through a Lua script: a flat [field, value, ...] list."""
    return dict(zip(flat[::2], flat[1::2]))
