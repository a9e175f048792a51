"""The B2BUA transaction user: bridges every call as two independent dialogs and maps every
message across legs through the header policy, so neither party learns the other's number
or network address.

Sans-IO like the SIP core: it consumes transaction-layer events with a ``now`` (monotonic
seconds) and produces messages through the :class:`TransactionLayer`; its own timers (ring
timeout, gateway failover, session expiry, maximum duration) live in a :class:`TimerHeap` whose
next deadline the asyncio adapter arms.

This module builds the B2BUA and dispatches: a request by whether it is in a dialog and by
method, any other event to what the transaction holds in ``tu_data`` (a
:class:`~.call.TransactionData`: the call, a relayed request or MESSAGE...), which answers it.
The flows are in ``invite``, ``in_dialog``, ``message`` and ``teardown`` (see ``base``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..sip.errors import SipParseError
from ..sip.grammar import KNOWN_METHODS
from ..sip.ids import IdGenerator
from ..sip.transaction import (
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
)
from ..sip.uas import uas_refusal
from .base import MediaControl, PairingLookup, UnknownLookup
from .call import TransactionData
from .guard import GuardFlow
from .invite import InviteFlow
from .message import MessageFlow
from .overload import Admission
from .policy import Rules
from .snapshot import DialogJournal
from .takeover import TakeoverFlow
from .timers import TimerHeap

#: methods sipmask answers itself out of dialog
_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, MESSAGE, NOTIFY"
#: out-of-dialog methods that pass §8.2.1 (the others get 405/501 first) and so meet §8.2.2
_UAS_CHECKED = frozenset(("INVITE", "CANCEL", "MESSAGE", "OPTIONS"))


class B2bua(GuardFlow, InviteFlow, TakeoverFlow, MessageFlow):
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
        media: MediaControl | None = None,
    ) -> None:
        """``unknown_lookup`` answers for calls no session matches when ``calls.unknown_policy
        = "hook"``: ``cached(caller, dialed)`` returns a Match, None (reject) or anything else
        (not known yet), and ``ask(caller, dialed, done)`` starts the lookup and later calls
        ``done(match_or_none, now)``; the asyncio side provides it (proxy/app.py). ``media`` is
        the media relay (``[media] mode = "rtpengine"``, see ``media.MediaFlow``)."""
        self.layer = layer
        self.media = media
        self.unknown_lookup = unknown_lookup
        self.events = events
        self.config = config
        self.calls_cfg = config.calls
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
        self._host_name = None
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
        self._on_failover_timer = self._failover_timer
        self._on_max_duration = functools.partial(self._hangup_for, "max_duration")
        self._on_session_expired = functools.partial(self._hangup_for, "session_expired")
        self.calls = {}
        self.dialogs = {}
        self.counters = {}
        self.failover_timeout = config.calls.failover_timeout_s
        self.server_header = "sipmask"
        #: established calls to write to the store (``cluster.persist_dialogs``), set by the app
        self.journal: DialogJournal | None = None
        self.draining = False

    # ------------------------------------------------------------------ plumbing
    def set_rules(self, rules: Rules) -> None:
        """Swap the header policy (SIGHUP reload); calls in progress use the new one at once."""
        self.rules = rules

    def next_deadline(self) -> float | None:
        """Earliest B2BUA timer."""
        return self.timers.next_deadline()

    def handle_timers(self, now: float) -> None:
        """Fire due B2BUA timers; one that raises ends its call (``_timer_failed``)."""
        self.timers.fire(now, self._timer_failed)

    @property
    def active_calls(self) -> int:
        """Calls not yet ended."""
        return len(self.calls)

    # ------------------------------------------------------------------ dispatch
    def handle(self, event: object, now: float) -> None:
        """Consume one transaction-layer event. Nothing escapes: an error inside a call's
        handling ends that call cleanly (``_internal_error``); a try costs nothing on 3.11
        until something raises."""
        try:
            self._dispatch(event, now)
        except Exception as exc:  # noqa: BLE001 - the guard: any error ends its call, never escapes
            self._internal_error(event, exc, now)

    def _dispatch(self, event: object, now: float) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, ResponseReceived):
            client = event.transaction
            if client is None:
                self._stray_2xx(event.response, event.source, now)
                return
            data: TransactionData | None = client.tu_data
            if data is not None:
                data.on_response(self, event.response, client, now)
        elif isinstance(event, TransactionTimeout):
            txn = event.transaction
            data = txn.tu_data
            if data is not None:
                data.on_timeout(self, txn, event.timer, now)
        elif isinstance(event, TransactionTerminated):
            txn = event.transaction
            data = txn.tu_data
            if data is not None:
                txn.tu_data = None  # nothing matches it again: no call <-> transaction cycle left
                data.on_terminated(txn)
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
        if txn is not None and method != "ACK" and (to_tag or method in _UAS_CHECKED):
            refusal = uas_refusal(request)  # §8.2.2.1 scheme (416), §8.2.2.3 Require (420)
            if refusal is not None:
                self._count("unsupported_scheme" if refusal[0] == 416 else "bad_extension")
                self._reply(txn, refusal[0], None, now, extra=refusal[1])
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
        elif method in KNOWN_METHODS:
            # §8.2.1: a method sipmask recognises but does not take here (REGISTER, SUBSCRIBE,
            # PUBLISH, or an in-dialog method outside a dialog)
            self._reply(txn, 405, None, now, extra=[("Allow", _ALLOW)])
        else:
            # §8.2.1 / §21.5.2: a method sipmask does not recognise at all
            self._reply(txn, 501, None, now, extra=[("Allow", _ALLOW)])

    def _on_cancel(self, txn: ServerTransaction, cancelled: ServerTransaction | None, now: float) -> None:
        if cancelled is None:
            self._reply(txn, 481, None, now)  # §9.2: no matching INVITE transaction
            return
        self._reply(txn, 200, None, now)
        data: TransactionData | None = cancelled.tu_data
        if data is not None:
            data.on_cancel(self, cancelled, now)


__all__ = ["B2bua", "MediaControl", "PairingLookup", "UnknownLookup"]
