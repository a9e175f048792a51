"""What every flow of the B2BUA shares: the state it reads (declared here, built by
:class:`~.b2bua.B2bua`), the helpers that build what it sends (our Via and Contact, the SDP
and header policy, local answers, the final answer to the caller, where a leg's requests go)
and the identities of a new call or message.

The flows are mixins stacked on :class:`B2buaBase`, each in its own module and each building
only on the ones below it: ``teardown`` (hangup, CANCEL of the B leg, CDR, stray 2xx),
``in_dialog`` (requests within a call, session timers), ``invite`` (a new call up to its
answer), ``message`` (out-of-dialog MESSAGE). Methods are looked up on the one class, as when
they were one class: no call costs more for the split.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..pairing.model import Cdr, Match
from ..pairing.normalize import try_normalize
from ..sip.errors import SipParseError
from ..sip.message import Headers, Request, Response, build_response
from ..sip.sdp import rebuild_sdp
from ..sip.transaction import (
    Address,
    ClientTransaction,
    ServerTransaction,
    TransactionLayer,
)
from ..sip.uri import NameAddr, SipUri
from .bodies import KEEP, Refusal, apply_body, cross_body

if TYPE_CHECKING:
    from ..config import CallsConfig, Config, Gateway, TrunkConfig
    from ..sip.dialog import Dialog
    from ..sip.ids import IdGenerator
    from .call import Call, Leg
    from .overload import Admission
    from .policy import Rules
    from .snapshot import DialogJournal
    from .timers import TimerHeap

_IP_CHARS = frozenset("0123456789.:abcdefABCDEF[]")
#: the lines of a request that starts a dialog or transaction toward the callee, in order
_OUTBOUND_NAMES = ("Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "P-Asserted-Identity")
_OUTBOUND_KEYS = ("via", "max-forwards", "from", "to", "call-id", "cseq", "p-asserted-identity")


class PairingLookup(Protocol):
    """What the B2BUA needs from the pairing service."""

    def lookup(self, caller: str, dialed: str, now: float | None = None) -> Match | None: ...

    def touch(self, session_id: str, now: float | None = None) -> None: ...

    def close_used(self, session_id: str, now: float | None = None) -> None: ...

    def record_cdr(self, cdr: Cdr) -> None: ...


class UnknownLookup(Protocol):
    """The lookup hook as the B2BUA sees it (see ``B2bua.__init__``)."""

    def cached(self, caller: str, dialed: str) -> object: ...

    def ask(self, caller: str, dialed: str, done: Callable[[Match | None, float], None]) -> None: ...


class MediaControl(Protocol):
    """The media relay as the B2BUA sees it (the asyncio side: ``proxy.media.MediaBridge``)."""

    def offer(self, call_key: str, from_tag: str, to_tag: str, sdp: bytes,
              done: Callable[[bytes | None, float], None]) -> None:
        """Rewrite an SDP offer sent by the ``from_tag`` side; ``done(None, now)`` on failure."""

    def answer(self, call_key: str, from_tag: str, to_tag: str, sdp: bytes,
               done: Callable[[bytes | None, float], None]) -> None:
        """Rewrite the answer (sent by the ``to_tag`` side) to ``from_tag``'s offer."""

    def delete(self, call_key: str) -> None:
        """The call ended: free its session (after any request of it still in flight)."""

    def holder(self, call_key: str) -> str | None:
        """``host:port`` of the rtpengine holding the call's session (for its record)."""

    def adopt(self, call_key: str, holder: str) -> None:
        """A call rebuilt from its record: its session is on ``holder`` (``host:port``)."""


class B2buaBase:
    """The B2BUA's state and the helpers its flows share (see the module docstring)."""

    layer: TransactionLayer
    config: Config
    calls_cfg: CallsConfig
    rules: Rules
    pairings: PairingLookup
    unknown_lookup: UnknownLookup | None
    #: the media relay when ``[media] mode = "rtpengine"`` (``media.MediaFlow``), else None
    media: MediaControl | None
    #: webhook events (call.started/answered/ended): payloads carry tokens, never numbers
    events: Callable[[str, dict[str, Any]], object] | None
    ids: IdGenerator
    local_address: Callable[[str], tuple[str, int]]
    tokenize: Callable[[str], str]
    log: Any
    metrics: Any
    wall_clock: Callable[[float], float]
    admission: Admission
    timers: TimerHeap
    #: live calls by our call key, and the legs by dialog (Call-ID, our tag)
    calls: dict[str, Call]
    dialogs: dict[tuple[str, str], Leg]
    counters: dict[str, int]
    failover_timeout: float
    server_header: str
    #: established calls to write to the store (``snapshot.DialogJournal``), or None
    journal: DialogJournal | None
    draining: bool
    #: the Session-Expires and Min-SE values sipmask asks the callee for, rendered once
    _timer_lines: tuple[str, str] | None = None
    #: whether per-call info events are emitted (binding the call's logger is skipped if not)
    _info: bool
    _number_token: Callable[[str], str]
    _trunk: Callable[[str], TrunkConfig | None]
    _contacts: Callable[[str, str], str]
    _via_prefix: Callable[[str], str]
    _host_name: str | None
    #: the last message whose body ``_cross`` checked, and the answer (see there)
    _body_memo: tuple[Request | Response, tuple[bytes, str] | Refusal] | None = None
    #: the key of the numbers standing in for non-numeric o= ids (from the token key)
    _sdp_id_key: bytes | None = None
    _retry_after: list[tuple[str, str]]
    # the B2BUA timers' callbacks, bound once (see B2bua.__init__)
    _on_ring_timer: Callable[[Call, float], None]
    _on_failover_timer: Callable[[tuple[Call, ClientTransaction], float], None]
    _on_max_duration: Callable[[Call, float], None]
    _on_session_expired: Callable[[Call, float], None]

    def _internal_error(self, event: object, exc: Exception, now: float) -> None:
        """End what ``event`` belonged to after ``exc`` (``guard.GuardFlow``)."""
        raise exc

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

    def contact_for(self, transport: str, user: str) -> str:
        """Our Contact for a leg on ``transport`` whose user part is ``user`` (a virtual number)."""
        return self._contacts(transport, user)

    def _host(self) -> str:
        host = self._host_name
        if host is None:  # the listening addresses are bound for good once calls arrive
            host = self._host_name = self.config.sip.advertise_host or self.local_address("udp")[0]
        return host

    def _cross(self, source: Request | Response) -> tuple[bytes, str] | Refusal:
        """What of ``source``'s body crosses to the other leg (bodies.py: the one policy for
        every message kind). The last answer is kept for the same body object: the caller's
        INVITE is checked before the call exists and its B-leg INVITE built after, and a
        response is checked before it is relayed, each from one rebuild. (Kept by message,
        not by body: two one-byte bodies are the same object in CPython.)"""
        body = source.body
        if not body:
            return b"", KEEP
        memo = self._body_memo
        if memo is not None and memo[0] is source:
            return memo[1]
        crossed = cross_body(source.headers, body, self.rules, self._host(), self._sdp_key())
        if isinstance(crossed, Refusal):
            self._count(crossed.counter)
        self._body_memo = (source, crossed)
        return crossed

    def _sdp(self, body: bytes) -> bytes:
        """An SDP body made here or by the media relay (rtpengine's offer and answer), rebuilt
        from the whitelist like every SDP that crosses (``rebuild_sdp``). One that does not
        parse raises ``SdpError``: the guard ends the call (the relay's SDP is not expected
        to fail)."""
        sdp = self.rules.sdp
        if not body or not sdp.sanitise:
            return body
        return rebuild_sdp(body, sdp.whitelist, origin_address=self._host(), id_key=self._sdp_key())

    def _sdp_key(self) -> bytes:
        """The key of the o= session ids sipmask writes in place of non-numeric ones."""
        key = self._sdp_id_key
        if key is None:
            key = self._sdp_id_key = self.tokenize("sdp-origin-id").encode()
        return key

    def _copy_body(self, source: Request | Response, out: Request | Response) -> Refusal | None:
        """Give ``out`` (headers already copied) the body of ``source`` that may cross, or
        return why it may not (``out`` is then left without a body)."""
        if not source.body:
            return None
        crossed = self._cross(source)
        if isinstance(crossed, Refusal):
            apply_body(out, (b"", ""))
            return crossed
        apply_body(out, crossed)
        return None

    def _copy_headers(self, source: Request | Response, target: Request | Response) -> None:
        self.rules.headers.copy(source.headers, target.headers)

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

    def _answer_caller(self, call: Call, status: int, reason: str | None, now: float) -> None:
        """Finish the caller's INVITE with an answer of our own (no line of the callee's)."""
        call.final_sent = True
        self.layer.send_response(
            call.a_txn, build_response(call.a_invite, status, reason, to_tag=call.a.local_tag), now
        )

    def _ack_reinvite(
        self, peer: Leg, client_txn: ClientTransaction, response: Response | None,
        source_ack: Request | None, now: float, *, cseq: int | None = None,
    ) -> Refusal | None:
        """Send the end-to-end ACK for a 2xx on ``peer``'s leg (§13.2.2.4). An answer in the
        caller's ACK that may not cross is left out (the ACK still goes: it completes the
        2xx) and returned, for the flow to end the call."""
        dialog = peer.dialog
        if dialog is None:
            return None
        number = cseq if cseq is not None else client_txn.request.cseq.number
        ack = dialog.create_request("ACK", self._via(peer.transport), None, cseq=number)
        refused = None
        if source_ack is not None and source_ack.body:
            self._copy_headers(source_ack, ack)
            refused = self._copy_body(source_ack, ack)
        self.layer.send_ack(client_txn, ack, self._dest(peer))
        return refused

    def _dest(self, leg: Leg) -> Address:
        """Where in-dialog requests to ``leg`` go: on a stream, the connection we share with the
        peer; on UDP, the remote target (or first loose route) when it is an IP literal,
        else the address the peer signals from (symmetric signalling, as for NATed trunks)."""
        if leg.dialog is None:
            return leg.source
        return dialog_dest(leg.dialog, leg.transport, leg.source)

    def _call_id_token(self, call: Call) -> str:
        """The caller's Call-ID as a token (CDR, webhooks), computed once per call."""
        if not call.call_id_token:
            call.call_id_token = self.tokenize(call.a.call_id)
        return call.call_id_token

    def _identities(self, request: Request, trunk: TrunkConfig) -> tuple[str | None, str | None]:
        """(caller, dialed) in E.164: caller from P-Asserted-Identity when the trunk is trusted
        for it, else From; dialed from the Request-URI user (RFC 3261 §8.2.2.1 / RFC 3325)."""
        region = trunk.default_region
        caller_user: str | None = None
        try:
            if trunk.trust_pai:
                pai = request.headers.values("p-asserted-identity")
                if pai:
                    caller_user = user_of(NameAddr.parse(pai[0]).uri)
            if caller_user is None:
                caller_user = user_of(request.from_.uri)
            dialed_user = user_of(request.uri)
        except SipParseError:
            return None, None
        caller = try_normalize(caller_user, region) if caller_user else None
        dialed = try_normalize(dialed_user, region) if dialed_user else None
        return caller, dialed

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


def dialog_dest(dialog: Dialog, transport: str, source: Address) -> Address:
    """Where requests in ``dialog`` go: on a stream, the connection (``source``); on UDP, the
    next hop (first route, else remote target) when it is an IP literal, else ``source``
    (symmetric signalling, as for NATed trunks)."""
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
def gateway_address(gw: Gateway) -> Address:
    """A gateway's Address, one per gateway (shared by its calls' legs and transactions)."""
    return Address(gw.transport, gw.host, gw.port)


def user_of(uri: str) -> str | None:
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


_HAS_DIGIT = re.compile(r"\d").search


def peer_reason(reason: str) -> str | None:
    """The reason phrase a peer sent, as it may cross to the other party: one with a digit in
    it could carry a phone number (in any spelling), so it becomes None (the standard phrase of
    the status). A number in a header value is the policy's to strip; the reason phrase is on
    the start line, which no header policy sees."""
    return None if _HAS_DIGIT(reason) else reason


def map_final(status: int) -> int:
    """Final responses relayed to the sender of a call or a MESSAGE: redirects would reveal
    the callee's contacts and challenges are the gateway's business, so they become 480 and
    403."""
    if 300 <= status < 400:
        return 480
    if status in (401, 407):
        return 403
    return status
