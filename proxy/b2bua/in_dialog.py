"""Requests within an established (or early) call, in either direction: re-INVITE, UPDATE,
INFO, PRACK (RAck rewritten), OPTIONS, NOTIFY... relayed to the other leg and their answers
relayed back; the caller's ACK relayed; BYE answered here and sent on; REFER refused unless
configured; glare (§14.2) answered 491; session timers (RFC 4028)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sip.errors import SipParseError
from ..sip.message import Request, Response, build_response
from ..sip.transaction import ClientTransaction, ServerTransaction
from .base import peer_reason
from .call import ANSWERED, CONFIRMED, ENDED, Call, Leg, TransactionData
from .teardown import Teardown

if TYPE_CHECKING:
    from .b2bua import B2bua

_TARGET_REFRESH = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))


class InDialogFlow(Teardown):
    """Requests within a call and their answers, across legs."""

    def _in_dialog(self, leg: Leg, request: Request, txn: ServerTransaction | None, now: float) -> None:
        method = request.method
        call = leg.call
        if method == "ACK":
            self._on_ack(leg, request, now)
            return
        assert txn is not None
        dialog = leg.dialog
        if dialog is not None:
            code = dialog.receive_request(request)
            if code is not None:
                self._reply(txn, code, None, now, to_tag=leg.local_tag)
                return
        if call.state is ENDED:
            self._reply(txn, 481, None, now, to_tag=leg.local_tag)
            return
        if method == "BYE":
            self._on_bye(leg, request, txn, now)
            return
        if method == "REFER" and self.calls_cfg.refer == "reject":
            self._reply(txn, 403, "Transfer Not Allowed", now, to_tag=leg.local_tag)
            return
        if method == "INVITE":
            # §14.2 glare: an INVITE we sent toward this leg is still pending -> 491
            if leg.client_invite is not None or leg.server_invite is not None or call.state is not CONFIRMED:
                self._reply(txn, 491, None, now, to_tag=leg.local_tag, extra=[("Retry-After", "1")])
                return
            leg.server_invite = txn
        peer = leg.peer
        if peer.dialog is None:
            self._reply(txn, 481, None, now, to_tag=leg.local_tag)
            return
        if method in ("INVITE", "UPDATE") and dialog is not None:
            dialog.target_refresh(request)  # §12.2.2: target refresh requests update the remote target
        self._forward_request(leg, request, txn, now)

    def _forward_request(self, leg: Leg, request: Request, txn: ServerTransaction, now: float) -> None:
        peer = leg.peer
        assert peer.dialog is not None
        method = request.method
        contact = peer.contact if method in _TARGET_REFRESH else None
        out = peer.dialog.create_request(method, self._via(peer.transport), contact)
        self._copy_headers(request, out)
        if method == "PRACK":
            self._rewrite_rack(leg, out)
        out.body = self._sdp(request.body) if _is_sdp(request) else request.body
        client = self.layer.send_request(out, self._dest(peer), now)
        client.tu_data = Forwarded(leg, txn, method)
        leg.add_pending(txn)
        if method == "INVITE":
            peer.client_invite = client

    def _rewrite_rack(self, leg: Leg, out: Request) -> None:
        """RFC 3262 §7.2: RAck names the INVITE's CSeq, which differs per leg."""
        rack = out.headers.get("rack")
        call = leg.call
        if rack is None or call.b_invite is None:
            return
        parts = rack.split()
        if len(parts) == 3:
            peer_invite = call.b_invite if leg is call.a else call.a_invite
            out.headers.set("RAck", f"{parts[0]} {peer_invite.cseq.number} {parts[2]}")

    def forwarded_response(self, fwd: Forwarded, response: Response, txn: ClientTransaction, now: float) -> None:
        """The peer's answer to a relayed request, relayed back to the leg that sent it."""
        server = fwd.server
        leg = fwd.leg
        status = response.status
        if status == 100:
            return
        last = server.last_response
        if fwd.method == "INVITE" and 200 <= status < 300 and (
                leg.call.state is ENDED or (last is not None and last.status >= 200)):
            # the dialog ended while the re-INVITE was in flight (BYE crossing it): ACK and drop
            self._ack_reinvite(leg.peer, txn, response, None, now)
            return
        if server.last_response is not None and server.last_response.status >= 200:
            return  # already finally answered (e.g. 487 on teardown)
        out = build_response(server.request, status, peer_reason(response.reason), to_tag=leg.local_tag)
        if 200 <= status < 300 and fwd.method in _TARGET_REFRESH:
            out.headers.add("Contact", leg.contact)
            peer_dialog = leg.peer.dialog
            if peer_dialog is not None:
                peer_dialog.target_refresh(response)
        self._copy_headers(response, out)
        out.body = self._sdp(response.body) if _is_sdp(response) else response.body
        self.layer.send_response(server, out, now)
        if status >= 200:
            leg.discard_pending(server)
            if fwd.method == "INVITE":
                leg.server_invite = None
                leg.peer.client_invite = None
                if status < 300:
                    leg.expect_ack(server.request.cseq.number, txn, txn.request.cseq.number)
            if fwd.method in ("INVITE", "UPDATE") and status < 300:
                self._session_timer(leg.call, response, now)
            if status in (408, 481) and leg.call.state is not ENDED:
                self.hangup(leg.call, f"peer_{status}", now)  # §12.2.1.2

    def forwarded_failed(self, fwd: Forwarded, now: float) -> None:
        """The peer never answered a relayed request: 408 back (§8.1.3.1), and for a
        re-INVITE the dialog is gone too (§12.2.1.2)."""
        server = fwd.server
        last = server.last_response
        if last is None or last.status < 200:
            self._reply(server, 408, None, now, to_tag=fwd.leg.local_tag)
        fwd.leg.discard_pending(server)
        if fwd.method == "INVITE":
            fwd.leg.server_invite = None
            fwd.leg.peer.client_invite = None
            if fwd.leg.call.state is not ENDED:
                self.hangup(fwd.leg.call, "peer_timeout", now)

    def _on_ack(self, leg: Leg, ack: Request, now: float) -> None:
        call = leg.call
        try:
            cseq = ack.cseq.number
        except SipParseError:
            return
        target = leg.take_ack(cseq)
        if target is None:
            return  # retransmitted ACK or ACK for a non-2xx (absorbed by the transaction layer)
        client_txn, peer_cseq = target
        self._ack_reinvite(leg.peer, client_txn, None, ack, now, cseq=peer_cseq)
        if leg is call.a and call.state is ANSWERED:
            call.state = CONFIRMED
            call.b_acked = True
            call.compact()

    def _on_bye(self, leg: Leg, request: Request, txn: ServerTransaction, now: float) -> None:
        call = leg.call
        self._reply(txn, 200, None, now, to_tag=leg.local_tag)
        call.cause = f"bye_{leg.name}"
        self._terminate_pending(call, now)
        peer = leg.peer
        if peer is call.b and call.state is ANSWERED and not call.b_acked:
            self._confirm_b(call, now)
        if peer is call.a and not call.final_sent:
            # callee gave up on an early dialog: finish the caller's INVITE
            self._answer_caller(call, 487, None, now)
        elif peer.dialog is not None:
            self._send_bye(peer, now)
        self._end(call, "completed" if call.answered_at is not None else "failed", now)

    def _session_timer(self, call: Call, response: Response, now: float) -> None:
        """RFC 4028: refreshes pass end to end; if none arrives within the negotiated interval
        the session is considered dead and both legs are released."""
        se = response.headers.get("session-expires")
        if not se:
            return
        value = se.split(";", 1)[0].strip()
        if not value.isdigit():
            return
        interval = int(value)
        if interval <= 0:
            return
        call.session_interval = interval
        call.set_timer("session", self.timers.schedule(now + interval, self._on_session_expired, call))


class Forwarded(TransactionData):
    """tu_data of a client transaction relaying an in-dialog request from ``leg`` (the server
    transaction of that request holds nothing: its CANCEL and timeouts change nothing)."""

    __slots__ = ("leg", "call", "server", "method")

    def __init__(self, leg: Leg, server: ServerTransaction, method: str) -> None:
        self.leg = leg
        self.call = leg.call  # keeps the call alive until the answer is relayed (legs refer weakly)
        self.server = server
        self.method = method

    def on_response(self, b2bua: B2bua, response: Response, txn: ClientTransaction, now: float) -> None:
        """The peer answered the relayed request."""
        b2bua.forwarded_response(self, response, txn, now)

    def on_timeout(self, b2bua: B2bua, txn: ClientTransaction | ServerTransaction, timer: str,
                   now: float) -> None:
        """The peer never answered it (Timer F/B, transport)."""
        b2bua.forwarded_failed(self, now)


def _is_sdp(message: Request | Response) -> bool:
    ctype = message.headers.get("content-type")
    return bool(message.body) and ctype is not None and "application/sdp" in ctype.lower()
