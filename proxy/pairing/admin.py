"""Administrative operations shared by the HTTP API and the admin CLI.

`PairingAdmin` normalises numbers, calls the store, writes one audit entry per change and
tells the running proxy's cache about session changes at once (`on_change`), so a session
created through the API routes its first call without waiting for the next poll.

Audit entries never hold a real number: participants appear as the vault's keyed tokens
(``n_...``), metadata as its key names only (values are the caller's and may be anything).
The audit entry is written right after the change it records, not in the same transaction:
a crash between the two loses the entry, never the change.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from .crypto import NumberVault
from .model import PairingError, Session
from .normalize import InvalidNumber, normalize_number
from .policy import DEFAULT_POLICY, SessionPolicy, policy_to_json
from .records import KEEP, ApiToken, AuditEntry, Keep, PoolNumber
from .stores.base import ApiStore

__all__ = ["InvalidField", "PairingAdmin", "hash_secret", "new_secret"]

_SECRET_PREFIX = "smk_"


class InvalidField(PairingError, ValueError):
    """A bad input value; `field` names it (``a.number``, ``ttl_s``...). The message never
    repeats a number."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def _policy_details(policy: SessionPolicy) -> dict[str, Any]:
    """An audit entry's view of a policy (it names no number): absent when the default."""
    return {} if policy == DEFAULT_POLICY else {"policy": policy_to_json(policy)}


def new_secret() -> str:
    """A new API token secret: ``smk_`` + 43 URL-safe characters (256 random bits)."""
    return _SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 (hex) of a token secret, as stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


class PairingAdmin:
    """Sessions, pool and tokens, as one actor (`actor` names the token or CLI user)."""

    def __init__(
        self,
        store: ApiStore,
        vault: NumberVault,
        *,
        clock: Callable[[], float] = time.time,
        region: str = "US",
        on_change: Callable[[Session], None] | None = None,
    ) -> None:
        self.store = store
        self.vault = vault
        self.clock = clock
        self.region = region
        self.on_change = on_change

    # -- helpers -------------------------------------------------------------------------------

    def number(self, raw: Any, field: str) -> str:
        """`raw` as E.164, or `InvalidField` naming `field`."""
        if not isinstance(raw, str):
            raise InvalidField(field, "expected a phone number as a string")
        try:
            return normalize_number(raw, self.region)
        except InvalidNumber as exc:
            raise InvalidField(field, str(exc)) from None

    def _audit(self, actor: str, action: str, target: str, **details: Any) -> None:
        self.store.record_audit(AuditEntry(self.clock(), actor, action, target, details))

    def _changed(self, session: Session) -> Session:
        if self.on_change is not None:
            self.on_change(session)
        return session

    # -- sessions ------------------------------------------------------------------------------

    def create_session(
        self,
        actor: str,
        number_a: str,
        number_b: str,
        *,
        virtual_a: str | None = None,
        virtual_b: str | None = None,
        expires_at: float | None = None,
        ttl_s: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "voice",
        policy: SessionPolicy = DEFAULT_POLICY,
    ) -> Session:
        """Create a session (virtual numbers from the pool unless given); numbers are
        normalised first (`InvalidField` names the bad one)."""
        a = self.number(number_a, "a.number")
        b = self.number(number_b, "b.number")
        va = None if virtual_a is None else self.number(virtual_a, "a.virtual")
        vb = None if virtual_b is None else self.number(virtual_b, "b.virtual")
        session = self.store.allocate_session(
            a, b, virtual_a=va, virtual_b=vb, expires_at=expires_at, ttl_s=ttl_s,
            metadata=metadata, mode=mode, now=self.clock(), policy=policy,
        )
        self._audit(
            actor, "session.create", session.id,
            a=self.vault.token(a), b=self.vault.token(b),
            virtual_a=session.a.virtual, virtual_b=session.b.virtual, mode=session.mode,
            expires_at=session.expires_at, ttl_s=session.ttl_s,
            metadata_keys=sorted(session.metadata), **_policy_details(session.policy),
        )
        return self._changed(session)

    def update_session(
        self,
        actor: str,
        session_id: str,
        *,
        expires_at: float | None | Keep = KEEP,
        ttl_s: float | None | Keep = KEEP,
        policy: SessionPolicy | Keep = KEEP,
    ) -> Session:
        """Change a session's expiry, TTL and/or policy."""
        session = self.store.update_session(
            session_id, expires_at=expires_at, ttl_s=ttl_s, now=self.clock(), policy=policy,
        )
        changes = {
            name: value for name, value in (("expires_at", expires_at), ("ttl_s", ttl_s))
            if not isinstance(value, Keep)
        }
        if not isinstance(policy, Keep):
            changes.update(_policy_details(policy))
        self._audit(actor, "session.update", session_id, **changes)
        return self._changed(session)

    def close_session(self, actor: str, session_id: str) -> Session:
        """Close a session (an already ended one is returned as is, and not audited)."""
        before = self.store.get_session(session_id)
        session = self.store.close_session(session_id, self.clock())
        if before.status == "open":
            self._audit(actor, "session.close", session_id, was=before.effective_status(
                self.clock()))
        return self._changed(session)

    # -- pool ------------------------------------------------------------------------------------

    def add_pool_number(self, actor: str, raw: str) -> PoolNumber:
        """Add a virtual number to the pool."""
        number = self.number(raw, "number")
        pool_number = self.store.add_pool_number(number, self.clock())
        self._audit(actor, "pool.add", number)
        return pool_number

    def set_pool_status(self, actor: str, raw: str, status: str) -> PoolNumber:
        """Drain (``draining``) or re-activate (``active``) a pool number."""
        number = self.number(raw, "number")
        pool_number = self.store.set_pool_status(number, status)
        self._audit(actor, "pool.drain" if status == "draining" else "pool.activate", number)
        return pool_number

    def remove_pool_number(self, actor: str, raw: str) -> PoolNumber:
        """Remove a pool number no active session uses."""
        number = self.number(raw, "number")
        pool_number = self.store.remove_pool_number(number, self.clock())
        self._audit(actor, "pool.remove", number)
        return pool_number

    # -- tokens ----------------------------------------------------------------------------------

    def create_token(self, actor: str, name: str, role: str,
                     expires_at: float | None = None) -> tuple[ApiToken, str]:
        """Create a token, working until `expires_at` (None: until revoked); return it and its
        secret (shown once, never stored)."""
        secret = new_secret()
        token = self.store.create_token(name, role, hash_secret(secret), self.clock(),
                                        expires_at)
        details: dict[str, Any] = {"name": name, "role": role}
        if expires_at is not None:
            details["expires_at"] = expires_at
        self._audit(actor, "token.create", token.id, **details)
        return token, secret

    def revoke_token(self, actor: str, token: str) -> ApiToken:
        """Revoke a token by id or name."""
        revoked = self.store.revoke_token(token, self.clock())
        self._audit(actor, "token.revoke", revoked.id, name=revoked.name)
        return revoked

    def authenticate(self, secret: str) -> ApiToken | None:
        """The active token with this secret, if any."""
        if not secret.startswith(_SECRET_PREFIX):
            return None
        return self.store.find_token(hash_secret(secret))
