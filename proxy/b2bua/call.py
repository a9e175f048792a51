"""Per-call state: one Call bridging an A leg (the caller's dialog, sipmask is UAS) and a
B leg (a new dialog toward the callee, sipmask is UAC); and :class:`TransactionData`, what the
B2BUA keeps in a transaction's ``tu_data``, of which the Call is the main kind."""

from __future__ import annotations

import enum
import weakref
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ..pairing.model import Match
    from ..sip.dialog import Dialog
    from ..sip.message import Request, Response
    from ..sip.transaction import Address, ClientTransaction, ServerTransaction
    from .b2bua import B2bua
    from .timers import TimerHandle


class CallState(enum.Enum):
    """Where the call is, from the caller's point of view."""

    CALLING = "calling"  # B INVITE sent, nothing back yet
    EARLY = "early"  # a provisional from B relayed to A
    ANSWERED = "answered"  # 2xx relayed to A, waiting for A's ACK
    CONFIRMED = "confirmed"  # A's ACK relayed to B
    ENDED = "ended"


# The states as module constants, for the flows: a member looked up on its enum class costs
# ~70 ns on CPython 3.11 (a property), and a call's state is tested for nearly every message.
CALLING: Final = CallState.CALLING
EARLY: Final = CallState.EARLY
ANSWERED: Final = CallState.ANSWERED
CONFIRMED: Final = CallState.CONFIRMED
ENDED: Final = CallState.ENDED


class TransactionData:
    """What the B2BUA keeps in a transaction's ``tu_data`` (a call, a relayed request or
    message, a parked INVITE...): each kind answers the events of its transaction itself, which
    ``B2bua.handle`` hands to it. The defaults do nothing."""

    __slots__ = ()

    def on_response(self, b2bua: B2bua, response: Response, txn: ClientTransaction, now: float) -> None:
        """A response on the client transaction ``txn`` that holds this."""

    def on_timeout(self, b2bua: B2bua, txn: ClientTransaction | ServerTransaction, timer: str,
                   now: float) -> None:
        """``txn`` failed (``TransactionTimeout``: Timer B/F/H/L or "transport")."""

    def on_cancel(self, b2bua: B2bua, cancelled: ServerTransaction, now: float) -> None:
        """A CANCEL matched the INVITE server transaction ``cancelled`` that holds this (the
        CANCEL itself is answered already, §9.2)."""

    def on_terminated(self, txn: ClientTransaction | ServerTransaction) -> None:
        """``txn`` has ended and no longer holds this."""


class Leg:
    """One side of the bridge."""

    __slots__ = (
        "_call", "name", "dialog", "transport", "source", "local_tag", "call_id", "contact",
        "server_invite", "client_invite", "pending_ack", "server_pending",
    )

    def __init__(self, call: Call, name: str, transport: str, source: Address, call_id: str, local_tag: str) -> None:
        # weak: the call holds its legs, a strong reference back would make every call a
        # reference cycle that only the cyclic GC frees (its pauses grow with the calls held)
        self._call = weakref.ref(call)
        self.name = name  # "a" or "b"
        self.dialog: Dialog | None = None
        self.transport = transport
        self.source = source  # where this leg's peer sends from / we send to first
        self.call_id = call_id
        self.local_tag = local_tag
        self.contact = ""
        # re-INVITE bookkeeping for glare (RFC 3261 §14.2) and ACK relaying
        self.server_invite: ServerTransaction | None = None  # INVITE from this leg not yet finally answered
        self.client_invite: ClientTransaction | None = None  # INVITE we sent to this leg not yet finally answered
        # CSeq of an INVITE from this leg whose 2xx we relayed -> (client txn on peer leg, its
        # CSeq), and the server transactions of this leg waiting for the peer's answer (answered
        # 487 on teardown). Both are usually empty for the whole call: created on first use,
        # dropped when emptied (an established call is held in memory for minutes).
        self.pending_ack: dict[int, tuple[ClientTransaction, int]] | None = None
        self.server_pending: list[ServerTransaction] | None = None

    @property
    def call(self) -> Call:
        """The call this leg belongs to (alive as long as anything can reach the leg's events:
        the B2BUA's tables, a transaction's ``tu_data`` or a forwarded request)."""
        call = self._call()
        assert call is not None
        return call

    def expect_ack(self, cseq: int, client: ClientTransaction, peer_cseq: int) -> None:
        """Remember that the ACK for this leg's INVITE ``cseq`` must be relayed to ``client``."""
        if self.pending_ack is None:
            self.pending_ack = {}
        self.pending_ack[cseq] = (client, peer_cseq)

    def take_ack(self, cseq: int) -> tuple[ClientTransaction, int] | None:
        """The (client transaction, CSeq) an ACK for ``cseq`` goes to, forgotten once taken."""
        pending = self.pending_ack
        if pending is None:
            return None
        target = pending.pop(cseq, None)
        if not pending:
            self.pending_ack = None
        return target

    def add_pending(self, server: ServerTransaction) -> None:
        """A request of this leg now waits for the peer's answer."""
        if self.server_pending is None:
            self.server_pending = [server]
        elif server not in self.server_pending:
            self.server_pending.append(server)

    def discard_pending(self, server: ServerTransaction) -> None:
        """The request of ``server`` was finally answered."""
        pending = self.server_pending
        if pending is not None and server in pending:
            pending.remove(server)
            if not pending:
                self.server_pending = None

    def take_pending(self) -> list[ServerTransaction]:
        """Every request still waiting, forgotten (teardown answers them)."""
        pending = self.server_pending or []
        self.server_pending = None
        return pending

    @property
    def peer(self) -> Leg:
        """The other leg of the same call."""
        call = self.call
        return call.b if self is call.a else call.a

    def __repr__(self) -> str:
        return f"<Leg {self.name} of {self.call.id}>"


_TIMER_SLOTS = {
    "ring": "timer_ring", "failover": "timer_failover", "session": "timer_session",
    "max_duration": "timer_max_duration",
}


class Call(TransactionData):
    """A bridged call. Holds no real number beyond what routing needs in memory. As the
    ``tu_data`` of the caller's INVITE transaction and of the B-leg INVITE's, it answers their
    events (the flows themselves are the B2BUA's, see ``invite``)."""

    __slots__ = (
        "id", "a", "b", "state", "a_invite", "a_txn", "b_invite", "b_txn", "match",
        "caller_token", "callee_token", "call_id_token", "gateways", "gateway_index", "provisional_seen",
        "cancel_pending", "started_at", "answered_at", "ended_at", "code", "cause", "outcome",
        "timer_ring", "timer_failover", "timer_session", "timer_max_duration",
        "session_interval", "own_timer", "final_sent", "b_acked", "pairing_id", "_log", "_parent_log",
        "a_head", "media_key", "media_sdp",
        "__weakref__",
    )

    def __init__(self, call_id: str, a_invite: Request, a_txn: ServerTransaction, match: Match, now: float,
                 log: Any = None) -> None:
        self.id = call_id
        self.a_invite = a_invite
        self.a_txn = a_txn
        self.match = match
        self.pairing_id = match.session_id
        self.state = CALLING
        self.a: Leg = None  # type: ignore[assignment]  # set right after construction
        self.b: Leg = None  # type: ignore[assignment]
        self.b_invite: Request | None = None
        self.b_txn: ClientTransaction | None = None
        self.caller_token = ""
        self.callee_token = ""
        self.call_id_token = ""
        self.gateways: tuple[Any, ...] = ()
        self.gateway_index = 0
        self.provisional_seen = False
        self.cancel_pending = False
        self.started_at = now
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.code = 0
        self.cause = ""
        self.outcome = ""
        # the call's B2BUA timers, one slot each (a dict per call cost ~230 bytes for as long
        # as an established call is held: its maximum-duration timer)
        self.timer_ring: TimerHandle | None = None
        self.timer_failover: TimerHandle | None = None
        self.timer_session: TimerHandle | None = None
        self.timer_max_duration: TimerHandle | None = None
        self.session_interval = 0
        #: the session timer is sipmask's, asked for on the B leg (the caller asked for none)
        self.own_timer = False
        self.final_sent = False
        self.b_acked = False
        #: the header lines the 1xx/2xx responses relayed to A share (names, keys, values),
        #: kept from the first one until the call is confirmed
        self.a_head: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None
        #: the call's media session at the relay ("" when not anchored), and the anchored
        #: offer the B-leg INVITE carries (kept for failover to the next gateway)
        self.media_key = ""
        self.media_sdp = b""
        self._parent_log = log
        self._log: Any = None

    @classmethod
    def adopted(cls, call_id: str, match: Match, started_at: float, log: Any) -> Call:
        """An established call rebuilt from its record (``snapshot.restore``): confirmed, its
        INVITEs long gone (a confirmed call never reads them again, see ``release``)."""
        call = cls(call_id, None, None, match, started_at, log)  # type: ignore[arg-type]
        call.state = CONFIRMED
        call.final_sent = True
        call.b_acked = True
        return call

    @property
    def log(self) -> Any:
        """The B2BUA's logger bound to this call (a short call key and the pairing id), bound
        on first use: at the default levels most calls never log, and binding is not free."""
        log = self._log
        if log is None:
            log = self._log = self._parent_log.bind(call=self.id[:16], pairing_id=self.pairing_id)
        return log

    def set_timer(self, name: str, handle: TimerHandle) -> None:
        """Arm the call's timer ``name`` (ring, failover, session, max_duration), cancelling
        the one it replaces."""
        slot = _TIMER_SLOTS[name]
        old = getattr(self, slot)
        if old is not None:
            old.cancel()
        setattr(self, slot, handle)

    def cancel_timer(self, name: str) -> None:
        """Cancel one named timer if armed."""
        slot = _TIMER_SLOTS[name]
        handle = getattr(self, slot)
        if handle is not None:
            setattr(self, slot, None)
            handle.cancel()

    def cancel_timers(self) -> None:
        """Cancel every timer of the call."""
        for slot in _TIMER_SLOTS.values():
            handle = getattr(self, slot)
            if handle is not None:
                setattr(self, slot, None)
                handle.cancel()

    def compact(self) -> None:
        """Once both legs are confirmed, drop the parsed views (Via, From/To, URIs) cached on
        the messages the call keeps: they are not read again for a confirmed call, would be
        recomputed if they were, and were about a third of an established call's memory
        (tracemalloc, loadtest/bench_call.py --hold)."""
        self.a_head = None
        for message in (self.a_invite, self.b_invite):
            if message is not None:
                message.headers.views.clear()
        for txn in (self.a_txn, self.b_txn):
            if txn is not None:
                txn.request.headers.views.clear()
                if txn.last_response is not None:
                    txn.last_response.headers.views.clear()
        # The INVITE transactions linger 32 s more (RFC 6026 Timers L/M) and only match
        # retransmissions by key, absorb them or re-send the stored ACK; the call never reads
        # its INVITEs' bodies again, and the 2xx to A is not re-sent once A has ACKed it: the
        # SDP goes now rather than in 32 s (dropping the other header lines too saved another
        # ~1.6 KB per call but cost ~2.4% of a call's CPU: not done).
        for message in (self.a_invite, self.b_invite):
            if message is not None:
                message.body = b""
        b_txn = self.b_txn
        if b_txn is not None and b_txn.last_response is not None:
            b_txn.last_response.body = b""
        a_txn = self.a_txn
        if a_txn is not None and a_txn.acked and a_txn.last_response is not None:
            a_txn.last_response.body = b""

    def release(self, txn: object) -> None:
        """The initial INVITE transaction ``txn`` of a confirmed or ended call has terminated
        (RFC 6026 Timer L/M, 32 s after the 2xx; Timer D/H/I after a failure): nothing will
        match it again, and such a call never reads its INVITE again (CANCEL, final responses,
        failover and PRACK all happen before confirmation), so the call stops holding the
        messages. For long calls this takes an established call from ~18 KB to a few KB
        (loadtest/bench_call.py --hold); for ended calls it leaves nothing for the cyclic GC."""
        if txn is self.a_txn:
            self.a_txn = None  # type: ignore[assignment]
            self.a_invite = None  # type: ignore[assignment]
        elif txn is self.b_txn:
            self.b_txn = None
            self.b_invite = None

    # ------------------------------------------------------------------ as tu_data
    def on_response(self, b2bua: B2bua, response: Response, txn: ClientTransaction, now: float) -> None:
        """A response to the B-leg INVITE, or to an attempt of it that failover superseded."""
        if txn is self.b_txn:
            b2bua.b_invite_response(self, response, txn, now)
        elif txn.method == "INVITE" and 200 <= response.status < 300:
            b2bua.release_2xx(response, txn, now)  # 2xx to a superseded gateway attempt

    def on_timeout(self, b2bua: B2bua, txn: ClientTransaction | ServerTransaction, timer: str,
                   now: float) -> None:
        """The B-leg INVITE failed, or the caller never ACKed our 2xx (Timer L)."""
        b_txn = self.b_txn
        if txn is b_txn and b_txn is not None:
            b2bua.b_invite_failed(self, b_txn, timer, now)
        elif txn is self.a_txn and timer == "L":
            # §13.3.1.4: the caller never ACKed our 2xx: confirm B and hang up both sides
            self.cause = "no_ack"
            b2bua.hangup(self, "no_ack", now)

    def on_cancel(self, b2bua: B2bua, cancelled: ServerTransaction, now: float) -> None:
        """The caller cancelled its INVITE (or a re-INVITE's: see ``caller_cancelled``)."""
        b2bua.caller_cancelled(self, cancelled, now)

    def on_terminated(self, txn: ClientTransaction | ServerTransaction) -> None:
        """Once confirmed or ended, the call never reads its INVITEs again: ``release``."""
        if self.state in _SETTLED:
            self.release(txn)

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.state.value}>"


_SETTLED = (CONFIRMED, ENDED)
"""Call states in which a terminated INVITE transaction is never read again."""
