"""In-memory routing index of the open sessions: the per-call hot path.

`lookup` is one dict probe plus one float comparison and returns a `Match` built when the
session was applied, so a call allocates nothing here but the key. Expiry is enforced at
lookup: the absolute expiry and the inactivity deadline are folded into one `deadline` kept
on each route, recomputed only when a session is touched.

The layout is chosen for memory latency, which dominates once the table outgrows the CPU
cache (1M sessions): the key is one string, ``caller + dialed`` (unambiguous because E.164
numbers start with "+"), and the route object holds both the answer and its deadline, so a
hit touches the dict, one key string and one route. Compared with a ``(caller, dialed)``
tuple key and the deadline on a per-session object, hits at 1M sessions went from a median
of 2.7 us to 2.2 us (interleaved A/B on a 2-vCPU VM, loadtest/bench_pairing.py's key mix).

Memory per session is kept down by not holding the `Session` itself (metadata, timestamps
and participants stay in the store), by sharing one string object per virtual number and one
`CallPolicy` per distinct policy (a session without one carries None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .model import OPEN, Match, Session
from .policy import DEFAULT_POLICY, CallPolicy

__all__ = ["PairingCache"]


class _Route:
    """One direction of a session: the answer and when it stops being valid.

    It holds no reference back to its `_Entry`, so removed sessions are freed by reference
    counting alone and never wait for the cyclic garbage collector.
    """

    __slots__ = ("match", "deadline")

    def __init__(self, match: Match, deadline: float) -> None:
        self.match = match
        self.deadline = deadline


class _Entry:
    """Per-session state needed to touch or remove a session (not read by `lookup`)."""

    __slots__ = ("session_id", "key_a", "key_b", "expires_at", "ttl_s", "last_activity",
                 "route_a", "route_b")

    route_a: _Route
    route_b: _Route

    def __init__(self, session: Session, key_a: str, key_b: str) -> None:
        self.session_id = session.id
        self.key_a = key_a
        self.key_b = key_b
        self.expires_at = math.inf if session.expires_at is None else session.expires_at
        self.ttl_s = math.inf if session.ttl_s is None else session.ttl_s
        self.last_activity = session.last_activity

    @property
    def deadline(self) -> float:
        return self.route_a.deadline

    def set_activity(self, now: float) -> None:
        """Move the last activity to `now` and both directions' deadline with it."""
        self.last_activity = now
        deadline = min(self.expires_at, now + self.ttl_s)
        self.route_a.deadline = deadline
        self.route_b.deadline = deadline


class PairingCache:
    """Maps (caller E.164, dialed E.164) to the `Match` of the open session that routes it.

    Not thread-safe: it belongs to the event loop that serves calls.
    """

    __slots__ = ("_routes", "_entries", "_virtuals", "_policies", "applied")

    def __init__(self) -> None:
        """An empty cache; fill it with `load` or `apply`."""
        # How many times `apply` ran: lets a reader that awaited the store notice that the
        # cache moved meanwhile (PairingService.poll_async).
        self.applied = 0
        self._routes: dict[str, _Route] = {}
        self._entries: dict[str, _Entry] = {}
        # Virtual numbers come from a small pool: keep one string object per number.
        self._virtuals: dict[str, str] = {}
        # Sessions of one kind (a courier service's) share a policy: keep one object per policy.
        self._policies: dict[CallPolicy, CallPolicy] = {}

    def __len__(self) -> int:
        """Number of sessions indexed (open, possibly past a deadline not yet looked up)."""
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    def load(self, sessions: Iterable[Session]) -> None:
        """Replace the whole content with `sessions` (those not open are skipped)."""
        self._routes.clear()
        self._entries.clear()
        self._virtuals.clear()
        self._policies.clear()
        for session in sessions:
            self.apply(session)

    def apply(self, session: Session) -> None:
        """Index an open session, or forget one that is closed or expired.

        Re-applying a session replaces its previous state. If a route key is held by another
        session (possible only for one past its deadline but not yet marked expired, since the
        store refuses conflicting active sessions) the newer session wins and the other is
        dropped whole, so each session is always routable in both directions or not at all.
        """
        self.applied += 1
        previous = self._entries.get(session.id)
        self.remove(session.id)
        if session.status != OPEN:
            return
        intern = self._virtuals.setdefault
        virtual_a = intern(session.a.virtual, session.a.virtual)
        virtual_b = intern(session.b.virtual, session.b.virtual)
        key_a = session.a.number + virtual_a
        key_b = session.b.number + virtual_b
        for key in (key_a, key_b):
            holder = self._routes.get(key)
            if holder is not None:
                self.remove(holder.match.session_id)
        entry = _Entry(session, key_a, key_b)
        session_id = entry.session_id
        deadline = min(entry.expires_at, entry.last_activity + entry.ttl_s)
        mode = session.mode
        policy_a = policy_b = None
        if session.policy is not DEFAULT_POLICY:
            policy_a = self._policy(session.policy.for_caller("a"))
            policy_b = self._policy(session.policy.for_caller("b"))
        entry.route_a = _Route(
            Match(session_id, session.b.number, virtual_b, mode, policy_a), deadline)
        entry.route_b = _Route(
            Match(session_id, session.a.number, virtual_a, mode, policy_b), deadline)
        if previous is not None and previous.last_activity > entry.last_activity:
            # The store learns of touches in batches; keep the newer activity seen here.
            entry.set_activity(previous.last_activity)
        self._routes[key_a] = entry.route_a
        self._routes[key_b] = entry.route_b
        self._entries[session_id] = entry

    def _policy(self, policy: CallPolicy | None) -> CallPolicy | None:
        return None if policy is None else self._policies.setdefault(policy, policy)

    def remove(self, session_id: str) -> bool:
        """Forget a session; return whether it was indexed."""
        entry = self._entries.pop(session_id, None)
        if entry is None:
            return False
        routes = self._routes
        for key, route in ((entry.key_a, entry.route_a), (entry.key_b, entry.route_b)):
            if routes.get(key) is route:
                del routes[key]
        return True

    def lookup(self, caller: str, dialed: str, now: float) -> Match | None:
        """The Match routing `caller` dialing `dialed` (both E.164), or None.

        A session past its expiry or inactivity deadline answers None and is dropped.
        """
        route = self._routes.get(caller + dialed)
        if route is None:
            return None
        if now < route.deadline:
            return route.match
        self.remove(route.match.session_id)
        return None

    def touch(self, session_id: str, now: float) -> bool:
        """Restart the inactivity TTL of a session at `now`; return whether it is indexed."""
        entry = self._entries.get(session_id)
        if entry is None:
            return False
        if entry.last_activity < now < entry.deadline:  # past its deadline: stays dead
            entry.set_activity(now)
        return True

    def expire_due(self, now: float) -> list[str]:
        """Drop every session past its deadline at `now`; return their ids. O(sessions)."""
        due = [sid for sid, entry in self._entries.items() if not now < entry.deadline]
        for session_id in due:
            self.remove(session_id)
        return due
