"""Calls that outlive a worker: established calls rebuilt from their records (``snapshot``),
by a restarted worker (its own) or by a sibling (a dead worker's), and draining before a
planned stop.

A restarted worker listens where it did, so its peers' in-dialog requests reach it again: it
only rebuilds the calls. A sibling listens elsewhere: it rebuilds the calls and sends each leg
an UPDATE without a body carrying its own Contact (RFC 3311 §5.1: a target refresh), so both
parties send what follows to it; a leg that does not accept the UPDATE (405, 501, no answer...)
is a call that cannot be continued: it is ended cleanly, BYE to both legs and a CDR with cause
``worker_lost``. With ``cluster.takeover = "end"`` every taken-over call is ended that way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..sip.message import Response
from ..sip.transaction import ClientTransaction, ServerTransaction
from .call import CONFIRMED, ENDED, Call, Leg, TransactionData
from .in_dialog import InDialogFlow
from .snapshot import restore

if TYPE_CHECKING:
    from .b2bua import B2bua

#: the cause of a call a worker's death ended (CDR, webhook, log)
WORKER_LOST = "worker_lost"


class TakeoverFlow(InDialogFlow):
    """Rebuilding established calls from records, continuing or ending them; draining."""

    def adopt(self, records: list[dict[str, Any]], now: float, wall_now: float, *,
              refresh: bool) -> tuple[list[Call], int]:
        """Rebuild the calls of ``records``; with ``refresh`` (a sibling's calls) each leg is
        sent an UPDATE with our Contact (``cluster.takeover = "update"``). Returns the calls
        rebuilt and how many records could not be used (counted, logged without content)."""
        adopted: list[Call] = []
        failed = 0
        max_duration = self.calls_cfg.max_duration_s
        for record in records:
            try:
                call = restore(self, record, now, wall_now)
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                failed += 1
                self._count("takeover_unusable")
                self.log.error("call.takeover_unusable", error=type(exc).__name__)
                continue
            if call.id in self.calls:
                continue  # already here (a record written twice)
            self.calls[call.id] = call
            self.dialogs[(call.a.call_id, call.a.local_tag)] = call.a
            self.dialogs[(call.b.call_id, call.b.local_tag)] = call.b
            if self.journal is not None:
                self.journal.adopted(call)
            assert call.answered_at is not None
            if max_duration > 0:
                call.set_timer("max_duration", self.timers.schedule(
                    max(now, call.answered_at + max_duration), self._on_max_duration, call))
            if call.session_interval > 0:
                # the refreshes the record could not hold get one more interval from now
                call.set_timer("session", self.timers.schedule(
                    now + call.session_interval, self._on_session_expired, call))
            self._count("calls_adopted")
            adopted.append(call)
            if refresh:
                self.refresh_target(call, now)
        return adopted, failed

    def refresh_target(self, call: Call, now: float) -> None:
        """Send each leg an UPDATE without a body carrying our Contact (RFC 3311 §5.1)."""
        for leg in (call.a, call.b):
            dialog = leg.dialog
            if dialog is None or not dialog.remote_target:
                continue
            update = dialog.create_request("UPDATE", self._via(leg.transport), leg.contact)
            client = self.layer.send_request(update, self._dest(leg), now)
            client.tu_data = TargetRefresh(leg)
            call.log.info("call.takeover_refresh", leg=leg.name)

    def end_lost(self, call: Call, now: float) -> None:
        """End a call that cannot be continued: BYE both legs, CDR cause ``worker_lost``."""
        if call.state is not ENDED:
            self.hangup(call, WORKER_LOST, now)

    def refresh_failed(self, leg: Leg, status: int, now: float) -> None:
        """A leg refused (or never answered) the takeover's UPDATE: the call cannot go on."""
        call = leg.call
        if call.state is ENDED:
            return
        self._count("takeover_refused")
        call.log.warning("call.takeover_refused", leg=leg.name, code=status)
        self.end_lost(call, now)

    def drain_remaining(self) -> list[Call]:
        """The established calls still up (``cluster.drain_timeout_s`` has passed)."""
        return [call for call in self.calls.values() if call.state is CONFIRMED]

    def end_unestablished(self, now: float) -> int:
        """Calls not yet established when the worker stops: ended (nothing can hand them over)."""
        ended = 0
        for call in list(self.calls.values()):
            if call.state is not CONFIRMED and call.state is not ENDED:
                self.hangup(call, "shutdown", now)
                ended += 1
        return ended


class TargetRefresh(TransactionData):
    """tu_data of the takeover's UPDATE toward ``leg``."""

    __slots__ = ("leg", "call")

    def __init__(self, leg: Leg) -> None:
        self.leg = leg
        self.call = leg.call  # the legs refer to their call weakly

    def on_response(self, b2bua: B2bua, response: Response, txn: ClientTransaction, now: float) -> None:
        """2xx: the peer now sends to us. Anything else final: the call cannot go on."""
        status = response.status
        if status < 200:
            return
        if status < 300:
            dialog = self.leg.dialog
            if dialog is not None:
                dialog.target_refresh(response)
                if b2bua.journal is not None:
                    b2bua.journal.changed(self.call)
            return
        b2bua.refresh_failed(self.leg, status, now)

    def on_timeout(self, b2bua: B2bua, txn: ClientTransaction | ServerTransaction, timer: str,
                   now: float) -> None:
        """No answer at all: the peer is gone too, or does not talk to us."""
        b2bua.refresh_failed(self.leg, 408, now)
