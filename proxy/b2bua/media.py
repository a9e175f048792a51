"""Media anchoring: each SDP offer and answer of a call rewritten by the media relay
(rtpengine, ``[media] mode = "rtpengine"``), so that each party sees only the relay's address.

Sans-IO like the rest of the B2BUA: the relay is a :class:`MediaControl` whose ``offer`` and
``answer`` take the SDP and later call ``done(rewritten_sdp_or_None, now)``; meanwhile the
message waits, as an INVITE waits for the lookup hook. The caller's INVITE waits with its call
already set up (so CANCEL and the ring timeout end it as usual), the callee's 18x/2xx waits as
the response ``out`` that would have been sent. ``delete`` (in ``Teardown._end``: every end
of a call) is fire-and-forget.

The relay knows a call as one session: call-id = sipmask's own call key (random; neither
Call-ID of the legs), from-tag = our tag toward the caller, to-tag = our tag toward the callee.
The rewritten SDP still goes through ``_sdp`` (the SDP policy) before it leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..sip.message import Request, Response
from ..sip.transaction import ClientTransaction, RequestReceived, ServerTransaction
from .call import ENDED, Call, Leg
from .teardown import Teardown

if TYPE_CHECKING:
    from .in_dialog import Forwarded


class MediaFlow(Teardown):
    """Offer, answer and delete of a call's media session (see the module docstring)."""

    def _media_offer(self, call: Call, now: float) -> None:
        """Send the caller's offer through the relay; the B-leg INVITE goes when it answers."""
        assert self.media is not None
        call.media_key = call.id
        a_invite = call.a_invite

        def done(sdp: bytes | None, now: float) -> None:
            try:
                self._media_offered(call, sdp, now)
            except Exception as exc:  # noqa: BLE001 - outside handle: the same guard
                self._internal_error(RequestReceived(a_invite, call.a.source, call.a_txn), exc, now)

        # the caller's SDP as the body policy let it cross (whitelisted, a multipart's SDP part)
        b_invite = call.b_invite
        offer = b_invite.body if b_invite is not None and b_invite.body else a_invite.body
        self.media.offer(call.id, call.a.local_tag, call.b.local_tag, offer, done)

    def _media_offered(self, call: Call, sdp: bytes | None, now: float) -> None:
        if call.state is ENDED or call.b_invite is None:
            return  # cancelled or timed out while the relay thought (``_end`` sent delete)
        if sdp is None:
            if self.config.media.on_unavailable == "reject":
                self._count("media_unavailable")
                call.log.warning("call.rejected", reason="media_unavailable")
                call.media_key = ""  # no session was made: nothing to delete
                call.final_sent = True
                call.code = 503
                call.cause = "media_unavailable"
                self._reply(call.a_txn, 503, None, now, to_tag=call.a.local_tag,
                            extra=[("Retry-After", str(self.config.media.retry_after_s))])
                self._end(call, "failed", now)
                return
            self._count("media_unanchored")
            call.log.warning("media.unanchored")
            call.media_key = ""  # the B INVITE keeps the sanitised SDP of the caller
        else:
            call.media_sdp = self._sdp(sdp)
            call.b_invite.body = call.media_sdp
        self._send_b_invite(call, now)

    # -- what the flows above provide (they come first in the B2BUA's MRO) --------------------

    def _send_b_invite(self, call: Call, now: float) -> None:
        """Send the call's B-leg INVITE (``InviteFlow``)."""
        raise NotImplementedError

    def _send_forwarded(self, leg: Leg, txn: ServerTransaction, out: Request, now: float) -> None:
        """Send an in-dialog request relayed from ``leg`` (``InDialogFlow``)."""
        raise NotImplementedError

    def _send_forwarded_response(self, fwd: Forwarded, response: Response, txn: ClientTransaction,
                                 out: Response, now: float) -> None:
        """Relay the peer's answer to a forwarded request (``InDialogFlow``)."""
        raise NotImplementedError

    def _media_answer(self, call: Call, sdp: bytes, out: Response, now: float) -> None:
        """Send the callee's answer through the relay; ``out`` (to the caller) goes when it
        answers. A provisional is dropped if the final answer went first or the relay fails;
        a 2xx whose answer fails ends the call with 503 (the callee's media already points at
        the relay, the caller's would not)."""
        assert self.media is not None

        def done(rewritten: bytes | None, now: float) -> None:
            try:
                self._media_answered(call, out, rewritten, now)
            except Exception as exc:  # noqa: BLE001 - outside handle: the same guard
                self._internal_error(RequestReceived(call.a_invite, call.a.source, call.a_txn),
                                     exc, now)

        self.media.answer(call.media_key, call.a.local_tag, call.b.local_tag, sdp, done)

    def _media_answered(self, call: Call, out: Response, sdp: bytes | None, now: float) -> None:
        a_txn = call.a_txn
        if a_txn is None or call.state is ENDED:
            return
        last = a_txn.last_response
        if last is not None and last.status >= 200:
            return  # the final answer went first: this provisional is stale
        if sdp is not None:
            out.body = self._sdp(sdp)
            self.layer.send_response(a_txn, out, now)
            return
        self._count("media_answer_failed")
        call.log.warning("media.answer_failed", status=out.status)
        if out.status < 200:
            return
        call.final_sent = False
        call.code = 503
        call.cause = "media_unavailable"
        self._answer_caller(call, 503, None, now)
        if call.b.dialog is not None:
            if not call.b_acked:
                self._confirm_b(call, now)
            self._send_bye(call.b, now)
        self._end(call, "failed", now)

    # -- re-INVITE and UPDATE within a call ------------------------------------------------

    def _media_exchange(self, kind: str, offerer: Leg, sdp: bytes, request: Request,
                        txn: ServerTransaction, then: Callable[[bytes | None, float], None]) -> None:
        """An in-dialog offer from ``offerer`` (``kind = "offer"``) or the answer to it,
        through the relay; ``then(sanitised_sdp_or_None, now)``, guarded like ``handle``."""
        assert self.media is not None
        call = offerer.call

        def done(rewritten: bytes | None, now: float) -> None:
            try:
                then(None if rewritten is None else self._sdp(rewritten), now)
            except Exception as exc:  # noqa: BLE001 - outside handle: the same guard
                self._internal_error(RequestReceived(request, offerer.source, txn), exc, now)

        ask = self.media.offer if kind == "offer" else self.media.answer
        ask(call.media_key, offerer.local_tag, offerer.peer.local_tag, sdp, done)

    def _media_reoffer(self, leg: Leg, request: Request, txn: ServerTransaction, out: Request) -> None:
        """A re-INVITE or UPDATE offer from ``leg``: relayed with the relay's SDP; if the relay
        fails, refused with 503 and the call goes on with the media it has."""
        def send(sdp: bytes | None, now: float) -> None:
            last = txn.last_response
            if last is not None and last.status >= 200:
                return  # answered meanwhile (487 at teardown)
            if leg.call.state is ENDED or sdp is None:
                if sdp is None:
                    self._count("media_reoffer_failed")
                    leg.call.log.warning("media.reoffer_failed", method=request.method)
                if request.method == "INVITE":
                    leg.server_invite = None
                if leg.call.state is ENDED:
                    self._reply(txn, 481, None, now, to_tag=leg.local_tag)
                else:
                    self._reply(txn, 503, None, now, to_tag=leg.local_tag,
                                extra=[("Retry-After", str(self.config.media.retry_after_s))])
                return
            out.body = sdp
            self._send_forwarded(leg, txn, out, now)

        self._media_exchange("offer", leg, request.body, request, txn, send)

    def _media_reanswer(self, fwd: Forwarded, response: Response, txn: ClientTransaction,
                        out: Response) -> None:
        """The peer's 2xx answer to a re-offer: relayed with the relay's SDP. If the relay
        fails, the offerer gets 500 and the peer's 2xx is ACKed here (the call is not cut)."""
        leg = fwd.leg
        server = fwd.server

        def relay(sdp: bytes | None, now: float) -> None:
            last = server.last_response
            if sdp is not None and leg.call.state is not ENDED and (last is None or last.status < 200):
                out.body = sdp
                self._send_forwarded_response(fwd, response, txn, out, now)
                return
            if sdp is None:
                self._count("media_reanswer_failed")
                leg.call.log.warning("media.reanswer_failed", method=fwd.method)
            if last is None or last.status < 200:
                self._reply(server, 500, None, now, to_tag=leg.local_tag)
            leg.discard_pending(server)
            if fwd.method == "INVITE":
                self._ack_reinvite(leg.peer, txn, response, None, now)
                leg.server_invite = None
                leg.peer.client_invite = None

        self._media_exchange("answer", leg, response.body, server.request, server, relay)


__all__ = ["MediaFlow"]
