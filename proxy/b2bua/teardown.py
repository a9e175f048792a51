"""The end of a call, and of dialogs nobody wants: hangup from the middle (maximum duration,
session expiry, no ACK), the CANCEL of an unanswered B leg, BYE, the CDR and the detaching of
an ended call from its lingering transactions; 2xx responses no call wants are ACKed and
released with BYE (RFC 3261 §13.2.2.4, §15)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..pairing.model import Cdr, cdr_payload
from ..sip.dialog import Dialog, DialogState
from ..sip.errors import SipParseError
from ..sip.message import Response
from ..sip.transaction import Address, ClientTransaction, TransactionState, build_cancel
from .base import B2buaBase, dialog_dest
from .call import ANSWERED, ENDED, Call, Leg, TransactionData

if TYPE_CHECKING:
    from .b2bua import B2bua


class Teardown(B2buaBase):
    """Ending calls and releasing unwanted dialogs."""

    def _terminate_pending(self, call: Call, now: float) -> None:
        """§15.1.2: answer the other requests still pending in the dialog with 487."""
        for leg in (call.a, call.b):
            for server in leg.take_pending():
                last = server.last_response
                if last is None or last.status < 200:
                    self._reply(server, 487, None, now, to_tag=leg.local_tag)
            leg.server_invite = None

    def _hangup_for(self, cause: str, call: Call, now: float) -> None:
        self.hangup(call, cause, now)

    def hangup(self, call: Call, cause: str, now: float) -> None:
        """Tear the call down from the middle: BYE both legs (max duration, session expiry, no ACK)."""
        if call.state is ENDED:
            return
        call.cause = cause
        self._terminate_pending(call, now)
        if not call.final_sent:
            self._answer_caller(call, 480, None, now)
            self._cancel_b(call, now)
        else:
            if call.state is ANSWERED and not call.b_acked:
                self._confirm_b(call, now)
            self._send_bye(call.a, now)
            if call.b.dialog is not None and call.b.dialog.state is DialogState.CONFIRMED:
                self._send_bye(call.b, now)
        self._end(call, "completed" if call.answered_at is not None else "failed", now)

    def _send_bye(self, leg: Leg, now: float) -> None:
        dialog = leg.dialog
        if dialog is None or not dialog.remote_target:
            return  # no remote target: a BYE would have an empty Request-URI (never sent)
        bye = dialog.create_request("BYE", self._via(leg.transport), None)
        client = self.layer.send_request(bye, self._dest(leg), now)
        client.tu_data = None

    def _confirm_b(self, call: Call, now: float) -> None:
        """ACK B's 2xx ourselves (the caller's ACK never came or the call ends first)."""
        target = call.a.take_ack(call.a_invite.cseq.number)
        if target is not None:
            self._ack_reinvite(call.b, target[0], None, None, now, cseq=target[1])
        call.b_acked = True
        call.compact()

    def _cancel_b(self, call: Call, now: float) -> None:
        txn = call.b_txn
        # a 100 Trying (Proceeding) allows the CANCEL as any provisional does (§9.1)
        if call.provisional_seen or (txn is not None and txn.state is TransactionState.PROCEEDING):
            self._send_b_cancel(call, now)
        else:
            call.cancel_pending = True  # §9.1: no CANCEL before a provisional response

    def _send_b_cancel(self, call: Call, now: float) -> None:
        txn = call.b_txn
        if txn is None or call.b_invite is None:
            return
        cancel = build_cancel(call.b_invite)
        cancel_txn = self.layer.send_request(cancel, txn.dest, now)
        cancel_txn.tu_data = None

    def _end(self, call: Call, outcome: str, now: float) -> None:
        """Free the call's state and write its CDR. Late messages for it get 481."""
        if call.state is ENDED:
            return
        call.state = ENDED
        call.outcome = outcome
        call.ended_at = now
        call.cancel_timers()
        if call.media_key and self.media is not None:
            self.media.delete(call.media_key)  # every end of an anchored call comes here
        self._detach(call)
        journal = self.journal
        if journal is not None:
            journal.ended(call)
        self.calls.pop(call.id, None)
        self.dialogs.pop((call.a.call_id, call.a.local_tag), None)
        if call.b is not None:
            self.dialogs.pop((call.b.call_id, call.b.local_tag), None)
        duration = (now - call.answered_at) if call.answered_at is not None else 0.0
        self._count(f"ended_{outcome}")
        if self._info:
            call.log.info("call.ended", outcome=outcome, cause=call.cause, code=call.code,
                          duration_s=round(duration, 3))
        wall = self.wall_clock
        cdr = Cdr(
            call_id_token=self._call_id_token(call),
            session_id=call.pairing_id,
            caller_token=call.caller_token,
            callee_token=call.callee_token,
            started_at=wall(call.started_at),
            answered_at=wall(call.answered_at) if call.answered_at is not None else None,
            ended_at=wall(now),
            outcome=outcome,
            sip_code=call.code,
            cause=call.cause,
            duration_s=duration,
        )
        self.pairings.record_cdr(cdr)
        if self.events is not None:
            self.events("call.ended", cdr_payload(cdr))

    @staticmethod
    def _detach(call: Call) -> None:
        """Let the call's INVITE transactions (which linger up to 64*T1 after a 2xx, RFC 6026)
        stop holding the ended call, so it is freed now rather than 32 s later. What they may
        still see needs no call: the caller's INVITE is finally answered, and a 2xx to ours
        that we already ACKed is re-ACKed by the transaction layer; only a 2xx from another
        fork still needs ACK + BYE, which ``EndedInvite`` remembers enough for. A B-leg INVITE
        not yet answered with a 2xx keeps the call (a late 2xx is ACKed and released)."""
        a_txn = call.a_txn
        if a_txn is not None and a_txn.tu_data is call:
            a_txn.tu_data = None
        b_txn = call.b_txn
        if b_txn is not None and b_txn.tu_data is call and call.b_acked and call.b.dialog is not None:
            b_txn.tu_data = EndedInvite(call.b.dialog.remote_tag)

    def _stray_2xx(self, response: Response, source: Address | None, now: float) -> None:
        """A 2xx to an INVITE whose client transaction is gone, or was finished by a 300-699
        (§13.2.2.4). Of a dialog we know: nothing to do (while the transaction lingered the
        layer re-sent our ACK for it). Of any other: ACK it and release the dialog with BYE,
        both built from the response alone, sent to its Contact or route (an IP address on
        UDP) or else back where it came from."""
        if source is None:
            return
        try:
            if response.cseq.method != "INVITE":
                return
            if self.dialogs.get((response.call_id, response.from_tag or "")) is not None:
                return
            dialog = Dialog.uac_of_response(response)
            dest = dialog_dest(dialog, source.transport, source)
        except SipParseError:
            return
        self._ack_and_bye(dialog, dest, None, now)

    def release_2xx(self, response: Response, txn: ClientTransaction, now: float) -> None:
        """ACK and release a 2xx to our INVITE ``txn`` that no call wants (§15)."""
        try:
            dialog = Dialog.uac(txn.request, response)
        except SipParseError:
            return
        self._ack_and_bye(dialog, txn.dest, txn, now)

    def _ack_and_bye(self, dialog: Dialog, dest: Address, txn: ClientTransaction | None, now: float) -> None:
        """§13.2.2.4 / §15: ACK the 2xx that made ``dialog`` (kept on ``txn`` for its
        retransmissions, if it still lingers) and end the dialog with BYE."""
        ack = dialog.create_request("ACK", self._via(dest.transport), None, cseq=dialog.local_cseq)
        if txn is not None:
            self.layer.send_ack(txn, ack, dest)
        else:
            self.layer.send_stateless(ack, dest)
        bye = dialog.create_request("BYE", self._via(dest.transport), None)
        bye_txn = self.layer.send_request(bye, dest, now)
        bye_txn.tu_data = None


class EndedInvite(TransactionData):
    """tu_data of the B-leg INVITE of an ended call whose 2xx was ACKed (see ``_detach``)."""

    __slots__ = ("acked_tag",)

    def __init__(self, acked_tag: str) -> None:
        self.acked_tag = acked_tag

    def on_response(self, b2bua: B2bua, response: Response, txn: ClientTransaction, now: float) -> None:
        """A 2xx from another fork (another To tag) is ACKed and released; the one we ACKed is
        re-ACKed by the transaction layer."""
        if 200 <= response.status < 300 and response.to_tag != self.acked_tag:
            b2bua.release_2xx(response, txn, now)
