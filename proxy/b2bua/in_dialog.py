"""Requests within an established (or early) call, in either direction: re-INVITE, UPDATE,
INFO, PRACK (RAck rewritten), OPTIONS, NOTIFY... relayed to the other leg and their answers
relayed back; the caller's ACK relayed; BYE answered here and sent on; REFER refused unless
configured; glare (§14.2) answered 491; session timers (RFC 4028)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sip.errors import SipParseError
from ..sip.message import Headers, Request, Response, build_response
from ..sip.transaction import ClientTransaction, ServerTransaction
from .base import peer_reason
from .bodies import Refusal
from .call import ANSWERED, CONFIRMED, ENDED, Call, Leg, TransactionData
from .media import MediaFlow

if TYPE_CHECKING:
    from .b2bua import B2bua

_TARGET_REFRESH = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))
#: in-dialog requests whose SDP is an offer (RFC 3264; RFC 3311 UPDATE) sent through the relay
_MEDIA_OFFERS = frozenset(("INVITE", "UPDATE"))


class InDialogFlow(MediaFlow):
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
            if self.journal is not None and call.state is CONFIRMED:
                self.journal.changed(call)
        self._forward_request(leg, request, txn, now)

    def _forward_request(self, leg: Leg, request: Request, txn: ServerTransaction, now: float) -> None:
        peer = leg.peer
        assert peer.dialog is not None
        method = request.method
        contact = peer.contact if method in _TARGET_REFRESH else None
        out = peer.dialog.create_request(method, self._via(peer.transport), contact)
        self._copy_headers(request, out)
        if leg.call.own_timer and peer is leg.call.a:
            drop_timer(out.headers)  # the callee's refresh: the caller knows no session timer
        if method == "PRACK":
            self._rewrite_rack(leg, out)
        refused = self._copy_body(request, out)
        if refused is not None:
            # nothing crosses: the request is answered here and the call goes on (400/415)
            self._reply(txn, refused.status, refused.reason, now, to_tag=leg.local_tag,
                        extra=list(refused.extra) or None)
            if method == "INVITE":
                leg.server_invite = None
            return
        if leg.call.media_key and method in _MEDIA_OFFERS and _is_sdp(request):
            self._media_reoffer(leg, request, txn, out)  # sent when the relay has answered
            return
        self._send_forwarded(leg, txn, out, now)

    def _send_forwarded(self, leg: Leg, txn: ServerTransaction, out: Request, now: float) -> None:
        peer = leg.peer
        client = self.layer.send_request(out, self._dest(peer), now)
        client.tu_data = Forwarded(leg, txn, out.method)
        leg.add_pending(txn)
        if out.method == "INVITE":
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
                if self.journal is not None and leg.call.state is CONFIRMED:
                    self.journal.changed(leg.call)
        self._copy_headers(response, out)
        call = leg.call
        if (call.own_timer and leg is call.b and 200 <= status < 300
                and fwd.method in ("INVITE", "UPDATE") and call.session_interval):
            # RFC 4028 §9: the callee refreshed the session timer sipmask asked for; the
            # caller's 2xx knows nothing of it, so sipmask answers for the timer
            drop_timer(out.headers)
            out.headers.add("Session-Expires", f"{call.session_interval};refresher=uas")
            out.headers.add("Require", "timer")
        refused = self._copy_body(response, out)  # refused: a non-2xx goes on without it
        if refused is not None and 200 <= status < 300:
            self._bad_forwarded_answer(fwd, txn, response, refused, now)
            return
        if (200 <= status < 300 and leg.call.media_key and fwd.method in _MEDIA_OFFERS
                and _is_sdp(response)):
            self._media_reanswer(fwd, response, txn, out)  # relayed when the relay has answered
            return
        self._send_forwarded_response(fwd, response, txn, out, now)

    def _send_forwarded_response(self, fwd: Forwarded, response: Response, txn: ClientTransaction,
                                 out: Response, now: float) -> None:
        server = fwd.server
        leg = fwd.leg
        status = response.status
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

    def _bad_forwarded_answer(self, fwd: Forwarded, txn: ClientTransaction, response: Response,
                              refused: Refusal, now: float) -> None:
        """A 2xx to a relayed re-INVITE/UPDATE/PRACK whose answer may not cross: the sender
        gets 488, the peer's 2xx is ACKed (§13.2.2.4) and, as the two legs no longer agree on
        the session, the call is ended on both."""
        leg = fwd.leg
        call = leg.call
        call.log.warning("call.hangup", reason=refused.counter, leg=leg.peer.name, method=fwd.method)
        self._reply(fwd.server, 488, refused.reason, now, to_tag=leg.local_tag)
        leg.discard_pending(fwd.server)
        if fwd.method == "INVITE":
            leg.server_invite = None
            leg.peer.client_invite = None
            self._ack_reinvite(leg.peer, txn, response, None, now)
        self.hangup(call, f"bad_answer_{refused.counter}", now)

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
        refused = self._ack_reinvite(leg.peer, client_txn, None, ack, now, cseq=peer_cseq)
        if leg is call.a and call.state is ANSWERED:
            call.state = CONFIRMED
            call.b_acked = True
            call.compact()
            journal = self.journal
            if journal is not None:
                journal.changed(call)
        if refused is not None:
            # the answer to a late offer cannot cross: the ACK went without it, the session ends
            call.log.warning("call.hangup", reason=refused.counter, leg=leg.name, method="ACK")
            self.hangup(call, f"bad_answer_{refused.counter}", now)

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

    def _ask_session_timer(self, call: Call, request: Request) -> None:
        """RFC 4028 §7.1: ask the callee for a session timer the caller did not ask for
        (``calls.session_expires_s``), with the callee as refresher: its refreshes cross to
        the caller as ordinary re-INVITEs/UPDATEs, and a callee whose peer has gone (a lost
        worker) hangs up its leg itself after the interval instead of staying up."""
        lines = self._timer_lines
        if lines is None:
            cfg = self.calls_cfg
            lines = self._timer_lines = (f"{cfg.session_expires_s};refresher=uas", str(cfg.min_se_s))
        h = request.headers
        keys = h.columns()[1]
        h.add("Session-Expires", lines[0])
        if "min-se" not in keys:
            h.add("Min-SE", lines[1])
        if "supported" not in keys:
            h.add("Supported", "timer")
        else:
            supported = [tag for tag in h.values("supported") if tag]  # an empty line is legal
            if not any(tag.lower() == "timer" for tag in supported):
                h.remove("Supported")
                h.add("Supported", ", ".join([*supported, "timer"]))
        call.own_timer = True

    def _session_timer(self, call: Call, response: Response, now: float) -> None:
        """RFC 4028: refreshes pass end to end; if none arrives within the negotiated interval
        the session is considered dead and both legs are released."""
        se = response.headers.get("session-expires")
        if not se:
            if call.own_timer and call.session_interval:
                # a refresh of sipmask's own timer, answered by a caller who knows none
                call.set_timer("session", self.timers.schedule(
                    now + call.session_interval, self._on_session_expired, call))
            return
        value = se.split(";", 1)[0].strip()
        if not value.isdigit():
            return
        interval = int(value)
        if interval <= 0:
            return
        call.session_interval = interval
        call.set_timer("session", self.timers.schedule(now + interval, self._on_session_expired, call))


def drop_timer(headers: Headers) -> None:
    """Take the session timer's lines off a message for a party that asked for none:
    Session-Expires and Min-SE, and ``timer`` from Require (RFC 4028 §7, §9). Most messages
    hold none of them (a ringing 180, a callee without timers): one scan of the keys then."""
    keys = headers.columns()[1]
    if "session-expires" not in keys and "min-se" not in keys and "require" not in keys:
        return
    headers.remove("Session-Expires")
    headers.remove("Min-SE")
    require = headers.values("require")
    if any(tag.lower() == "timer" for tag in require):
        headers.remove("Require")
        rest = [tag for tag in require if tag.lower() != "timer"]
        if rest:
            headers.add("Require", ", ".join(rest))


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
    """Whether the message carries an SDP body (after the body policy: only SDP is relayed
    through the media relay)."""
    ctype = message.headers.get("content-type")
    return bool(message.body) and ctype is not None and "application/sdp" in ctype.lower()
