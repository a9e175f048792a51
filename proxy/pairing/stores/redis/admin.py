"""RedisStore, administration side (2/2): API tokens, the audit log, Idempotency-Keys.

A mixin of `RedisStore`, the Redis twin of the SQLite store's `admin`, held to the same
contract suite (tests/unit/test_pairing_admin_store.py). Keys, under the store's prefix ``{p}``::

    {p}tk:{id}              hash: one token (name, role, secret_hash, created_at, revoked_at,
                            expires_at; '' for none: a token made before expiry existed lacks it)
    {p}tok:seq, {p}tok:ids  counter, and sorted set of token ids in creation order
    {p}tok:hash             hash: secret hash -> token id (revoked ones too: never reused)
    {p}tok:name             hash: name -> id of the *active* token of that name
    {p}audit:seq, {p}audit  counter, and hash: entry id -> entry (JSON)
    {p}audit:ids, {p}audit:t:{target}, {p}audit:a:{actor}  sorted sets of entry ids
    {p}idem:{hmac}          string: a remembered create (JSON); the name is the keyed HMAC
                            of (scope, key), since a client may put anything in its key
    {p}idem:at              sorted set: those HMACs scored by created_at (aging out)

As in SQLite, a token is kept only as the SHA-256 of its secret, audit details carry keyed
tokens rather than numbers, and a remembered request body only as its keyed HMAC. Every
check-then-write is one Lua script.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Final, cast

import redis

from ...crypto import NumberVault
from ...model import ConflictError, NotFound
from ...records import ApiToken, AuditEntry, IdempotencyRecord
from ..base import IDEMPOTENCY_TTL_S, check_new_token
from .scripts import lua

__all__ = ["RedisAdminMixin"]

_BATCH: Final = 500

_TOKEN_CREATE: Final = lua("token_create")
_TOKEN_REVOKE: Final = lua("token_revoke")
_AUDIT: Final = lua("audit")
_IDEM_PUT: Final = lua("idem_put")


def _token(token_id: str, f: Mapping[bytes, bytes]) -> ApiToken:
    revoked, expires = f[b"revoked_at"], f.get(b"expires_at", b"")
    return ApiToken(
        token_id, f[b"name"].decode(),
        f[b"role"].decode(),  # type: ignore[arg-type]  # written from ROLES only
        float(f[b"created_at"]), None if revoked == b"" else float(revoked),
        None if expires == b"" else float(expires),
    )


class RedisAdminMixin:
    """Tokens, audit and idempotency for `RedisStore` (see the module docstring)."""

    # Provided by RedisStore.
    _r: redis.Redis
    _p: str
    _vault: NumberVault

    def _init_admin(self) -> None:
        register = self._r.register_script
        self._token_create = register(_TOKEN_CREATE)
        self._token_revoke = register(_TOKEN_REVOKE)
        self._audit = register(_AUDIT)
        self._idem_put = register(_IDEM_PUT)

    # -- tokens --------------------------------------------------------------------------------

    def create_token(self, name: str, role: str, secret_hash: str, now: float,
                     expires_at: float | None = None) -> ApiToken:
        """Store a new token by the hash of its secret."""
        check_new_token(name, role, now, expires_at)
        token = ApiToken("tok_" + secrets.token_hex(6), name, role,  # type: ignore[arg-type]
                         now, None, expires_at)
        outcome = self._token_create(args=[
            self._p, token.id, name, role, secret_hash, repr(float(now)),
            "" if expires_at is None else repr(float(expires_at))])
        if outcome == b"name":
            raise ConflictError(f"an active token is already named {name}")
        if outcome == b"hash":
            raise ConflictError("a token with this secret already exists")
        return token

    def find_token(self, secret_hash: str) -> ApiToken | None:
        """The active token with this secret hash, if any."""
        token_id = cast("bytes | None", self._r.hget(self._p + "tok:hash", secret_hash))
        if token_id is None:
            return None
        fields = cast(dict[bytes, bytes], self._r.hgetall(f"{self._p}tk:{token_id.decode()}"))
        if not fields or fields[b"revoked_at"] != b"":
            return None
        return _token(token_id.decode(), fields)

    def list_tokens(self) -> list[ApiToken]:
        """Every token, oldest first."""
        raw_ids = cast(list[bytes], self._r.zrange(self._p + "tok:ids", 0, -1))
        ids = [raw.decode() for raw in raw_ids]
        pipe = self._r.pipeline(transaction=False)
        for token_id in ids:
            pipe.hgetall(f"{self._p}tk:{token_id}")
        return [_token(token_id, f) for token_id, f in zip(ids, pipe.execute() if ids else [])
                if f]

    def revoke_token(self, token: str, now: float) -> ApiToken:
        """Revoke by id, or by the name of an active token."""
        token_id = self._token_revoke(args=[self._p, token, repr(float(now))])
        if token_id is None:
            raise NotFound(f"no token with id or name {token}")
        fields = cast(dict[bytes, bytes], self._r.hgetall(f"{self._p}tk:{token_id.decode()}"))
        return _token(token_id.decode(), fields)

    # -- audit ---------------------------------------------------------------------------------

    def record_audit(self, entry: AuditEntry) -> AuditEntry:
        """Append an audit entry; return it with its id."""
        body = json.dumps(
            {"at": entry.at, "actor": entry.actor, "action": entry.action,
             "target": entry.target, "details": entry.details},
            sort_keys=True, separators=(",", ":"),
        )
        entry_id = int(self._audit(args=[self._p, body, entry.target, entry.actor]))
        return AuditEntry(entry.at, entry.actor, entry.action, entry.target,
                          dict(entry.details), entry_id)

    def list_audit(
        self,
        limit: int = 100,
        before: int | None = None,
        target: str | None = None,
        actor: str | None = None,
    ) -> list[AuditEntry]:
        """Audit entries newest first."""
        if target is not None:
            zset = f"audit:t:{target}"
        elif actor is not None:
            zset = f"audit:a:{actor}"
        else:
            zset = "audit:ids"
        high = "+inf" if before is None else f"({int(before)}"
        entries: list[AuditEntry] = []
        while len(entries) < limit:
            ids = cast(list[bytes], self._r.zrevrangebyscore(
                self._p + zset, high, "-inf", start=0, num=min(_BATCH, max(limit, 1))))
            if not ids:
                break
            for raw_id, body in zip(ids, self._r.hmget(self._p + "audit", ids)):
                if body is None:
                    continue
                e = json.loads(body)
                if actor is not None and e["actor"] != actor:
                    continue
                entries.append(AuditEntry(e["at"], e["actor"], e["action"], e["target"],
                                          e["details"], int(raw_id)))
                if len(entries) == limit:
                    break
            high = f"({int(ids[-1])}"
        return entries

    # -- idempotency ---------------------------------------------------------------------------

    def _idem_name(self, scope: str, key: str) -> str:
        # Keyed, so that a key holding a phone number cannot be read back by guessing.
        return self._vault.index(f"idempotency\0{scope}\0{key}")

    def get_idempotency(self, scope: str, key: str) -> IdempotencyRecord | None:
        """The create remembered under (scope, key), if any."""
        raw = self._r.get(f"{self._p}idem:{self._idem_name(scope, key)}")
        if raw is None:
            return None
        r = json.loads(raw)
        return IdempotencyRecord(scope, key, r["body_hash"], r["session_id"], r["created_at"])

    def put_idempotency(self, record: IdempotencyRecord) -> None:
        """Remember a create; drops records older than `IDEMPOTENCY_TTL_S` on the way."""
        body = json.dumps({"body_hash": record.body_hash, "session_id": record.session_id,
                           "created_at": record.created_at}, separators=(",", ":"))
        stored = self._idem_put(args=[
            self._p, self._idem_name(record.scope, record.key), body,
            repr(float(record.created_at)), repr(float(record.created_at - IDEMPOTENCY_TTL_S)),
        ])
        if not stored:
            raise ConflictError("this Idempotency-Key is already in use")
