"""The transaction layer (RFC 3261 §17): matching, Via stamping, timers, the four machines.

Sans-IO: ``receive()``/``handle_timers()`` take a ``now`` and return events; what must be sent
is queued and drained with ``take_outgoing()``; ``next_deadline()`` says when to wake up.
Timers live in :class:`~.timers.TimerQueues`: one FIFO per delay, disarmed entries left as
tombstones that no longer hold their transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import SipParseError
from ..headers import Via
from ..ids import MAGIC_COOKIE, IdGenerator
from ..message import Request, Response, build_response
from .builders import top_via_value
from .machines import CLIENT_INVITE, CLIENT_NON_INVITE, SERVER_INVITE, SERVER_NON_INVITE
from .model import (
    Address,
    ClientTransaction,
    Event,
    Input,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimerConfig,
    TransactionState,
    TransactionTerminated,
    response_input,
)
from .timers import TimerQueues

_TERMINATED = TransactionState.TERMINATED
_ACCEPTED = TransactionState.ACCEPTED
#: states in which a transaction only absorbs and answers retransmissions
_LINGERING = frozenset((TransactionState.COMPLETED, TransactionState.CONFIRMED, TransactionState.ACCEPTED))
_NON_2XX_ACKABLE = (TransactionState.COMPLETED, TransactionState.CONFIRMED)
_CANCELLABLE = (TransactionState.CALLING, TransactionState.PROCEEDING)

Key = tuple[object, ...]
#: ``TransactionLayer.screen``: (request, source, now, queue delay) -> None or (status, extra headers)
Screen = Callable[[Request, Address, float, float], tuple[int, list[tuple[str, str]]] | None]
#: ``TransactionLayer.source_limit``: (source host, now, a new INVITE) -> 0 or Retry-After seconds
SourceLimit = Callable[[str, float, bool], int]
AnyTransaction = ClientTransaction | ServerTransaction


class TransactionLayer(TimerQueues):
    """All client and server transactions of one SIP element."""

    __slots__ = (
        "timers", "ids", "auto_trying", "_clients", "_servers", "_merged", "_acks_2xx",
        "_out", "_events", "_counts", "request_retransmissions", "late_retransmissions", "_settling",
        "screen", "stateless_tag", "refused_statelessly", "stateless_acks", "source_limit",
        "reused_branches",
    )

    def __init__(self, timers: TimerConfig, ids: IdGenerator, *, auto_trying: bool = True) -> None:
        super().__init__()
        self.timers = timers
        self.ids = ids
        #: send ``100 Trying`` as soon as an INVITE server transaction is created (§17.2.1)
        self.auto_trying = auto_trying
        #: client transactions by (top Via branch, method) — §17.1.3
        self._clients: dict[Key, ClientTransaction] = {}
        #: server transactions by (branch, sent-by host, port, method) — §17.2.3 — or by the
        #: RFC 2543 tuple for branches without the magic cookie
        self._servers: dict[Key, ServerTransaction] = {}
        #: server transactions of requests without a To tag by (From tag, Call-ID, CSeq) — §8.2.2.2
        self._merged: dict[Key, ServerTransaction] = {}
        #: INVITE server transactions by (Call-ID, CSeq number, From tag): the ACK for a 2xx
        #: carries a new branch, so it is matched this way (RFC 6026 §7.1)
        self._acks_2xx: dict[Key, ServerTransaction] = {}
        self._out: list[Send] = []
        #: transactions that reached a lingering state (final response sent or received):
        #: their messages are settled (Headers.settle) before the next input, once the TU has
        #: finished with the batch that got them there
        self._settling: list[AnyTransaction] = []
        self._events: list[Event] = []
        #: requests absorbed as retransmissions (§17.2): a lost response, or a peer whose T1
        #: fired before we answered
        self.request_retransmissions = 0
        #: of those, copies of an INVITE that were already waiting in the socket when the
        #: original was handled: the peer retransmitted because sipmask was behind (its own
        #: load), not because the network lost something. The overload signal the B2BUA's
        #: admission control reads; loss, and a source replaying one request, do not move it.
        self.late_retransmissions = 0
        #: the TU's door for new calls (an INVITE without To tag that matches no transaction):
        #: returns None to let it in, or the status and extra headers of a final response the
        #: layer sends statelessly (§8.2.7), without a transaction, a 100 Trying or a timer.
        #: This is how overload is shed at a fraction of the cost of a stateful refusal.
        self.screen: Screen | None = None
        #: per-source rate limit, asked about every new request (not retransmissions, not
        #: ACKs): 0 lets it in; else a new INVITE gets 503 with that Retry-After statelessly
        #: and any other request is dropped (proxy/transport/pike.py)
        self.source_limit: SourceLimit | None = None
        #: the To tag of every stateless refusal (§8.2.7: generated statelessly, the same for
        #: a retransmitted request): the ACKs for them are recognised by it and absorbed
        self.stateless_tag = ids.tag()
        self.refused_statelessly = 0
        self.stateless_acks = 0
        #: new requests that reused the branch of a live server transaction (§8.1.1.7 broken)
        self.reused_branches = 0
        self._counts = {"client_invite": 0, "client_non_invite": 0, "server_invite": 0, "server_non_invite": 0}

    # ------------------------------------------------------------------ public API (TU side)

    def receive(self, message: Request | Response, source: Address, now: float, delay: float = 0.0) -> list[Event]:
        """Feed a parsed message from the transport. Never raises: malformed messages become
        :class:`MessageRejected` (requests answered with 400 where possible). ``delay``: how
        long the message waited before it was read (the transport's measure; 0 if unknown),
        passed to ``screen`` with new INVITEs."""
        if self._settling:
            self._settle()
        try:
            if isinstance(message, Response):
                self._receive_response(message, source, now)
            else:
                self._receive_request(message, source, now, delay)
        except (SipParseError, ValueError, IndexError) as exc:
            self._reject(message, source, exc)
        return self._drain()

    def send_request(self, request: Request, dest: Address, now: float) -> ClientTransaction:
        """Start a client transaction. The request carries its top Via with a fresh branch."""
        method = request.method
        if method == "ACK":
            raise ValueError("ACK is not sent in a transaction: use send_ack() or send_stateless()")
        request.check()  # SerialiseError in the TU, before any state: never a malformed request out
        branch = request.branch or ""
        key: Key = (branch, method)
        if key in self._clients:
            raise ValueError(f"branch {branch!r} already used by a live {method} client transaction")
        invite = method == "INVITE"
        txn = ClientTransaction(request, branch, dest, TransactionState.CALLING if invite else TransactionState.TRYING)
        txn.key = key
        self._clients[key] = txn
        self._counts["client_invite" if invite else "client_non_invite"] += 1
        self.transmit(request, dest)
        t1 = self.timers.t1
        if not txn.reliable:
            # §17.1.1.2 Timer A / §17.1.2.2 Timer E: retransmit over unreliable transports
            txn.interval = t1
            self.arm(txn, Input.TIMER_A if invite else Input.TIMER_E, t1, now)
        # §17.1.1.2 Timer B / §17.1.2.2 Timer F: 64*T1 transaction timeout
        self.arm(txn, Input.TIMER_B if invite else Input.TIMER_F, 64 * t1, now)
        if method == "CANCEL":
            cancelled = self._clients.get((branch, "INVITE"))
            if cancelled is not None and not cancelled.cancelled and cancelled.state in _CANCELLABLE:
                # §9.1: with no final response within 64*T1 of the CANCEL, the INVITE client
                # transaction is considered timed out (RFC 6026 keeps this); Proceeding has no
                # timer of its own, so a callee that never answers would hold it forever. Sent
                # in Calling, the CANCEL's Timer B must survive the move to Proceeding (a 100
                # after the CANCEL) as well: ``cancelled`` keeps it armed there
                cancelled.cancelled = True
                self.arm(cancelled, Input.TIMER_B, 64 * t1, now)
        return txn

    def send_response(self, transaction: ServerTransaction, response: Response, now: float) -> None:
        """Send a response within a server transaction. Responses the machine does not accept
        in its state (e.g. a second final response to a non-INVITE, anything once terminated)
        are discarded, as §17.2 prescribes."""
        self._drive_server(transaction, response_input(response.status), response, None, now)

    def send_ack(self, transaction: ClientTransaction, ack: Request, dest: Address) -> None:
        """Send the TU's ACK for a 2xx (§13.2.2.4) now; while the client INVITE transaction is
        in Accepted, every retransmission of that 2xx (same To tag) re-sends it (RFC 6026)."""
        ack.check()
        send = Send(ack, dest)
        self._out.append(send)
        transaction.acks[ack.to_tag or ""] = send
        if transaction.state is _ACCEPTED:
            self._settling.append(transaction)  # the ACK lingers with it: settle it too

    def send_stateless(self, message: Request | Response, dest: Address) -> None:
        """Queue a message outside any transaction."""
        message.check()
        self._out.append(Send(message, dest))

    def abandon(self, transaction: ClientTransaction) -> None:
        """Stop retransmitting and free a client transaction silently (no events)."""
        if transaction.state is not _TERMINATED:
            transaction.state = _TERMINATED
            self._unregister(transaction)

    def transport_error(self, dest: Address, now: float) -> list[Event]:
        """The transport could not send to ``dest``: client transactions waiting for a final
        response from it fail (§17.1.1.2, §17.1.2.2) with ``TransactionTimeout(timer="transport")``."""
        for txn in [t for t in self._clients.values() if t.dest == dest]:
            self._drive_client(txn, Input.TRANSPORT_ERROR, None, now)
        return self._drain()

    def handle_timers(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``."""
        if self._settling:
            self._settle()
        pop_due = self.pop_due
        while (due := pop_due(now)) is not None:
            txn, timer = due
            if isinstance(txn, ClientTransaction):
                self._drive_client(txn, timer, None, now)
            else:
                self._drive_server(txn, timer, None, None, now)
        return self._drain()

    def _settle(self) -> None:
        """Settle the messages of transactions that now only absorb retransmissions: for up to
        64*T1 they are re-sent or matched, never changed (see ``Headers.settle``)."""
        settling = self._settling
        self._settling = []
        for txn in settling:
            if txn.state is _TERMINATED:
                continue
            txn.request.headers.settle()
            if isinstance(txn, ClientTransaction):
                # a lingering client transaction only absorbs responses (re-sending its stored
                # ACKs): the last response has been passed to the TU and is not read again.
                # Dropped rather than kept 5-32 s: two messages less per call in memory and
                # in the cyclic GC's young generations.
                txn.last_response = None
                for send in txn.acks.values():
                    send.message.headers.settle()
                if txn.error_ack is not None:
                    txn.error_ack.headers.settle()
            else:
                last = txn.last_response
                if last is not None:
                    last.headers.settle()

    def take_outgoing(self) -> list[Send]:
        """Everything queued to send, in order."""
        out = self._out
        self._out = []
        return out

    def find_server_invite(self, request: Request) -> ServerTransaction | None:
        """The live INVITE server transaction ``request`` (a CANCEL, say) matches per §9.2/§17.2.3."""
        try:
            return self._servers.get(self._server_key(request, request.top_via, "INVITE"))
        except (SipParseError, ValueError):
            return None

    @property
    def counts(self) -> dict[str, int]:
        """Live transactions by kind (metrics, leak tests)."""
        return dict(self._counts)

    # ------------------------------------------------------------------ Effects (for machines)

    def transmit(self, message: Request | Response, dest: Address) -> None:
        """Queue a message of a transaction for the transport (``take_outgoing``)."""
        self._out.append(Send(message, dest))

    def emit(self, event: Event) -> None:
        """Queue an event for the TU (returned by the call that caused it)."""
        self._events.append(event)

    def withdraw_trying(self, txn: ServerTransaction) -> bool:
        """Whether no provisional response of ``txn`` has left: none was sent, or its 100
        Trying is still queued (the TU answers in the batch that brought the INVITE) and is
        taken back here. The machine then knows the UAC is still in Calling (§17.1.1.2)."""
        last = txn.last_response
        if last is None:
            return True
        if last.status != 100:
            return False
        out = self._out
        queued = [i for i in range(len(out) - 1, -1, -1) if out[i].message is last]
        if not queued:
            return False
        for i in queued:  # highest index first
            del out[i]
        return True

    # ------------------------------------------------------------------ machines

    def _drive_client(self, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
        table = CLIENT_INVITE if txn.is_invite else CLIENT_NON_INVITE
        entry = table.get((txn.state, inp))
        if entry is None:
            return
        state, action = entry
        if state in _LINGERING and txn.state not in _LINGERING:
            self._settling.append(txn)
        txn.state = state
        action(self, txn, inp, msg, now)
        if state is _TERMINATED:
            self._terminate(txn)

    def _drive_server(
        self,
        txn: ServerTransaction,
        inp: Input,
        msg: Request | Response | None,
        source: Address | None,
        now: float,
    ) -> None:
        table = SERVER_INVITE if txn.is_invite else SERVER_NON_INVITE
        entry = table.get((txn.state, inp))
        if entry is None:
            return
        state, action = entry
        if state in _LINGERING and txn.state not in _LINGERING:
            self._settling.append(txn)
        txn.state = state
        action(self, txn, inp, msg, source, now)
        if state is _TERMINATED:
            self._terminate(txn)

    def _terminate(self, txn: AnyTransaction) -> None:
        self._unregister(txn)
        self._events.append(TransactionTerminated(txn))

    def _unregister(self, txn: AnyTransaction) -> None:
        self.disarm_all(txn)
        if isinstance(txn, ClientTransaction):
            if self._clients.get(txn.key) is txn:
                del self._clients[txn.key]
            self._counts["client_invite" if txn.is_invite else "client_non_invite"] -= 1
            return
        if self._servers.get(txn.key) is txn:
            del self._servers[txn.key]
        if txn.merge_key is not None and self._merged.get(txn.merge_key) is txn:
            del self._merged[txn.merge_key]
        if txn.ack_key is not None and self._acks_2xx.get(txn.ack_key) is txn:
            del self._acks_2xx[txn.ack_key]
        self._counts["server_invite" if txn.is_invite else "server_non_invite"] -= 1

    def _drain(self) -> list[Event]:
        events = self._events
        if events:
            self._events = []
        return events

    # ------------------------------------------------------------------ incoming responses

    def _receive_response(self, response: Response, source: Address, now: float) -> None:
        # §17.1.3: branch of the top Via + CSeq method
        cseq = response.cseq
        if cseq.method == "INVITE":
            _ = response.to_tag  # parse now: the machine reads it (malformed -> rejected, not raised)
        txn = self._own_response(response, cseq.method)
        if txn is None:
            via = response.top_via
            txn = self._clients.get((via.params.get("branch") or "", cseq.method))
        if txn is None:
            # §13.2.2.4 / RFC 6026: a 2xx whose transaction is gone still reaches the TU
            if cseq.method == "INVITE" and 200 <= response.status < 300:
                self._events.append(ResponseReceived(response, None, source))
            return
        self._drive_client(txn, response_input(response.status), response, now)

    def _own_response(self, response: Response, method: str) -> ClientTransaction | None:
        """Fast path of §17.1.3: a response whose top Via is, up to its branch, the Via of one
        of our client transactions, character for character (the peer copied it, §8.2.6.2),
        matches it without parsing the Via. Anything else (None) takes the general path."""
        raw = response.headers.get("via")
        if raw is None or "," in raw:
            return None
        at = raw.find(";branch=")
        if at < 0:
            return None
        start = at + 8
        end = raw.find(";", start)
        branch = raw[start:] if end < 0 else raw[start:end]
        txn = self._clients.get((branch, method))
        if txn is None:
            return None
        own = txn.request.headers.get("via") or ""
        stop = start + len(branch)
        return txn if raw[:stop] == own[:stop] else None

    # ------------------------------------------------------------------ incoming requests

    def _server_key(self, request: Request, via: Via, method: str, to_tag: str | None = "") -> Key:
        """§17.2.3 matching key; ``method`` is INVITE for ACK and for a CANCEL's target (§9.2)."""
        branch = via.params.get("branch") or ""
        if branch.startswith(MAGIC_COOKIE):
            return (branch, via.host, via.port, method)
        # §17.2.3 RFC 2543 fallback: Request-URI, To tag, From tag, Call-ID, CSeq, top Via
        if to_tag == "":
            to_tag = request.to_tag
        return (
            "", request.uri, to_tag, request.from_tag, request.call_id, request.cseq.number, method,
            top_via_value(request.headers),
        )

    def _receive_request(self, request: Request, source: Address, now: float, delay: float) -> None:
        # Parse everything matching reads first: a malformed header raises before any change.
        via = request.top_via
        from_tag = request.from_tag
        to_tag = request.to_tag
        call_id = request.call_id
        cseq = request.cseq
        method = request.method
        if method == "ACK":
            self._receive_ack(request, via, source, now)
            return
        key = self._server_key(request, via, method, to_tag)
        txn = self._servers.get(key)
        if txn is not None:
            first = txn.request
            first_cseq = first.cseq.number
            if first_cseq == cseq.number and first.call_id == call_id:
                # §17.2.1 / §17.2.2: a retransmission
                self.request_retransmissions += 1
                if delay and now - delay < txn.received_at:
                    self.late_retransmissions += 1  # it reached us before we handled the original
                self._drive_server(txn, Input.REQUEST, request, source, now)
                return
            if first.call_id == call_id and cseq.number < first_cseq:
                return  # a late copy of an earlier request whose branch a later one took over
            # Same branch, sent-by and method, yet another request (a re-INVITE reusing the
            # first INVITE's branch while that transaction lingers in Accepted, say): §17.2.3
            # would absorb it as a retransmission and it would never be answered. §8.1.1.7 makes
            # a branch unique to one request, so the peer is at fault, but the request is well
            # formed: it gets a transaction of its own, which takes the key over (the old one
            # keeps its timers and its 2xx ACK matching until it ends).
            self.reused_branches += 1
        invite = method == "INVITE"
        limit = self.source_limit
        if limit is not None:
            new_call = invite and to_tag is None
            retry_after = limit(source.host, now, new_call)
            if retry_after:
                if new_call:
                    self._refuse_statelessly(request, via, source, 503, [("Retry-After", str(retry_after))])
                return
        merge_key: Key | None = None
        if to_tag is None:
            merge_key = (from_tag, call_id, cseq.number, cseq.method)
            if merge_key in self._merged:
                # §8.2.2.2: same From tag, Call-ID and CSeq as a live transaction, other branch
                via = self._stamp_via(request, via, source)
                loop = build_response(request, 482, to_tag=self.ids.tag())
                self.transmit(loop, _response_dest(via, source))
                return
        if invite and to_tag is None and self.screen is not None:
            refusal = self.screen(request, source, now, delay)
            if refusal is not None:
                self._refuse_statelessly(request, via, source, *refusal)
                return
        via = self._stamp_via(request, via, source)
        txn = ServerTransaction(
            request,
            via.params.get("branch") or "",
            source,
            _response_dest(via, source),
            TransactionState.PROCEEDING if invite else TransactionState.TRYING,
        )
        txn.key = key
        txn.received_at = now
        self._servers[key] = txn
        if merge_key is not None:
            txn.merge_key = merge_key
            self._merged[merge_key] = txn
        if invite:
            txn.ack_key = (call_id, cseq.number, from_tag)
            self._acks_2xx[txn.ack_key] = txn
        self._counts["server_invite" if invite else "server_non_invite"] += 1
        cancelled = None
        if method == "CANCEL":
            # §9.2: the INVITE a CANCEL targets is matched as if the CANCEL were that INVITE
            cancelled = self._servers.get(self._server_key(request, via, "INVITE", to_tag))
        self._events.append(RequestReceived(request, source, txn, cancelled))
        if invite and self.auto_trying:
            # §17.2.1: answer 100 Trying at once (Timestamp copied, §8.2.6.1)
            self._drive_server(txn, Input.PROVISIONAL, build_response(request, 100), None, now)

    def _refuse_statelessly(self, request: Request, via: Via, source: Address, status: int,
                            extra: list[tuple[str, str]]) -> None:
        """§8.2.7: a final response without a transaction (its ACK absorbed by the tag)."""
        via = self._stamp_via(request, via, source)
        self.refused_statelessly += 1
        self.transmit(build_response(request, status, to_tag=self.stateless_tag, extra=extra),
                      _response_dest(via, source))

    def _receive_ack(self, ack: Request, via: Via, source: Address, now: float) -> None:
        if ack.to_tag == self.stateless_tag:
            # §8.2.7 / §17.1.1.3: the hop-by-hop ACK for a stateless refusal; nothing to do
            self.stateless_acks += 1
            return
        servers = self._servers
        txn = servers.get(self._server_key(ack, via, "INVITE"))
        if txn is None and not (via.params.get("branch") or "").startswith(MAGIC_COOKIE):
            # §17.2.3 RFC 2543: the ACK's To tag is the response's, the INVITE may have had none
            txn = servers.get(self._server_key(ack, via, "INVITE", None))
            if txn is not None:
                sent = txn.last_response
                if sent is None or sent.to_tag != ack.to_tag:
                    txn = None
        if txn is not None and txn.state in _NON_2XX_ACKABLE:
            # §17.2.1: ACK for our 300-699 -> Confirmed (absorbed)
            self._drive_server(txn, Input.ACK, ack, source, now)
            return
        via = self._stamp_via(ack, via, source)
        if txn is None or txn.state is not _ACCEPTED:
            # RFC 6026 §7.1: an ACK for a 2xx carries its own branch
            txn = self._acks_2xx.get((ack.call_id, ack.cseq.number, ack.from_tag))
        if txn is not None and txn.state is _ACCEPTED:
            self._drive_server(txn, Input.ACK, ack, source, now)
        else:
            # §17.2.3: an ACK matching no transaction goes to the TU (an ACK for a 2xx)
            self._events.append(RequestReceived(ack, source, None))

    def _stamp_via(self, request: Request, via: Via, source: Address) -> Via:
        """§18.2.1 ``received`` when the sent-by host is not the source address; RFC 3581 §4
        ``rport`` filled with the source port (and then ``received`` always)."""
        params = via.params
        host = via.host
        if host[:1] == "[":
            host = host[1:-1]
        fill_rport = "rport" in params and not params["rport"]
        if host == source.host and not fill_rport:
            return via
        new_params = dict(params)
        new_params["received"] = source.host
        if fill_rport:
            new_params["rport"] = str(source.port)
        stamped = Via(via.transport, via.host, via.port, new_params, via.protocol)
        request.headers.set_top_via(stamped)
        return stamped

    def _reject(self, message: Request | Response, source: Address, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, SipParseError) else "Bad Request"
        status = exc.status if isinstance(exc, SipParseError) else 400
        if isinstance(message, Request) and message.method != "ACK" and "via" in message.headers:
            try:
                # §8.2 / §21.4.1: answer what we could not read; to the source address, as
                # the top Via may be what was unreadable
                answer = build_response(message, status, reason, to_tag=self.ids.tag())
                answer.check()  # a request without From, To...: no valid answer can be built
            except (SipParseError, ValueError):
                pass
            else:
                self.transmit(answer, source)
        self._events.append(MessageRejected(reason, source))


def _response_dest(via: Via, source: Address) -> Address:
    """§18.2.2: reliable -> the connection the request came on; UDP -> ``received`` (the
    source host) and ``rport`` if present, else the sent-by port or 5060. ``maddr`` is not
    honoured (multicast is not used by sipmask's peers)."""
    if source.transport != "udp":
        return source
    params = via.params
    host = params.get("received") or via.host
    if host[:1] == "[":
        host = host[1:-1]
    rport = params.get("rport")
    port = int(rport) if rport else (via.port or 5060)
    if host == source.host and port == source.port:
        return source
    return Address("udp", host, port)
