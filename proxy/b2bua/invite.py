"""A new call, up to its answer: admission at the door, trunk check, identities, pairing
lookup (or the unknown-caller policy: uniform rejection, fallback route, lookup hook), the
B-leg INVITE as a new dialog toward the callee, serial failover between gateways, the
callee's provisional and final responses relayed to the caller, the caller's CANCEL, the ring
timeout."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Final

from ..config import Gateway, TrunkConfig
from ..pairing.model import Match
from ..sip.dialog import Dialog, DialogState
from ..sip.errors import SipParseError
from ..sip.headers import split_list
from ..sip.message import REASONS, Headers, Request, Response, build_response
from ..sip.transaction import Address, ClientTransaction, RequestReceived, ServerTransaction
from ..sip.uri import NameAddr, SipUri
from .base import gateway_address, map_final, peer_reason, user_of
from .bodies import Refusal
from .call import ANSWERED, EARLY, ENDED, Call, Leg, TransactionData
from .in_dialog import InDialogFlow, drop_timer

if TYPE_CHECKING:
    from .b2bua import B2bua

_FAILOVER_CODES = frozenset((408, 503))
#: RFC 4028 §7.4: INVITEs sent again after a 422 before it is relayed to the caller
_MAX_422_RETRIES: Final = 2


def _delta_seconds(value: str | None) -> int | None:
    """The delta-seconds of a Session-Expires or Min-SE value (RFC 4028 §4, parameters after
    it ignored), or None when absent or unparsable."""
    if not value:
        return None
    number = value.partition(";")[0].strip()
    return int(number) if number.isdigit() and number.isascii() and len(number) <= 9 else None
_CONTACT_SCHEMES = frozenset(("sip", "sips"))


def contact_problem(request: Request) -> str | None:
    """Why ``request``'s Contact cannot be a dialog's remote target (the reason phrase of the
    400), or None when it is one SIP/SIPS URI with a host (RFC 3261 §8.1.1.8)."""
    lines = request.headers.get_all("contact")
    if not lines:
        return "Missing Contact"
    if len(lines) != 1:
        return "Bad Contact"
    return _contact_line_problem(lines[0])


@functools.lru_cache(maxsize=4096)
def _contact_line_problem(line: str) -> str | None:
    """``contact_problem`` of one Contact line. Cached: a UA's Contact recurs over its calls,
    and the full parse of the name-addr and its URI cost ~1.4% of a call's instructions."""
    try:
        contacts = [NameAddr.parse(v) for v in split_list(line)]
        if len(contacts) != 1:
            return "Bad Contact"
        uri = contacts[0].uri
        if uri.partition(":")[0].lower() not in _CONTACT_SCHEMES or not SipUri.parse(uri).host:
            return "Bad Contact"
    except SipParseError:
        return "Bad Contact"
    return None
# read once: a member looked up on its enum class costs ~70 ns on CPython 3.11 (a property)
_DIALOG_CONFIRMED: Final = DialogState.CONFIRMED


class InviteFlow(InDialogFlow):
    """From the caller's INVITE to the call's answer (or its failure)."""

    def _screen(self, request: Request, source: Address, now: float,
                delay: float) -> tuple[int, list[tuple[str, str]]] | None:
        """Admission of a new call (``TransactionLayer.screen``), before any transaction or
        call exists. A refused call gets ``503`` + Retry-After sent statelessly (§8.2.7): no
        100 Trying, no transaction, no timers, its ACK absorbed by the layer. A refusal then
        costs a fraction of a stateful one, which is what keeps goodput near the peak under
        overload. Calls from untrusted sources pass the door and get their own answer
        (``calls.untrusted_code``, from ``_new_call``)."""
        if self.draining:
            self._count("draining")
            return 503, self._retry_after
        if self._trunk(source.host) is None:
            return None
        if self.admission.admit(now, self.layer.late_retransmissions, delay):
            return None
        self._count("overload")
        return 503, self._retry_after

    def _new_call(self, request: Request, source: Address, txn: ServerTransaction, now: float) -> None:
        cfg = self.calls_cfg
        trunk = self._trunk(source.host)
        if trunk is None:
            self._count("untrusted")
            self.log.warning("call.rejected", reason="untrusted_source", source=source.host)
            self._reply(txn, cfg.untrusted_code, None, now)
            return
        mf = request.headers.get("max-forwards")
        max_forwards = int(mf) if mf is not None and mf.isdigit() else 70
        if max_forwards <= 0:
            self._reply(txn, 483, None, now)
            return
        problem = contact_problem(request)
        if problem is not None:
            # §8.1.1.8: an INVITE MUST carry one Contact, a SIP or SIPS URI: it is the remote
            # target of the caller's dialog (without it a BYE would have no Request-URI)
            self._count("bad_contact")
            self.log.info("call.rejected", reason="bad_contact", trunk=trunk.name)
            self._reply(txn, 400, problem, now)
            return
        if request.body:
            # before the lookup: an answer that depended on the table would tell who is paired
            crossed = self._cross(request)
            if isinstance(crossed, Refusal):
                self.log.info("call.rejected", reason=crossed.counter, trunk=trunk.name)
                self._reply(txn, crossed.status, crossed.reason, now, extra=list(crossed.extra) or None)
                return
        caller, dialed = self._identities(request, trunk)
        match = None
        if caller is not None and dialed is not None:
            match = self.pairings.lookup(caller, dialed, self.wall_clock(now))
        if match is not None and match.mode == "message":
            match = None  # a message-only session carries no calls: the uniform rejection
        if match is None and caller is not None and dialed is not None:
            policy = cfg.unknown_policy
            if policy == "route" and cfg.fallback_route:
                # the business's own fallback (an IVR, an agent queue): the dialed line, no caller number
                match = Match("fallback", dialed, dialed)
                self._bridge(request, source, txn, trunk, caller, dialed, match, max_forwards, now,
                             gateways=cfg.fallback_route)
                return
            if policy == "hook" and self.unknown_lookup is not None:
                answer = self.unknown_lookup.cached(caller, dialed)
                if isinstance(answer, Match) or answer is None:
                    match = answer
                else:
                    self._ask_hook(request, source, txn, trunk, caller, dialed, max_forwards)
                    return
        self._bridge(request, source, txn, trunk, caller, dialed, match, max_forwards, now)

    def _reject_tokens(self, request: Request, caller: str | None,
                       dialed: str | None) -> dict[str, str]:
        """Who a rejected call was, as the tokens of its caller, dialed number and Call-ID
        (``#`` + the CDR token, as the log's redaction writes a number), so that "why was
        this caller rejected?" is answered by ``grep "$(sipmask token-of NUMBER)"``."""
        return {
            "caller": "#" + self._number_token(caller) if caller else "-",
            "dialed": "#" + self._number_token(dialed) if dialed else "-",
            "call_id": "#" + self.tokenize(request.call_id),
        }

    def _ask_hook(self, request: Request, source: Address, txn: ServerTransaction,
                  trunk: TrunkConfig, caller: str, dialed: str, max_forwards: int) -> None:
        """Park the INVITE (100 Trying is already out) until the hook answers."""
        assert self.unknown_lookup is not None
        txn.tu_data = _AWAITING_HOOK
        self._count("hook_asked")

        def done(match: Match | None, now: float) -> None:
            if txn.tu_data is not _AWAITING_HOOK:
                return  # cancelled (CANCEL answered 487) while the hook was thinking
            txn.tu_data = None
            last = txn.last_response
            if last is not None and last.status >= 200:
                return
            try:  # called by the hook's adapter, outside ``handle``: guarded the same way
                self._bridge(request, source, txn, trunk, caller, dialed, match, max_forwards, now)
            except Exception as exc:  # noqa: BLE001 - outside handle: the same guard
                self._internal_error(RequestReceived(request, source, txn), exc, now)

        self.unknown_lookup.ask(caller, dialed, done)

    def _bridge(self, request: Request, source: Address, txn: ServerTransaction, trunk: TrunkConfig,
                caller: str | None, dialed: str | None, match: Match | None, max_forwards: int,
                now: float, gateways: tuple[Gateway, ...] | None = None) -> None:
        """Reject uniformly (no match) or set up the call and send the B-leg INVITE."""
        cfg = self.calls_cfg
        if match is None:
            # one uniform answer whatever the reason, so the table cannot be enumerated
            self._count("no_pairing")
            self.log.info("call.rejected", reason="no_pairing", trunk=trunk.name,
                          **self._reject_tokens(request, caller, dialed))
            self._reply(txn, cfg.unknown_code, cfg.unknown_reason, now)
            return
        policy = match.policy
        if policy is not None:
            refusal = policy.refusal(self.wall_clock(now))  # a calling window, a one-way session
            if refusal is not None:  # the uniform answer, as below: the log and counter keep why
                self._count(refusal)
                self.log.info("call.rejected", reason=refusal, pairing_id=match.session_id)
                self._reply(txn, cfg.unknown_code, cfg.unknown_reason, now)
                return
        if gateways is None:
            route = self.config.route_for(match.callee)
            gateways = route.gateways if route is not None else ()
        if not gateways:
            self._count("no_route")
            self.log.warning("call.rejected", reason="no_route", pairing_id=match.session_id,
                             **self._reject_tokens(request, caller, dialed))
            # the uniform answer: a 503 here would tell a caller who spoofs a paired number
            # that this virtual number is paired (the log and the counter keep the reason)
            self._reply(txn, cfg.unknown_code, cfg.unknown_reason, now)
            return
        if cfg.max_calls and len(self.calls) >= cfg.max_calls:
            self._count("overload")
            self._reply(txn, 503, None, now, extra=[("Retry-After", str(cfg.overload_retry_after_s))])
            return

        call_key = self.ids.call_id()
        call = Call(call_key, request, txn, match, now, self.log)
        call.gateways = gateways
        call.caller_token = self._number_token(caller or "")
        call.callee_token = self._number_token(match.callee)
        a_tag = self.ids.tag()
        call.a = Leg(call, "a", source.transport, source, request.call_id, a_tag)
        call.a.contact = self._contacts(source.transport, dialed or "sipmask")
        call.a.dialog = Dialog.uas(request, a_tag, None)
        txn.tu_data = call
        self.calls[call_key] = call
        self.dialogs[(request.call_id, a_tag)] = call.a
        self.pairings.touch(match.session_id, self.wall_clock(now))
        self._count("calls")
        if self._info:
            call.log.info("call.received", trunk=trunk.name, transport=source.transport)
        if self.events is not None:
            self.events("call.started", {
                "session_id": match.session_id, "call_id_token": self._call_id_token(call),
                "caller_token": call.caller_token, "callee_token": call.callee_token,
                "started_at": self.wall_clock(now), "trunk": trunk.name,
            })

        gw = call.gateways[0]
        b_call_id = self.ids.call_id()
        call.b = Leg(call, "b", gw.transport, gateway_address(gw), b_call_id, self.ids.tag())
        call.b.contact = self._contacts(gw.transport, match.present)
        call.b_invite = self._build_b_invite(call, request, gw, min(max_forwards - 1, 70), 1, dialed or "")
        self.dialogs[(b_call_id, call.b.local_tag)] = call.b
        if self.media is not None and request.body:
            self._media_offer(call, now)  # the B INVITE goes when the relay has answered
        else:
            self._send_b_invite(call, now)
        ring_s = cfg.ring_timeout_s if policy is None or policy.ring_timeout_s is None else policy.ring_timeout_s
        call.set_timer("ring", self.timers.schedule(now + ring_s, self._on_ring_timer, call))

    def _build_b_invite(self, call: Call, a_invite: Request, gw: Gateway, max_forwards: int, cseq: int,
                        dialed: str) -> Request:
        b = call.b
        req = self._outbound_request("INVITE", call.match, gw, dialed, b.local_tag, b.call_id, cseq, max_forwards)
        req.headers.add("Contact", b.contact)
        self._copy_headers(a_invite, req)
        if self.calls_cfg.session_expires_s and "session-expires" not in a_invite.headers:
            self._ask_session_timer(call, req)
        self._copy_body(a_invite, req)  # checked in _new_call: the same answer, kept
        return req

    def _send_b_invite(self, call: Call, now: float) -> None:
        assert call.b_invite is not None
        gw = call.gateways[call.gateway_index]
        dest = gateway_address(gw)
        call.b.source = dest
        call.b.transport = gw.transport
        txn = self.layer.send_request(call.b_invite, dest, now)
        txn.tu_data = call
        call.b_txn = txn
        call.cancel_timer("failover")
        if call.gateway_index + 1 < len(call.gateways):
            call.set_timer("failover", self.timers.schedule(
                now + self.failover_timeout, self._on_failover_timer, (call, txn)
            ))

    def _failover_timer(self, attempt: tuple[Call, ClientTransaction], now: float) -> None:
        """No provisional from this gateway in time (``calls.failover_timeout_s``)."""
        self._failover(attempt[0], attempt[1], now)

    def _failover(self, call: Call, txn: ClientTransaction, now: float) -> bool:
        """RFC 3261 §16.7-style serial forking: next gateway on 408/503/no response before
        any provisional. Returns True when another gateway was tried."""
        if call.state is ENDED or call.provisional_seen or call.b_txn is not txn:
            return False
        if call.gateway_index + 1 >= len(call.gateways):
            return False
        self.layer.abandon(txn)
        call.gateway_index += 1
        gw = call.gateways[call.gateway_index]
        self._count("failover")
        call.log.warning("call.failover", gateway=call.gateway_index)
        old = call.b_invite
        assert old is not None
        cseq = old.cseq.number + 1
        dialed = user_of(old.to.uri) or ""
        mf = old.headers.get("max-forwards") or "70"
        call.b.contact = self._contacts(gw.transport, call.match.present)
        call.b_invite = self._build_b_invite(call, call.a_invite, gw, int(mf), cseq, dialed)
        if call.media_sdp:
            call.b_invite.body = call.media_sdp  # the relay's offer, not the caller's
        self._send_b_invite(call, now)
        return True

    def b_invite_response(self, call: Call, response: Response, txn: ClientTransaction, now: float) -> None:
        """A response to the call's B-leg INVITE (its current gateway attempt)."""
        status = response.status
        if status < 200:
            call.cancel_timer("failover")
            if call.cancel_pending:
                # §9.1: any provisional response, 100 included, lets the held CANCEL go; a
                # callee that sends 100 and then nothing would else hold the INVITE forever
                call.cancel_pending = False
                call.provisional_seen = True
                self._send_b_cancel(call, now)
                return
            if status == 100:
                return
            call.provisional_seen = True
            if call.state is ENDED or call.final_sent:
                return
            self._update_b_dialog(call, response, early=True)
            if response.to_tag:
                if response.body and self._bad_answer(call, response, txn, now):
                    return
                call.state = EARLY
                self._relay_to_a(call, response, now)
            return
        call.cancel_timer("failover")
        if status < 300:
            self._on_b_answer(call, response, txn, now)
            return
        if status == 422 and self._retry_session_interval(call, response, txn, now):
            return
        # 3xx-6xx: failover or relay (§16.7 step 6-like choice, one branch at a time)
        if status in _FAILOVER_CODES and call.state is not ENDED and self._failover(call, txn, now):
            return
        if call.state is ENDED or call.final_sent:
            return
        call.cancel_timer("ring")
        mapped = map_final(status)
        call.code = mapped
        call.cause = f"b_{status}"
        self._relay_to_a(call, response, now, status=mapped)
        self._end(call, "failed" if status not in (486, 600, 603) else "busy", now)

    def _retry_session_interval(self, call: Call, response: Response, txn: ClientTransaction,
                                now: float) -> bool:
        """RFC 4028 §7.4: a 422 names the smallest session interval the callee accepts (Min-SE);
        the INVITE is sent again in the same B-leg dialog attempt (same Call-ID and From tag,
        CSeq + 1) with Session-Expires and Min-SE raised to it, at most ``_MAX_422_RETRIES``
        times and only when it really raises them. Returns True when it was sent again."""
        old = call.b_invite
        if call.state is ENDED or call.final_sent or old is None or call.b_txn is not txn:
            return False
        min_se = _delta_seconds(response.headers.get("min-se"))
        sent = _delta_seconds(old.headers.get("session-expires")) or 0
        # CSeq 1 at the first gateway, +1 per failover and per retry (see _failover)
        retries = old.cseq.number - 1 - call.gateway_index
        if min_se is None or min_se <= sent or retries >= _MAX_422_RETRIES:
            return False
        gw = call.gateways[call.gateway_index]
        mf = old.headers.get("max-forwards") or "70"
        retry = self._build_b_invite(call, call.a_invite, gw, int(mf), old.cseq.number + 1,
                                     user_of(old.to.uri) or "")
        refresher = (old.headers.get("session-expires") or "").partition(";")[2]
        retry.headers.set("Session-Expires", f"{min_se};{refresher}" if refresher else str(min_se))
        retry.headers.set("Min-SE", str(min_se))
        txn.tu_data = None  # the 422's transaction only absorbs retransmissions from here
        call.b_invite = retry
        call.log.info("call.session_interval_raised", min_se=min_se)
        self._send_b_invite(call, now)
        return True

    def _on_b_answer(self, call: Call, response: Response, txn: ClientTransaction, now: float) -> None:
        """A 2xx to the B-leg INVITE: the call is answered, unless it ended or was answered first."""
        if call.state is ENDED or call.final_sent:
            if (call.answered_at is not None and call.b.dialog is not None
                    and response.to_tag == call.b.dialog.remote_tag):
                # §13.3.1.4: a retransmission of the 2xx we relayed. Once B is ACKed the
                # transaction layer re-sends that ACK (RFC 6026 Accepted); until then it is
                # held for the caller's ACK (it may carry a late offer's answer), and our
                # 2xx to the caller is retransmitted by A's server transaction.
                return
            # answered after CANCEL / ring timeout / from another fork: ACK it and hang up (§15)
            self.release_2xx(response, txn, now)
            return
        if response.body and self._bad_answer(call, response, txn, now):
            return
        self._update_b_dialog(call, response, early=False)
        call.cancel_timer("ring")
        call.state = ANSWERED
        call.answered_at = now
        call.code = response.status
        self._relay_to_a(call, response, now)
        a_cseq = call.a_invite.cseq.number
        assert call.b_invite is not None
        call.a.expect_ack(a_cseq, txn, call.b_invite.cseq.number)
        self._session_timer(call, response, now)
        limit_s = self.calls_cfg.max_duration_s
        policy = call.match.policy
        if policy is not None:
            if policy.max_call_s is not None:
                limit_s = policy.max_call_s
            if policy.single_use:  # its one call is answered: no other may follow
                self.pairings.close_used(call.pairing_id, self.wall_clock(now))
        if limit_s > 0:
            call.set_timer("max_duration", self.timers.schedule(
                now + limit_s, self._on_max_duration, call
            ))
        if self._info:
            call.log.info("call.answered", setup_ms=round((now - call.started_at) * 1000))
        if self.events is not None:
            self.events("call.answered", {
                "session_id": call.pairing_id, "call_id_token": self._call_id_token(call),
                "caller_token": call.caller_token, "callee_token": call.callee_token,
                "answered_at": self.wall_clock(now),
                "setup_ms": round((now - call.started_at) * 1000),
            })

    def _bad_answer(self, call: Call, response: Response, txn: ClientTransaction, now: float) -> bool:
        """The callee's 18x/2xx carries a body that may not cross (SDP that does not parse, a
        type refused by rule): the call ends. The caller gets 488 (§21.4.26), the callee a
        CANCEL (18x) or ACK and BYE (2xx, §13.2.2.4: ACK first, then end the session)."""
        crossed = self._cross(response)
        if not isinstance(crossed, Refusal):
            return False
        call.log.warning("call.rejected", reason=crossed.counter, leg="b", status=response.status)
        call.cancel_timer("ring")
        if response.status >= 200:
            self.release_2xx(response, txn, now)
        else:
            self._cancel_b(call, now)
        self._answer_caller(call, 488, crossed.reason, now)
        call.code = 488
        call.cause = f"b_{crossed.counter}"
        self._end(call, "failed", now)
        return True

    def _update_b_dialog(self, call: Call, response: Response, *, early: bool) -> None:
        b = call.b
        tag = response.to_tag
        if not tag:
            return
        assert call.b_invite is not None
        if b.dialog is None or b.dialog.remote_tag != tag:
            b.dialog = Dialog.uac(call.b_invite, response)
        else:
            b.dialog.target_refresh(response)
        if not early:
            b.dialog.state = _DIALOG_CONFIRMED

    def _relay_to_a(self, call: Call, response: Response, now: float, *, status: int | None = None) -> None:
        """Map a response to the B INVITE onto the A INVITE (§8.2.6, §12.1.1)."""
        status = status or response.status
        a = call.a
        reason = REASONS.get(status, response.reason) if status != response.status else peer_reason(response.reason)
        head = call.a_head if status < 300 else None
        if head is not None:
            # the lines every 1xx/2xx to A shares (from the A INVITE, our tag, Record-Route,
            # Contact, P-Asserted-Identity), rendered by the first one: same result, less work
            names, keys, values = head
            out = Response(status, reason, Headers.from_lists(list(names), list(keys), list(values)))
            h = out.headers
        else:
            out = build_response(call.a_invite, status, reason, to_tag=a.local_tag)
            h = out.headers
            if status < 300 or status >= 700:
                for rr in call.a_invite.headers.get_all("record-route"):
                    h.add("Record-Route", rr)  # §12.1.1: the UAS copies Record-Route into dialog-creating responses
                h.add("Contact", a.contact)
            dialed = user_of(call.a_invite.uri) or ""
            h.add("P-Asserted-Identity", f"<sip:{dialed}@{self._host()}>")
            if status < 300 and call.state is not ANSWERED:
                lines = h.columns()
                call.a_head = (tuple(lines[0]), tuple(lines[1]), tuple(lines[2]))
        self._copy_headers(response, out)  # 3xx Contacts never cross: Contact is not policy's to pass
        if call.own_timer:
            drop_timer(h)  # the caller asked for no session timer: the B leg's is sipmask's
        if status < 300:
            self._copy_body(response, out)  # checked in b_invite_response: the same answer, kept
        if status >= 200:
            call.final_sent = True
        if self.server_header:
            h.add("Server", self.server_header)
        if call.media_key and status < 300 and response.body:
            self._media_answer(call, response.body, out, now)  # sent when the relay answers
            return
        self.layer.send_response(call.a_txn, out, now)

    def b_invite_failed(self, call: Call, txn: ClientTransaction, timer: str, now: float) -> None:
        """Timer B or a transport failure on the B INVITE: failover, else 408 (503 for the
        transport) to the caller (§8.1.3.1)."""
        if self._failover(call, txn, now):
            return
        if not call.final_sent and call.state is not ENDED:
            status = 408 if timer == "B" else 503
            self._answer_caller(call, status, None, now)
            call.code = status
            call.cause = f"b_timeout_{timer}"
            self._end(call, "failed", now)

    def caller_cancelled(self, call: Call, cancelled: ServerTransaction, now: float) -> None:
        """The caller's CANCEL (already answered 200) matched its INVITE: 487 to it and the
        B leg cancelled, unless the final answer went first (§9.2)."""
        if call.final_sent or call.state is ENDED:
            return  # §9.2: CANCEL after the final response has no effect
        if cancelled.request is not call.a_invite:
            return  # CANCEL of a re-INVITE: answered above; the re-INVITE completes normally
        self._answer_caller(call, 487, None, now)
        call.code = 487
        call.cause = "caller_cancel"
        self._cancel_b(call, now)
        self._end(call, "cancelled", now)

    def hook_cancelled(self, cancelled: ServerTransaction, now: float) -> None:
        """A CANCEL while the lookup hook thinks: 487, and its late answer is ignored."""
        cancelled.tu_data = None
        self._reply(cancelled, 487, None, now)

    def _ring_timeout(self, call: Call, now: float) -> None:
        if call.final_sent or call.state is ENDED:
            return
        self._answer_caller(call, 480, "No Answer", now)
        call.code = 480
        call.cause = "ring_timeout"
        self._cancel_b(call, now)
        self._end(call, "no_answer", now)


class _AwaitingHook(TransactionData):
    """tu_data of an INVITE server transaction parked until the lookup hook answers."""

    __slots__ = ()

    def on_cancel(self, b2bua: B2bua, cancelled: ServerTransaction, now: float) -> None:
        """The caller gave up while the hook thought."""
        b2bua.hook_cancelled(cancelled, now)


_AWAITING_HOOK: Final = _AwaitingHook()
