"""The B2BUA transaction user: bridges every call as two independent dialogs and maps every
message across legs through the header policy, so neither party learns the other's number
or network address.

Sans-IO like the SIP core: it consumes transaction-layer events with a ``now`` (monotonic
seconds) and produces messages through the :class:`TransactionLayer`; its own timers (ring
timeout, gateway failover, session expiry, maximum duration) live in a :class:`TimerHeap` whose
next deadline the asyncio adapter arms.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

from ..config import CallsConfig, Config, Gateway, TrunkConfig
from ..pairing.model import Cdr, Match, cdr_payload
from ..pairing.normalize import try_normalize
from ..sip.dialog import Dialog, DialogState
from ..sip.errors import SipParseError
from ..sip.ids import IdGenerator
from ..sip.message import REASONS, Headers, Request, Response, build_response
from ..sip.sdp import sanitise_sdp
from ..sip.transaction import (
    Address,
    ClientTransaction,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    build_cancel,
)
from ..sip.uri import NameAddr, SipUri
from .call import Call, CallState, Leg
from .overload import Admission
from .policy import Rules
from .timers import TimerHeap

#: methods sipmask answers itself out of dialog
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, MESSAGE, NOTIFY"
_TARGET_REFRESH = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"))
_FAILOVER_CODES = frozenset((408, 503))
_IP_CHARS = frozenset("0123456789.:abcdefABCDEF[]")
#: the lines of a request that starts a dialog or transaction toward the callee, in order
_OUTBOUND_NAMES = ("Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "P-Asserted-Identity")
_OUTBOUND_KEYS = ("via", "max-forwards", "from", "to", "call-id", "cseq", "p-asserted-identity")


class PairingLookup(Protocol):
    """What the B2BUA needs from the pairing service."""

    def lookup(self, caller: str, dialed: str, now: float | None = None) -> Match | None: ...

    def touch(self, session_id: str, now: float | None = None) -> None: ...

    def record_cdr(self, cdr: Cdr) -> None: ...


class UnknownLookup(Protocol):
    """The lookup hook as the B2BUA sees it (see ``B2bua.__init__``)."""

    def cached(self, caller: str, dialed: str) -> object: ...

    def ask(self, caller: str, dialed: str, done: Callable[[Match | None, float], None]) -> None: ...


class B2bua:
    """Bridges calls between an A leg (caller, sipmask as UAS) and a B leg (callee, sipmask as UAC)."""

    def __init__(
        self,
        *,
        layer: TransactionLayer,
        config: Config,
        rules: Rules,
        pairings: PairingLookup,
        ids: IdGenerator,
        local_address: Callable[[str], tuple[str, int]],
        tokenize: Callable[[str], str],
        log: Any,
        metrics: Any = None,
        wall_clock: Callable[[float], float] = lambda now: now,
        unknown_lookup: UnknownLookup | None = None,
        events: Callable[[str, dict[str, Any]], object] | None = None,
    ) -> None:
        """``unknown_lookup`` answers for calls no session matches when ``calls.unknown_policy
        = "hook"``: ``cached(caller, dialed)`` returns a Match, None (reject) or anything else
        (not known yet), and ``ask(caller, dialed, done)`` starts the lookup and later calls
        ``done(match_or_none, now)``; the asyncio side provides it (proxy/app.py)."""
        self.layer = layer
        self.unknown_lookup = unknown_lookup
        #: webhook events (call.started/answered/ended): payloads carry tokens, never numbers
        self.events = events
        self.config = config
        self.calls_cfg: CallsConfig = config.calls
        self.rules = rules
        self.pairings = pairings
        self.ids = ids
        self.local_address = local_address
        self.tokenize = tokenize
        # numbers recur (one caller, many calls): keep their tokens, an HMAC each otherwise
        self._number_token = functools.lru_cache(maxsize=65536)(tokenize)
        calls_cfg = config.calls
        self.admission = Admission(calls_cfg.max_cps, calls_cfg.overload_busy,
                                   calls_cfg.overload_retransmissions,
                                   calls_cfg.overload_queue_delay_ms / 1000.0)
        self._retry_after = [("Retry-After", str(calls_cfg.overload_retry_after_s))]
        # source host -> its trunk (or None): parsing the address and matching the trunks'
        # networks costs more than the rest of the admission check; bounded (hosts come from
        # the network)
        self._trunk = functools.lru_cache(maxsize=4096)(config.trunk_for)
        # our Contact per (transport, virtual number): numbers come from a pool, so every call
        # to one shares the string (held by both legs for the whole call) instead of a copy each
        self._contacts = functools.lru_cache(maxsize=4096)(self._render_contact)
        # our Via up to the branch, and our host, per transport: the listening addresses do
        # not change while sipmask runs
        self._via_prefix = functools.lru_cache(maxsize=16)(self._render_via_prefix)
        self._host_name: str | None = None
        # new calls are admitted (or refused, statelessly) at the transaction layer's door
        layer.screen = self._screen
        # resolve a lazy structlog proxy once: each call on a proxy re-reads the configuration
        bind = getattr(log, "bind", None)
        self.log = bind() if bind is not None else log
        is_enabled_for = getattr(self.log, "is_enabled_for", None)
        #: whether per-call info events are emitted (binding the call's logger is skipped if not)
        self._info = is_enabled_for(logging.INFO) if is_enabled_for is not None else True
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.timers = TimerHeap()
        # the B2BUA timers' callbacks, bound once: ``schedule(deadline, callback, call)``
        # then allocates no closure per call (memory held for as long as a call lasts)
        self._on_ring_timer = self._ring_timeout
        self._on_max_duration = functools.partial(self._hangup_for, "max_duration")
        self._on_session_expired = functools.partial(self._hangup_for, "session_expired")
        self.calls: dict[str, Call] = {}
        self.dialogs: dict[tuple[str, str], Leg] = {}
        self.counters: dict[str, int] = {}
        self.failover_timeout = config.calls.failover_timeout_s
        self.server_header = "sipmask"

    # ------------------------------------------------------------------ plumbing
    def set_rules(self, rules: Rules) -> None:
        """Swap the header policy (SIGHUP reload); calls in progress use the new one at once."""
        self.rules = rules

    def next_deadline(self) -> float | None:
        """Earliest B2BUA timer."""
        return self.timers.next_deadline()

    def handle_timers(self, now: float) -> None:
        """Fire due B2BUA timers."""
        self.timers.fire(now)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _via(self, transport: str) -> str:
        return f"{self._via_prefix(transport)}{self.ids.branch()};rport"

    def _render_via_prefix(self, transport: str) -> str:
        host, port = self.local_address(transport)
        return f"SIP/2.0/{transport.upper()} {host}:{port};branch="

    def _render_contact(self, transport: str, user: str) -> str:
        host, port = self.local_address(transport)
        tparam = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{user}@{host}:{port}{tparam}>"

    def _host(self) -> str:
        host = self._host_name
        if host is None:  # the listening addresses are bound for good once calls arrive
            host = self._host_name = self.config.sip.advertise_host or self.local_address("udp")[0]
        return host

    def _sdp(self, body: bytes) -> bytes:
        sdp = self.rules.sdp
        if not body or not sdp.sanitise:
            return body
        return sanitise_sdp(
            body,
            origin_username=sdp.origin_username,
            session_name=sdp.session_name,
            origin_address=self._host(),
        )

    def _copy_headers(self, source: Request | Response, target: Request | Response) -> None:
        self.rules.headers.copy(source.headers, target.headers)

    # ------------------------------------------------------------------ dispatch
    def handle(self, event: object, now: float) -> None:
        """Consume one transaction-layer event."""
        if isinstance(event, RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, ResponseReceived):
            self._on_response(event, now)
        elif isinstance(event, TransactionTimeout):
            self._on_timeout(event.transaction, event.timer, now)
        elif isinstance(event, TransactionTerminated):
            txn = event.transaction
            data = txn.tu_data
            txn.tu_data = None  # nothing matches it again: no call <-> transaction cycle left
            if isinstance(data, Call) and data.state in _SETTLED:
                data.release(txn)
        elif isinstance(event, MessageRejected):
            self._count("rejected")

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        txn = event.transaction
        method = request.method
        try:
            to_tag = request.to_tag
        except SipParseError as exc:
            if txn is not None:
                self._reply(txn, 400, exc.reason, now)
            return
        if to_tag:
            leg = self.dialogs.get((request.call_id, to_tag))
            if leg is None:
                if txn is not None and method != "ACK":
                    self._reply(txn, 481, None, now)
                return
            self._in_dialog(leg, request, txn, now)
            return
        if txn is None:
            return  # a stray ACK without dialog: nothing to do (§17.2.3)
        if method == "INVITE":
            self._new_call(request, event.source, txn, now)
        elif method == "CANCEL":
            self._on_cancel(txn, event.cancelled, now)
        elif method == "MESSAGE":
            self._new_message(request, event.source, txn, now)
        elif method == "OPTIONS":
            self._reply(
                txn, 200, None, now,
                extra=[("Allow", _ALLOW), ("Accept", "application/sdp"), ("Supported", "100rel, timer")],
            )
        else:
            self._reply(txn, 405, None, now, extra=[("Allow", _ALLOW)])

    def _reply(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None,
        now: float,
        *,
        to_tag: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        response = build_response(txn.request, status, reason, to_tag=to_tag or self.ids.tag(), extra=extra)
        self.layer.send_response(txn, response, now)

    # ------------------------------------------------------------------ new call
    def _screen(self, request: Request, source: Address, now: float,
                delay: float) -> tuple[int, list[tuple[str, str]]] | None:
        """Admission of a new call (``TransactionLayer.screen``), before any transaction or
        call exists. A refused call gets ``503`` + Retry-After sent statelessly (§8.2.7): no
        100 Trying, no transaction, no timers, its ACK absorbed by the layer. A refusal then
        costs a fraction of a stateful one, which is what keeps goodput near the peak under
        overload. Calls from untrusted sources pass the door and get their own answer
        (``calls.untrusted_code``, from ``_new_call``)."""
        if self._trunk(source.host) is None:
            return None
        if self.admission.admit(now, self.layer.request_retransmissions, delay):
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
            self._bridge(request, source, txn, trunk, caller, dialed, match, max_forwards, now)

        self.unknown_lookup.ask(caller, dialed, done)

    def _bridge(self, request: Request, source: Address, txn: ServerTransaction, trunk: TrunkConfig,
                caller: str | None, dialed: str | None, match: Match | None, max_forwards: int,
                now: float, gateways: tuple[Gateway, ...] | None = None) -> None:
        """Reject uniformly (no match) or set up the call and send the B-leg INVITE."""
        cfg = self.calls_cfg
        if match is None:
            # one uniform answer whatever the reason, so the table cannot be enumerated
            self._count("no_pairing")
            self.log.info("call.rejected", reason="no_pairing", trunk=trunk.name)
            self._reply(txn, cfg.unknown_code, cfg.unknown_reason, now)
            return
        if gateways is None:
            route = self.config.route_for(match.callee)
            gateways = route.gateways if route is not None else ()
        if not gateways:
            self._count("no_route")
            self.log.warning("call.rejected", reason="no_route", pairing_id=match.session_id)
            self._reply(txn, 503, None, now)
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
        call.b = Leg(call, "b", gw.transport, _gateway_address(gw), b_call_id, self.ids.tag())
        call.b.contact = self._contacts(gw.transport, match.present)
        call.b_invite = self._build_b_invite(call, request, gw, min(max_forwards - 1, 70), 1, dialed or "")
        self.dialogs[(b_call_id, call.b.local_tag)] = call.b
        self._send_b_invite(call, now)
        call.set_timer("ring", self.timers.schedule(now + cfg.ring_timeout_s, self._on_ring_timer, call))

    def _identities(self, request: Request, trunk: TrunkConfig) -> tuple[str | None, str | None]:
        """(caller, dialed) in E.164: caller from P-Asserted-Identity when the trunk is trusted
        for it, else From; dialed from the Request-URI user (RFC 3261 §8.2.2.1 / RFC 3325)."""
        region = trunk.default_region
        caller_user: str | None = None
        try:
            if trunk.trust_pai:
                pai = request.headers.values("p-asserted-identity")
                if pai:
                    caller_user = _user_of(NameAddr.parse(pai[0]).uri)
            if caller_user is None:
                caller_user = _user_of(request.from_.uri)
            dialed_user = _user_of(request.uri)
        except SipParseError:
            return None, None
        caller = try_normalize(caller_user, region) if caller_user else None
        dialed = try_normalize(dialed_user, region) if dialed_user else None
        return caller, dialed

    def _build_b_invite(self, call: Call, a_invite: Request, gw: Gateway, max_forwards: int, cseq: int, dialed: str) -> Request:
        b = call.b
        req = self._outbound_request("INVITE", call.match, gw, dialed, b.local_tag, b.call_id, cseq, max_forwards)
        req.headers.add("Contact", b.contact)
        self._copy_headers(a_invite, req)
        req.body = self._sdp(a_invite.body)
        return req

    def _outbound_request(self, method: str, match: Match, gw: Gateway, dialed: str, from_tag: str,
                          call_id: str, cseq: int, max_forwards: int) -> Request:
        """A request that starts a new dialog or transaction toward the callee: sipmask's Via,
        virtual numbers only in From/To/P-Asserted-Identity (the design's B-leg rules)."""
        host = self._host()
        tparam = "" if gw.transport == "udp" else f";transport={gw.transport}"
        gw_host = f"[{gw.host}]" if ":" in gw.host else gw.host
        values = [
            self._via(gw.transport),
            str(max_forwards),
            f"<sip:{match.present}@{host}>;tag={from_tag}",
            f"<sip:{dialed or match.present}@{gw_host}>",
            call_id,
            f"{cseq} {method}",
            f"<sip:{match.present}@{host}>",
        ]
        headers = Headers.from_lists(list(_OUTBOUND_NAMES), list(_OUTBOUND_KEYS), values)
        return Request(method, f"sip:{match.callee}@{gw_host}:{gw.port}{tparam}", headers)

    def _send_b_invite(self, call: Call, now: float) -> None:
        assert call.b_invite is not None
        gw = call.gateways[call.gateway_index]
        dest = _gateway_address(gw)
        call.b.source = dest
        call.b.transport = gw.transport
        txn = self.layer.send_request(call.b_invite, dest, now)
        txn.tu_data = call
        call.b_txn = txn
        call.cancel_timer("failover")
        if call.gateway_index + 1 < len(call.gateways):
            call.set_timer("failover", self.timers.schedule(
                now + self.failover_timeout, lambda t, c=call, x=txn: self._failover(c, x, t)
            ))

    def _failover(self, call: Call, txn: ClientTransaction, now: float) -> bool:
        """RFC 3261 §16.7-style serial forking: next gateway on 408/503/no response before
        any provisional. Returns True when another gateway was tried."""
        if call.state is CallState.ENDED or call.provisional_seen or call.b_txn is not txn:
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
        dialed = _user_of(old.to.uri) or ""
        mf = old.headers.get("max-forwards") or "70"
        call.b.contact = self._contacts(gw.transport, call.match.present)
        call.b_invite = self._build_b_invite(call, call.a_invite, gw, int(mf), cseq, dialed)
        self._send_b_invite(call, now)
        return True

    # ------------------------------------------------------------------ responses
    def _on_response(self, event: ResponseReceived, now: float) -> None:
        response = event.response
        txn = event.transaction
        if txn is None:
            self._stray_2xx(response, event.source, now)
            return
        data = txn.tu_data
        if isinstance(data, _Message):
            self._on_message_response(data, response, now)
            return
        if isinstance(data, Call):
            if txn is data.b_txn:
                self._on_b_invite_response(data, response, txn, now)
            elif txn.method == "INVITE" and 200 <= response.status < 300:
                self._ack_and_bye_stray(response, txn, now)  # 2xx to a superseded gateway attempt
            return
        if isinstance(data, _Forwarded):
            self._on_forwarded_response(data, response, txn, now)
        elif isinstance(data, _EndedInvite):
            if 200 <= response.status < 300 and response.to_tag != data.acked_tag:
                self._ack_and_bye_stray(response, txn, now)  # a 2xx from another fork

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
            dest = _dialog_dest(dialog, source.transport, source)
        except SipParseError:
            return
        self._ack_and_bye(dialog, dest, None, now)

    def _ack_and_bye_stray(self, response: Response, txn: ClientTransaction, now: float) -> None:
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

    def _on_b_invite_response(self, call: Call, response: Response, txn: ClientTransaction, now: float) -> None:
        status = response.status
        if status < 200:
            call.cancel_timer("failover")
            if status == 100:
                return
            call.provisional_seen = True
            if call.cancel_pending:
                call.cancel_pending = False
                self._send_b_cancel(call, now)
                return
            if call.state is CallState.ENDED or call.final_sent:
                return
            self._update_b_dialog(call, response, early=True)
            if response.to_tag:
                call.state = CallState.EARLY
                self._relay_to_a(call, response, now)
            return
        call.cancel_timer("failover")
        if status < 300:
            self._on_b_answer(call, response, txn, now)
            return
        # 3xx-6xx: failover or relay (§16.7 step 6-like choice, one branch at a time)
        if status in _FAILOVER_CODES and call.state is not CallState.ENDED and self._failover(call, txn, now):
            return
        if call.state is CallState.ENDED or call.final_sent:
            return
        call.cancel_timer("ring")
        mapped = _map_final(status)
        call.code = mapped
        call.cause = f"b_{status}"
        self._relay_to_a(call, response, now, status=mapped)
        self._end(call, "failed" if status not in (486, 600, 603) else "busy", now)

    def _on_b_answer(self, call: Call, response: Response, txn: ClientTransaction, now: float) -> None:
        if call.state is CallState.ENDED or call.final_sent:
            if (call.answered_at is not None and call.b.dialog is not None
                    and response.to_tag == call.b.dialog.remote_tag):
                # §13.3.1.4: a retransmission of the 2xx we relayed. Once B is ACKed the
                # transaction layer re-sends that ACK (RFC 6026 Accepted); until then it is
                # held for the caller's ACK (it may carry a late offer's answer), and our
                # 2xx to the caller is retransmitted by A's server transaction.
                return
            # answered after CANCEL / ring timeout / from another fork: ACK it and hang up (§15)
            self._ack_and_bye_stray(response, txn, now)
            return
        self._update_b_dialog(call, response, early=False)
        call.cancel_timer("ring")
        call.state = CallState.ANSWERED
        call.answered_at = now
        call.code = response.status
        self._relay_to_a(call, response, now)
        a_cseq = call.a_invite.cseq.number
        assert call.b_invite is not None
        call.a.expect_ack(a_cseq, txn, call.b_invite.cseq.number)
        self._session_timer(call, response, now)
        if self.calls_cfg.max_duration_s > 0:
            call.set_timer("max_duration", self.timers.schedule(
                now + self.calls_cfg.max_duration_s, self._on_max_duration, call
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
            b.dialog.state = DialogState.CONFIRMED

    def _relay_to_a(self, call: Call, response: Response, now: float, *, status: int | None = None) -> None:
        """Map a response to the B INVITE onto the A INVITE (§8.2.6, §12.1.1)."""
        status = status or response.status
        a = call.a
        reason = REASONS.get(status, response.reason) if status != response.status else response.reason
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
            dialed = _user_of(call.a_invite.uri) or ""
            h.add("P-Asserted-Identity", f"<sip:{dialed}@{self._host()}>")
            if status < 300 and call.state is not CallState.ANSWERED:
                lines = h.columns()
                call.a_head = (tuple(lines[0]), tuple(lines[1]), tuple(lines[2]))
        self._copy_headers(response, out)  # 3xx Contacts never cross: Contact is not policy's to pass
        if status < 300:
            out.body = self._sdp(response.body)
        if status >= 200:
            call.final_sent = True
        if self.server_header:
            h.add("Server", self.server_header)
        self.layer.send_response(call.a_txn, out, now)

    # ------------------------------------------------------------------ CANCEL and timeouts
    def _on_cancel(self, txn: ServerTransaction, cancelled: ServerTransaction | None, now: float) -> None:
        if cancelled is None:
            self._reply(txn, 481, None, now)  # §9.2: no matching INVITE transaction
            return
        self._reply(txn, 200, None, now)
        call = cancelled.tu_data
        if call is _AWAITING_HOOK:
            cancelled.tu_data = None
            self._reply(cancelled, 487, None, now)
            return
        if not isinstance(call, Call) or call.final_sent or call.state is CallState.ENDED:
            return  # §9.2: CANCEL after the final response has no effect
        a_req = cancelled.request
        if a_req is not call.a_invite:
            return  # CANCEL of a re-INVITE: answered above; the re-INVITE completes normally
        call.final_sent = True
        self.layer.send_response(
            cancelled, build_response(a_req, 487, None, to_tag=call.a.local_tag), now
        )
        call.code = 487
        call.cause = "caller_cancel"
        self._cancel_b(call, now)
        self._end(call, "cancelled", now)

    def _cancel_b(self, call: Call, now: float) -> None:
        if call.provisional_seen:
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

    def _ring_timeout(self, call: Call, now: float) -> None:
        if call.final_sent or call.state is CallState.ENDED:
            return
        call.final_sent = True
        self.layer.send_response(
            call.a_txn, build_response(call.a_invite, 480, "No Answer", to_tag=call.a.local_tag), now
        )
        call.code = 480
        call.cause = "ring_timeout"
        self._cancel_b(call, now)
        self._end(call, "no_answer", now)

    def _on_timeout(self, txn: ClientTransaction | ServerTransaction, timer: str, now: float) -> None:
        data = txn.tu_data
        if isinstance(data, Call):
            call = data
            if txn is call.b_txn:
                # Timer B or transport failure on the B INVITE: failover, else 408 (§8.1.3.1)
                if isinstance(txn, ClientTransaction) and self._failover(call, txn, now):
                    return
                if not call.final_sent and call.state is not CallState.ENDED:
                    call.final_sent = True
                    status = 408 if timer == "B" else 503
                    self.layer.send_response(
                        call.a_txn, build_response(call.a_invite, status, None, to_tag=call.a.local_tag), now
                    )
                    call.code = status
                    call.cause = f"b_timeout_{timer}"
                    self._end(call, "failed", now)
            elif txn is call.a_txn and timer == "L":
                # §13.3.1.4: the caller never ACKed our 2xx: confirm B and hang up both sides
                call.cause = "no_ack"
                self._hangup(call, "no_ack", now)
            return
        if isinstance(data, _Message) and isinstance(txn, ClientTransaction):
            server = data.server
            if server.last_response is None or server.last_response.status < 200:
                self._reply(server, 408, None, now, to_tag=data.a_tag)
            return
        if isinstance(data, _Forwarded) and isinstance(txn, ClientTransaction):
            # the peer never answered a relayed request: 408 back (§8.1.3.1), and for a
            # re-INVITE the dialog is gone too (§12.2.1.2)
            fwd = data
            server = fwd.server
            last = server.last_response
            if last is None or last.status < 200:
                self._reply(server, 408, None, now, to_tag=fwd.leg.local_tag)
            fwd.leg.discard_pending(server)
            if fwd.method == "INVITE":
                fwd.leg.server_invite = None
                fwd.leg.peer.client_invite = None
                if fwd.leg.call.state is not CallState.ENDED:
                    self._hangup(fwd.leg.call, "peer_timeout", now)

    # ------------------------------------------------------------------ in-dialog
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
        if call.state is CallState.ENDED:
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
            if leg.client_invite is not None or leg.server_invite is not None or call.state is not CallState.CONFIRMED:
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
        client.tu_data = _Forwarded(leg, txn, method)
        txn.tu_data = client
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

    def _on_forwarded_response(self, fwd: _Forwarded, response: Response, txn: ClientTransaction, now: float) -> None:
        server = fwd.server
        leg = fwd.leg
        status = response.status
        if status == 100:
            return
        if fwd.method == "INVITE" and 200 <= status < 300:
            if leg.call.state is CallState.ENDED or server.last_response is not None and server.last_response.status >= 200:
                # the dialog ended while the re-INVITE was in flight (BYE crossing it): ACK and drop
                self._ack_reinvite(leg.peer, txn, response, None, now)
                return
        if server.last_response is not None and server.last_response.status >= 200:
            return  # already finally answered (e.g. 487 on teardown)
        out = build_response(server.request, status, response.reason, to_tag=leg.local_tag)
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
            if status in (408, 481) and leg.call.state is not CallState.ENDED:
                self._hangup(leg.call, f"peer_{status}", now)  # §12.2.1.2

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
        if leg is call.a and call.state is CallState.ANSWERED:
            call.state = CallState.CONFIRMED
            call.b_acked = True
            call.compact()

    def _ack_reinvite(
        self, peer: Leg, client_txn: ClientTransaction, response: Response | None,
        source_ack: Request | None, now: float, *, cseq: int | None = None,
    ) -> None:
        """Send the end-to-end ACK for a 2xx on ``peer``'s leg (§13.2.2.4)."""
        dialog = peer.dialog
        if dialog is None:
            return
        number = cseq if cseq is not None else client_txn.request.cseq.number
        ack = dialog.create_request("ACK", self._via(peer.transport), None, cseq=number)
        if source_ack is not None and source_ack.body:
            self._copy_headers(source_ack, ack)
            ack.body = self._sdp(source_ack.body)
        self.layer.send_ack(client_txn, ack, self._dest(peer))

    def _on_bye(self, leg: Leg, request: Request, txn: ServerTransaction, now: float) -> None:
        call = leg.call
        self._reply(txn, 200, None, now, to_tag=leg.local_tag)
        call.cause = f"bye_{leg.name}"
        self._terminate_pending(call, now)
        peer = leg.peer
        if peer is call.b and call.state is CallState.ANSWERED and not call.b_acked:
            self._confirm_b(call, now)
        if peer is call.a and not call.final_sent:
            # callee gave up on an early dialog: finish the caller's INVITE
            call.final_sent = True
            self.layer.send_response(
                call.a_txn, build_response(call.a_invite, 487, None, to_tag=call.a.local_tag), now
            )
        elif peer.dialog is not None:
            self._send_bye(peer, now)
        self._end(call, "completed" if call.answered_at is not None else "failed", now)

    def _confirm_b(self, call: Call, now: float) -> None:
        """ACK B's 2xx ourselves (the caller's ACK never came or the call ends first)."""
        target = call.a.take_ack(call.a_invite.cseq.number)
        if target is not None:
            self._ack_reinvite(call.b, target[0], None, None, now, cseq=target[1])
        call.b_acked = True
        call.compact()

    def _send_bye(self, leg: Leg, now: float) -> None:
        dialog = leg.dialog
        if dialog is None:
            return
        bye = dialog.create_request("BYE", self._via(leg.transport), None)
        client = self.layer.send_request(bye, self._dest(leg), now)
        client.tu_data = None

    def _terminate_pending(self, call: Call, now: float) -> None:
        """§15.1.2: answer the other requests still pending in the dialog with 487."""
        for leg in (call.a, call.b):
            for server in leg.take_pending():
                last = server.last_response
                if last is None or last.status < 200:
                    self._reply(server, 487, None, now, to_tag=leg.local_tag)
            leg.server_invite = None

    def _hangup_for(self, cause: str, call: Call, now: float) -> None:
        self._hangup(call, cause, now)

    def _hangup(self, call: Call, cause: str, now: float) -> None:
        """Tear the call down from the middle: BYE both legs (max duration, session expiry, no ACK)."""
        if call.state is CallState.ENDED:
            return
        call.cause = cause
        self._terminate_pending(call, now)
        if not call.final_sent:
            call.final_sent = True
            self.layer.send_response(
                call.a_txn, build_response(call.a_invite, 480, None, to_tag=call.a.local_tag), now
            )
            self._cancel_b(call, now)
        else:
            if call.state is CallState.ANSWERED and not call.b_acked:
                self._confirm_b(call, now)
            self._send_bye(call.a, now)
            if call.b.dialog is not None and call.b.dialog.state is DialogState.CONFIRMED:
                self._send_bye(call.b, now)
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

    def _dest(self, leg: Leg) -> Address:
        """Where in-dialog requests to ``leg`` go: on a stream, the connection we share with the
        peer; on UDP, the remote target (or first loose route) when it is an IP literal,
        else the address the peer signals from (symmetric signalling, as for NATed trunks)."""
        if leg.dialog is None:
            return leg.source
        return _dialog_dest(leg.dialog, leg.transport, leg.source)

    # ------------------------------------------------------------------ MESSAGE
    def _new_message(self, request: Request, source: Address, txn: ServerTransaction, now: float) -> None:
        """An out-of-dialog MESSAGE (RFC 3428, pager mode) masked through the same sessions as
        calls: same trunk check, identity, uniform rejection and routes; the copy sent on is a
        new transaction with virtual numbers only and the whitelisted headers; the final answer
        comes back without the callee's headers. The body (the text) is the users' own content
        and passes unchanged."""
        cfg = self.calls_cfg
        trunk = self._trunk(source.host)
        if trunk is None:
            self._count("untrusted")
            self._reply(txn, cfg.untrusted_code, None, now)
            return
        caller, dialed = self._identities(request, trunk)
        match = None
        if caller is not None and dialed is not None:
            match = self.pairings.lookup(caller, dialed, self.wall_clock(now))
        if match is None:
            self._count("message_no_pairing")
            self._reply(txn, cfg.unknown_code, cfg.unknown_reason, now)
            return
        route = self.config.route_for(match.callee)
        if route is None or not route.gateways:
            self._reply(txn, 503, None, now)
            return
        gw = route.gateways[0]
        out = self._outbound_request("MESSAGE", match, gw, dialed or "", self.ids.tag(), self.ids.call_id(), 1, 70)
        self._copy_headers(request, out)
        out.body = request.body
        client = self.layer.send_request(out, _gateway_address(gw), now)
        client.tu_data = _Message(txn, self.ids.tag())
        self.pairings.touch(match.session_id, self.wall_clock(now))
        self._count("messages")
        self.log.info("message.relayed", pairing_id=match.session_id, trunk=trunk.name)

    def _on_message_response(self, msg: _Message, response: Response, now: float) -> None:
        status = response.status
        server = msg.server
        if status < 200 or (server.last_response is not None and server.last_response.status >= 200):
            return
        if 300 <= status < 400 or status in (401, 407):
            status = 480 if status < 400 else 403  # never hand the callee's contacts or realm over
        out = build_response(server.request, status, None if status != response.status else response.reason,
                             to_tag=msg.a_tag)
        self._copy_headers(response, out)
        self.layer.send_response(server, out, now)

    # ------------------------------------------------------------------ end of call
    def _end(self, call: Call, outcome: str, now: float) -> None:
        """Free the call's state and write its CDR. Late messages for it get 481."""
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.outcome = outcome
        call.ended_at = now
        call.cancel_timers()
        self._detach(call)
        self.calls.pop(call.id, None)
        self.dialogs.pop((call.a.call_id, call.a.local_tag), None)
        if call.b is not None:
            self.dialogs.pop((call.b.call_id, call.b.local_tag), None)
        duration = (now - call.answered_at) if call.answered_at is not None else 0.0
        self._count(f"ended_{outcome}")
        if self._info:
            call.log.info("call.ended", outcome=outcome, cause=call.cause, code=call.code, duration_s=round(duration, 3))
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
        fork still needs ACK + BYE, which ``_EndedInvite`` remembers enough for. A B-leg INVITE
        not yet answered with a 2xx keeps the call (a late 2xx is ACKed and released)."""
        a_txn = call.a_txn
        if a_txn is not None and a_txn.tu_data is call:
            a_txn.tu_data = None
        b_txn = call.b_txn
        if b_txn is not None and b_txn.tu_data is call and call.b_acked and call.b.dialog is not None:
            b_txn.tu_data = _EndedInvite(call.b.dialog.remote_tag)

    def _call_id_token(self, call: Call) -> str:
        """The caller's Call-ID as a token (CDR, webhooks), computed once per call."""
        if not call.call_id_token:
            call.call_id_token = self.tokenize(call.a.call_id)
        return call.call_id_token

    @property
    def active_calls(self) -> int:
        """Calls not yet ended."""
        return len(self.calls)


_SETTLED: Final = (CallState.CONFIRMED, CallState.ENDED)
"""Call states in which a terminated INVITE transaction is never read again."""

_AWAITING_HOOK: Final = object()
"""tu_data of an INVITE server transaction parked until the lookup hook answers."""


class _Message:
    """tu_data of a client transaction relaying an out-of-dialog MESSAGE."""

    __slots__ = ("server", "a_tag")

    def __init__(self, server: ServerTransaction, a_tag: str) -> None:
        self.server = server
        self.a_tag = a_tag


class _EndedInvite:
    """tu_data of the B-leg INVITE of an ended call whose 2xx was ACKed (see ``_detach``)."""

    __slots__ = ("acked_tag",)

    def __init__(self, acked_tag: str) -> None:
        self.acked_tag = acked_tag


class _Forwarded:
    """tu_data of a client transaction relaying an in-dialog request from ``leg``."""

    __slots__ = ("leg", "call", "server", "method")

    def __init__(self, leg: Leg, server: ServerTransaction, method: str) -> None:
        self.leg = leg
        self.call = leg.call  # keeps the call alive until the answer is relayed (legs refer weakly)
        self.server = server
        self.method = method


def _dialog_dest(dialog: Dialog, transport: str, source: Address) -> Address:
    """Where requests in ``dialog`` go: on a stream, the connection (``source``); on UDP, the
    next hop (first route, else remote target) when it is an IP literal, else ``source``."""
    if transport != "udp":
        return source
    dest = _udp_target(dialog.next_hop())
    if dest is None or dest == source:
        return source
    return dest


@functools.lru_cache(maxsize=4096)
def _udp_target(target: str) -> Address | None:
    """The UDP address of a remote target or route URI when its host is an IP literal, else
    None. Cached: a peer's Contact recurs over its calls (one parse, one shared Address)."""
    try:
        uri = SipUri.parse(target)
    except SipParseError:
        return None
    host = uri.host_bare
    if not host or not _IP_CHARS.issuperset(host):
        return None
    transport = (uri.params.get("transport") or "udp").lower()
    if transport != "udp":
        return None
    return Address("udp", host, uri.port or 5060)


@functools.lru_cache(maxsize=1024)
def _gateway_address(gw: Gateway) -> Address:
    """A gateway's Address, one per gateway (shared by its calls' legs and transactions)."""
    return Address(gw.transport, gw.host, gw.port)


def _user_of(uri: str) -> str | None:
    """User part of a sip/sips URI or the number of a tel URI, without user parameters."""
    scheme, colon, rest = uri.partition(":")
    if not colon:
        return None
    scheme = scheme.lower()
    if scheme == "tel":
        return rest.split(";", 1)[0] or None
    if scheme not in ("sip", "sips"):
        return None
    at = rest.find("@")
    if at < 0:
        return None
    user = rest[:at].split(":", 1)[0]
    return user.split(";", 1)[0] or None


def _map_final(status: int) -> int:
    """Final responses relayed to the caller: redirects would reveal the callee's contacts and
    challenges are the gateway's business, so they become 480 and 403."""
    if 300 <= status < 400:
        return 480
    if status in (401, 407):
        return 403
    return status


def _is_sdp(message: Request | Response) -> bool:
    ctype = message.headers.get("content-type")
    return bool(message.body) and ctype is not None and "application/sdp" in ctype.lower()


__all__ = ["B2bua", "PairingLookup"]
